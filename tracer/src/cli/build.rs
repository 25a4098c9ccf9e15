//! `trace build`: turn traces and a full image into a minimal one.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::{
    closure::{self, Reason, packages, rules::Rules},
    model::{merge, seccomp, sometimes, write},
    output::{self, target},
    source::{
        self, ImageRef,
        rootfs::{DataBytes, Kind},
    },
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    /// OCI image layout directory.
    Oci,
    /// OCI image layout as a tar file.
    OciArchive,
    /// `docker save` format, for `docker load` / `podman load`.
    DockerArchive,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Source: a root filesystem directory, an OCI image layout (directory
    /// or tar) or a `docker save` archive; or docker-daemon:NAME,
    /// containers-storage:NAME, oci:DIR[:TAG], oci-archive:FILE[:TAG],
    /// docker-archive:FILE.
    #[arg(long, value_name = "SRC", value_parser = source::transport::parse)]
    pub from: ImageRef,
    /// Trace file(s) from `trace run`; several are merged.
    #[arg(long = "trace", value_name = "TRACE.json", required = true)]
    pub traces: Vec<PathBuf>,
    /// Where to write the image: a path (must not exist; in --format), or
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME],
    /// docker-daemon:NAME:TAG (loaded into Docker), containers-storage:NAME:TAG
    /// (into Podman).
    #[arg(short, long, value_name = "OUT", value_parser = source::transport::parse)]
    pub output: ImageRef,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Also write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also write a seccomp profile allowing the traced syscalls, beside
    /// the image as OUT.seccomp.json.
    #[arg(long)]
    pub seccomp: bool,
}

/// How the minimal image is made; shared by build and minimize.
#[derive(Clone, Debug, Args)]
pub struct ImageArgs {
    /// For a plain output path (default: oci).
    #[arg(long, value_enum)]
    pub format: Option<OutFormat>,
    /// Image name, e.g. `app:minimal`.
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// Also keep this path or glob (absolute, in the image).
    #[arg(long, value_name = "PATH|GLOB")]
    pub include: Vec<String>,
    /// Never keep paths matching this glob.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Keep the paths or globs listed in FILE, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub include_from: Vec<PathBuf>,
    /// Leave the (trimmed) dpkg database out of the image.
    #[arg(long)]
    pub no_package_db: bool,
    #[command(flatten)]
    pub keep: super::keep::KeepArgs,
    #[command(flatten)]
    pub sbom: super::sbom::SbomOpts,
}

#[derive(Serialize)]
pub struct Size {
    pub bytes: u64,
    pub entries: u64,
}

