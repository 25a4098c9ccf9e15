//! `trace report`: a terminal summary of a trace, and a self-contained
//! HTML page: size by directory before and after, packages kept and
//! dropped, executables, failed lookups, lost events.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::Args;

use super::levels;
use crate::session::build::human;
use crate::{
    closure::{self, packages, rules::Rules},
    model::{text, trace::Trace, write},
    source::{
        self,
        rootfs::{DataBytes, Rootfs},
    },
};

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(value_name = "TRACE.json")]
    pub trace: PathBuf,
    /// The source image: adds sizes by directory and packages, before and
    /// after `trace build`.
    #[arg(long, value_name = "SRC", value_parser = source::transport::parse)]
    pub from: Option<source::ImageRef>,
    /// Also write a self-contained HTML page here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub keep: super::keep::KeepArgs,
}

/// Bytes by directory (first two components: `/usr/lib`, `/etc`).
type BySize = BTreeMap<String, u64>;

fn bucket(p: &Path) -> String {
    let parts: Vec<_> = p.components().skip(1).take(2).collect();
    let mut s = String::new();
    for (i, c) in parts.iter().enumerate() {
        // A file directly in a top directory counts for that directory.
        if i == 1 && parts.len() == 2 && p.components().count() == 3 {
            break;
        }
        s.push('/');
        s.push_str(&c.as_os_str().to_string_lossy());
    }
    if s.is_empty() { "/".into() } else { s }
}