#[derive(Serialize)]
pub struct Largest {
    pub path: String,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct Missing {
    pub library: String,
    pub needed_by: String,
}

/// `--report`: what was kept, why, and what was left out.
#[derive(Serialize)]
pub struct Report {
    pub source: String,
    pub source_digest: Option<String>,
    pub output: String,
    pub format: String,
    pub manifest_digest: String,
    /// The engine the image was loaded into, its name and the image ID
    /// the engine shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<Loaded>,
    pub before: Size,
    pub after: Size,
    pub largest: Vec<Largest>,
    pub by_reason: BTreeMap<Reason, usize>,
    pub kept: BTreeMap<String, Reason>,
    pub not_in_source: Vec<String>,
    pub missing_libraries: Vec<Missing>,
    pub excluded: BTreeMap<String, String>,
    /// dpkg packages kept in the trimmed database and dropped from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Packages>,
    /// `--keep`: file, module, package or package+deps.
    pub keep: closure::Level,
    /// The unit (package, module, metadata, listed directory) that pulled
    /// each path a level added.
    pub pulled_by: BTreeMap<String, String>,
    /// Each `#!` interpreter kept and the script that needs it.
    pub interpreters: Vec<closure::InterpreterUse>,
    /// What `--keep-listed` added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed: Option<Size>,
    /// With several runs or traces: paths used in only some of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sometimes: Vec<sometimes::Sometimes>,
    /// The SBOM written beside the image: its path and a summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
}

#[derive(Serialize)]
pub struct Loaded {
    pub engine: String,
    pub name: String,
    pub id: String,
}

#[derive(Serialize)]
pub struct Packages {
    pub kept: Vec<String>,
    pub dropped: Vec<String>,
}

pub fn build(args: BuildArgs) -> Result<i32> {
    let report = build_image(&args)?;
    eprint!("{}", summary(&report));
    Ok(0)
}

/// Builds the image and writes `--report`; returns the report.
pub fn build_image(args: &BuildArgs) -> Result<Report> {
    let plan = target::plan(
        &args.output,
        args.image.format.map(|f| match f {
            OutFormat::Oci => output::Format::Oci,
            OutFormat::OciArchive => output::Format::OciArchive,
            OutFormat::DockerArchive => output::Format::DockerArchive,
        }),
        args.image.tag.as_deref(),
    )?;
    if let target::Plan::File { path, .. } = &plan
        && (path.exists() || path.is_symlink())
    {
        bail!("{} already exists; not overwriting it", path.display());
    }
    plan.check()?;
    // Checked before any work, so a bad SBOM path leaves no image.
    let sbom_path = args.image.sbom.path(&plan.artifact_base());
    if let Some(p) = &sbom_path {
        super::sbom::check_writable(p)?;
    }
    let traces = args
        .traces
        .iter()
        .map(|p| write::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let rules = Rules::new(
        &args.image.include,
        &args.image.exclude,
        &args.image.include_from,
    )?;
    let image = crate::cache::open_for_read(&args.from)
        .with_context(|| format!("reading the source image {}", args.from))?;
    let fs = image.rootfs.as_ref();
    let kept = closure::compute_with(
        fs,
        &traces,
        &rules,
        &args.image.keep.options(image.config.as_ref()),
    )?;
    // One trace is its own union (what `sometimes` and the seccomp
    // profile read of it is what a merge would keep); several are taken
    // apart by the merge: nothing below needs them.
    let merged = match <[_; 1]>::try_from(traces) {
        Ok([one]) => one,
        Err(traces) => {
            merge::merge(
                traces
                    .into_iter()
                    .zip(&args.traces)
                    .map(|(trace, p)| merge::Input {
                        label: p.display().to_string(),
                        trace,
                    }),
            )
        }
    };
    // What the report and profile need of the traces, taken before
    // anything is written (a bad profile leaves no image) and so that the
    // traces are not held while the image and the report are made.
    let sometimes = sometimes::sometimes(&merged);
    let profile = match args.seccomp {
        true => Some(seccomp::profile(&merged)?.0),
        false => None,
    };
    drop(merged);
    let mut paths: BTreeSet<PathBuf> = kept.paths.keys().cloned().collect();
    // The package database, trimmed to what is still inside; the SBOM
    // reads it even when the image leaves it out.
    // Scanners name the distribution (and so which advisories apply to
    // the packages) from os-release and /etc/debian_version: they go with
    // the database, before it is trimmed (their package is then kept).
    // An `--exclude` still wins: the user said these must not be there.
    if !args.image.no_package_db {
        for id in ["/etc/os-release", "/etc/debian_version"] {
            if let Ok(Some(r)) = closure::resolve::resolve(fs, Path::new(id), true)
                && matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Regular)
                && r.links
                    .iter()
                    .chain(std::iter::once(&r.path))
                    .all(|p| rules.excluded_by(p).is_none())
            {
                for p in r.links.iter().chain(std::iter::once(&r.path)) {
                    paths.extend(closure::resolve::parents(p));
                    paths.insert(p.clone());
                }
            }
        }
    }
    let db = match args.image.no_package_db && sbom_path.is_none() {
        true => None,
        false => packages::trim(fs, &paths).context("reading the dpkg database")?,
    };
    let db_mtime = fs
        .meta(Path::new("/var/lib/dpkg/status"))
        .ok()
        .flatten()
        .map_or(0, |m| m.mtime);
    let with_db = packages::WithFiles {
        base: fs,
        files: db.as_ref().map(|d| d.files.clone()).unwrap_or_default(),
        mtime: db_mtime,
    };
    if let Some(db) = db.as_ref().filter(|_| !args.image.no_package_db) {
        for p in db.files.keys().chain(&db.lists) {
            paths.extend(closure::resolve::parents(p));
            paths.insert(p.clone());
        }
    }
    let fs: &dyn crate::source::rootfs::Rootfs = &with_db;
    // The SBOM is gathered before the image is written (so a failure
    // leaves neither) from exactly the paths the image gets.
    let sbom_doc = match &sbom_path {
        Some(_) => Some(
            crate::sbom::collect(
                &crate::sbom::View { fs, paths: &paths },
                crate::sbom::Subject {
                    name: args.output.to_string(),
                    tag: match &plan {
                        target::Plan::File { tag, .. } => tag.clone(),
                        target::Plan::Engine { name, .. } => Some(name.clone()),
                    },
                    digest: None,
                    source_digest: image.digest.clone(),
                    source_name: Some(args.from.to_string()),
                    traces: args
                        .traces
                        .iter()
                        .map(|t| super::sbom::trace_ref(t))
                        .collect::<Result<_>>()?,
                    supplier: args.image.sbom.sbom_supplier.clone(),
                    created: super::sbom::created(image.config.as_ref())?,
                },
            )
            .context("gathering the SBOM")?,
        ),
        None => None,
    };
    let mut to_write = DataBytes::default();
    for m in paths.iter().filter_map(|p| fs.meta(p).ok().flatten()) {
        to_write.add(&m);
    }
    let to_write = to_write.total;
    let counted =
        crate::progress::Counted::new(fs, crate::progress::bytes("building", Some(to_write)));
    let delivered = plan
        .deliver(output::Spec {
            rootfs: &counted,
            paths: &paths,
            config: image.config.clone(),
            source_digest: image.digest.clone(),
            tag: None,
            format: output::Format::Oci,
        })
        .with_context(|| format!("writing {}", args.output))?;
    drop(counted);
    let written = &delivered.written;

    // Sizes count each hardlinked file once.
    let mut after_bytes = DataBytes::default();
    let mut sizes: Vec<(u64, &Path)> = Vec::new();
    for p in &paths {
        if let Ok(Some(m)) = fs.meta(p)
            && m.kind == Kind::Regular
        {
            after_bytes.add(&m);
            sizes.push((m.size, p));
        }
    }
    let after_bytes = after_bytes.total;
    sizes.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let listed = args.image.keep.keep_listed.then(|| {
        let mut s = Size {
            bytes: 0,
            entries: 0,
        };
        for (p, r) in &kept.paths {
            if *r == Reason::Listed {
                s.entries += 1;
                if let Ok(Some(m)) = fs.meta(p)
                    && m.kind == Kind::Regular
                {
                    s.bytes += m.size;
                }
            }
        }
        s
    });
    let mut by_reason = BTreeMap::new();
    for r in kept.paths.values() {
        *by_reason.entry(*r).or_insert(0) += 1;
    }
    let report = Report {
        source: fs.describe(),
        source_digest: image.digest.clone(),
        output: args.output.to_string(),
        format: match &plan {
            target::Plan::File { format, .. } => format!("{format:?}").to_lowercase(),
            target::Plan::Engine { engine, .. } => engine.transport().to_string(),
        },
        manifest_digest: written.manifest_digest.clone(),
        loaded: delivered.loaded.as_ref().map(|(e, name, id)| Loaded {
            engine: e.program().to_string(),
            name: name.clone(),
            id: id.clone(),
        }),
        before: Size {
            bytes: image.total_bytes,
            entries: image.total_entries,
        },
        after: Size {
            bytes: after_bytes,
            entries: paths.len() as u64,
        },
        largest: sizes
            .iter()
            .take(10)
            .map(|(b, p)| Largest {
                path: p.display().to_string(),
                bytes: *b,
            })
            .collect(),
        by_reason,
        kept: kept
            .paths
            .iter()
            .map(|(p, r)| (p.display().to_string(), *r))
            .collect(),
        not_in_source: kept
            .not_in_source
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        missing_libraries: kept
            .missing_libraries
            .iter()
            .map(|(l, by)| Missing {
                library: l.clone(),
                needed_by: by.display().to_string(),
            })
            .collect(),
        packages: db.filter(|_| !args.image.no_package_db).map(|d| Packages {
            kept: d.kept,
            dropped: d.dropped,
        }),
        excluded: kept
            .excluded
            .iter()
            .map(|(p, pat)| (p.display().to_string(), pat.clone()))
            .collect(),
        keep: args.image.keep.keep,
        pulled_by: kept
            .units
            .iter()
            .filter(|(p, _)| kept.paths.contains_key(*p))
            .map(|(p, u)| (p.display().to_string(), u.clone()))
            .collect(),
        interpreters: kept.interpreters.clone(),
        listed,
        sometimes,
        sbom: None,
    };
    let mut report = report;
    if let (Some(mut doc), Some(path)) = (sbom_doc, &sbom_path) {
        doc.subject.digest = Some(written.manifest_digest.clone());
        report.sbom = Some(super::sbom::write_sbom(
            &doc,
            args.image.sbom.sbom_format,
            path,
        )?);
    }
    if let Some(profile) = profile {
        let mut out = plan.artifact_base().into_os_string();
        out.push(".seccomp.json");
        let mut json = serde_json::to_vec_pretty(&profile)?;
        json.push(b'\n');
        write::write_atomic(Path::new(&out), &json)?;
    }
    if let Some(path) = &args.report {
        let mut json = serde_json::to_vec_pretty(&report)?;
        json.push(b'\n');
        write::write_atomic(path, &json)?;
    }
    Ok(report)
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn summary(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let ratio = if r.after.bytes > 0 {
        r.before.bytes as f64 / r.after.bytes as f64
    } else {
        0.0
    };
    // For an engine, the digest it shows (`docker image inspect`).
    let digest = r.loaded.as_ref().map_or(&r.manifest_digest, |l| &l.id);
    let _ = writeln!(s, "trace build: {} -> {} ({digest})", r.source, r.output);
    let _ = writeln!(
        s,
        "  before: {:>10}  {:>7} entries",
        human(r.before.bytes),
        r.before.entries
    );
    let _ = writeln!(
        s,
        "  after:  {:>10}  {:>7} entries   ({ratio:.1}x smaller)",
        human(r.after.bytes),
        r.after.entries
    );
    let reasons: Vec<String> = r
        .by_reason
        .iter()
        .map(|(k, v)| {
            format!(
                "{v} {}",
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "  kept by: {}   (--keep {})",
        reasons.join(", "),
        r.keep.name()
    );
    // One line per interpreter: how many scripts need it, the first one.
    let mut by_interp: BTreeMap<&str, Vec<&closure::InterpreterUse>> = BTreeMap::new();
    for i in &r.interpreters {
        by_interp.entry(&i.interpreter).or_default().push(i);
    }
    for (interp, uses) in by_interp {
        let _ = writeln!(
            s,
            "  interpreter {interp}: {} script(s), e.g. {} ({})",
            uses.len(),
            uses[0].script,
            uses[0].why
        );
    }
    if let Some(l) = &r.listed {
        let _ = writeln!(
            s,
            "  --keep-listed added {} entries, {}",
            l.entries,
            human(l.bytes)
        );
    }
    if !r.sometimes.is_empty() {
        let _ = writeln!(
            s,
            "  used in only some runs ({}), most likely needed again:",
            r.sometimes.len()
        );
        for x in r.sometimes.iter().take(20) {
            let _ = writeln!(s, "    {}  (seen in {})", x.path, x.seen_in.join(", "));
        }
    }
    if let Some(sbom) = &r.sbom {
        let _ = writeln!(s, "  sbom: {sbom}");
    }
    if let Some(p) = &r.packages {
        let _ = writeln!(
            s,
            "  dpkg database: {} packages kept, {} dropped",
            p.kept.len(),
            p.dropped.len()
        );
    }
    let _ = writeln!(s, "  largest:");
    for l in &r.largest {
        let _ = writeln!(s, "    {:>10}  {}", human(l.bytes), l.path);
    }
    if !r.missing_libraries.is_empty() {
        let _ = writeln!(s, "  warning: libraries not in the source image:");
        for m in &r.missing_libraries {
            let _ = writeln!(s, "    {} (needed by {})", m.library, m.needed_by);
        }
    }
    if !r.not_in_source.is_empty() {
        let _ = writeln!(
            s,
            "  {} traced paths are not in the source (created by the run or on the host)",
            r.not_in_source.len()
        );
    }
    s
}