/// Bytes of regular files by directory; a hardlinked file counts once,
/// as in `trace build`'s report.
fn sizes<'a>(fs: &dyn Rootfs, paths: impl Iterator<Item = &'a Path>) -> BySize {
    let mut out = BySize::new();
    let mut bytes = DataBytes::default();
    for p in paths {
        if let Ok(Some(m)) = fs.meta(p)
            && bytes.add(&m)
        {
            *out.entry(bucket(p)).or_insert(0) += m.size;
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Image {
    before: BySize,
    after: BySize,
    kept_pkgs: Vec<String>,
    dropped_pkgs: Vec<String>,
    /// Size and file count at every `--keep` level.
    levels: Vec<levels::LevelSize>,
}

fn image_view(
    trace: &Trace,
    src: &source::ImageRef,
    keep: &super::keep::KeepArgs,
) -> Result<Image> {
    let image = src.open().context("reading the source image")?;
    let fs = image.rootfs.as_ref();
    let opts = keep.options(image.config.as_ref());
    let levels = levels::every_level(fs, trace, &opts)?;
    let kept = closure::compute_with(fs, std::slice::from_ref(trace), &Rules::default(), &opts)?;
    let all = closure::walk_tree(fs, Path::new("/"))?;
    let kept_paths: std::collections::BTreeSet<PathBuf> = kept.paths.keys().cloned().collect();
    let db = packages::trim(fs, &kept_paths)?;
    Ok(Image {
        before: sizes(fs, all.iter().map(PathBuf::as_path)),
        after: sizes(fs, kept_paths.iter().map(PathBuf::as_path)),
        kept_pkgs: db.as_ref().map(|d| d.kept.clone()).unwrap_or_default(),
        dropped_pkgs: db.map(|d| d.dropped).unwrap_or_default(),
        levels,
    })
}

fn html(trace: &Trace, img: Option<&Image>) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>trace report</title><style>\
body{{font:14px system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}}\
h1{{font-size:22px}}h2{{font-size:17px;margin-top:1.6em;border-bottom:1px solid #ddd}}\
.row{{display:flex;align-items:center;margin:3px 0}}.name{{width:230px;font-family:monospace}}\
.bars{{flex:1}}.bar{{height:9px;margin:1px 0}}.before{{background:#c9c9c9}}.after{{background:#2a7ae2}}\
.num{{width:190px;text-align:right;font-family:monospace;font-size:12px}}\
.ok{{color:#1a7f37}}.bad{{color:#c0392b;font-weight:bold}}code,li{{font-family:monospace;font-size:12px}}\
.cols{{display:flex;gap:3em}}</style></head><body>"
    );
    let _ = write!(
        h,
        "<h1>trace report: <code>{}</code></h1>",
        esc(&trace.command.join(" "))
    );
    let lost = &trace.lost_events;
    let _ = write!(
        h,
        "<p>{} {} &middot; {} events lost &middot; {} syscalls seen, {} records</p>",
        if trace.complete {
            "<span class=ok>complete</span>"
        } else {
            "<span class=bad>INCOMPLETE</span>"
        },
        format_args!("exit {}", trace.exit.code),
        lost.total,
        trace.counters.syscalls_seen,
        trace.counters.records
    );
    if let Some(img) = img {
        let total = |m: &BySize| m.values().sum::<u64>();
        let (b, a) = (total(&img.before), total(&img.after));
        let _ = write!(
            h,
            "<h2>Size by directory: {} &rarr; {} ({:.1}x smaller)</h2>",
            human(b),
            human(a),
            b as f64 / a.max(1) as f64
        );
        let max = img.before.values().copied().max().unwrap_or(1).max(1);
        let mut dirs: Vec<(&String, &u64)> = img.before.iter().collect();
        dirs.sort_by(|x, y| y.1.cmp(x.1));
        for (d, before) in dirs.iter().take(25) {
            let after = img.after.get(*d).copied().unwrap_or(0);
            let _ = write!(
                h,
                "<div class=row><div class=name>{}</div><div class=bars>\
<div class='bar before' style='width:{:.2}%'></div><div class='bar after' style='width:{:.2}%'></div></div>\
<div class=num>{} &rarr; {}</div></div>",
                esc(d),
                **before as f64 * 100.0 / max as f64,
                after as f64 * 100.0 / max as f64,
                human(**before),
                human(after)
            );
        }
        let _ = write!(
            h,
            "<h2>Packages: {} kept, {} dropped</h2><div class=cols><div><b>kept</b><ul>",
            img.kept_pkgs.len(),
            img.dropped_pkgs.len()
        );
        for p in &img.kept_pkgs {
            let _ = write!(h, "<li>{}</li>", esc(p));
        }
        h.push_str("</ul></div><div><b>dropped</b><ul>");
        for p in &img.dropped_pkgs {
            let _ = write!(h, "<li>{}</li>", esc(p));
        }
        h.push_str("</ul></div></div>");
        h.push_str(&levels::html_table(&img.levels));
    }
    let _ = write!(h, "<h2>Executables ({})</h2><ul>", trace.execs.len());
    for e in &trace.execs {
        let _ = write!(
            h,
            "<li>{} &mdash; {}</li>",
            esc(e.exe.as_deref().unwrap_or(&e.path)),
            esc(&e.argv.join(" "))
        );
    }
    let failed: Vec<_> = trace.files.iter().filter(|f| f.failed_only()).collect();
    let _ = write!(h, "</ul><h2>Failed lookups ({})</h2><ul>", failed.len());
    for f in failed.iter().take(500) {
        let r: Vec<&str> = f.accesses.iter().map(|a| a.result.as_ref()).collect();
        let _ = write!(h, "<li>{} ({})</li>", esc(&f.path), esc(&r.join(", ")));
    }
    let _ = write!(h, "</ul><h2>Lost events: {}</h2><ul>", lost.total);
    for (cause, n) in &lost.by_cause {
        let _ = write!(h, "<li>{}: {}</li>", esc(cause), n);
    }
    h.push_str("</ul></body></html>\n");
    h
}

pub fn run(args: ReportArgs) -> Result<i32> {
    let trace = write::read(&args.trace)?;
    let img = args
        .from
        .as_ref()
        .map(|src| image_view(&trace, src, &args.keep))
        .transpose()?;
    let mut out = text::render(&trace);
    if let Some(img) = &img {
        let _ = writeln!(out, "Size by directory (before -> after):");
        let mut dirs: Vec<(&String, &u64)> = img.before.iter().collect();
        dirs.sort_by(|x, y| y.1.cmp(x.1));
        for (d, b) in dirs.iter().take(15) {
            let _ = writeln!(
                out,
                "  {:<28} {:>10} -> {:>10}",
                crate::model::escape::path(d.as_bytes()),
                human(**b),
                human(img.after.get(*d).copied().unwrap_or(0))
            );
        }
        let _ = writeln!(
            out,
            "Packages: {} kept, {} dropped",
            img.kept_pkgs.len(),
            img.dropped_pkgs.len()
        );
        out.push_str(&levels::table(&img.levels));
    }
    out.push_str(&crate::session::runs::describe(&trace));
    print!("{out}");
    if let Some(path) = &args.html {
        write::write_atomic(path, html(&trace, img.as_ref()).as_bytes())?;
        eprintln!("trace report: {}", path.display());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_buckets() {
        assert_eq!(bucket(Path::new("/usr/lib/x/y.so")), "/usr/lib");
        assert_eq!(bucket(Path::new("/etc/passwd")), "/etc");
        assert_eq!(bucket(Path::new("/usr/bin/python3")), "/usr/bin");
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
