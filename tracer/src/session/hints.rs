//! Hints that name what a failing run in the minimal image missed,
//! beyond its failed lookups: interpreters that list a directory and
//! open only what they find there (CPython's import system) never look
//! the missing module up, so the entries the full image has in each
//! directory the run listed are named, the ones the program asked for
//! first; and a file that could not be created names its missing parent.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use crate::{
    closure::{listed::listed_dirs, resolve::resolve},
    model::trace::{Op, Trace},
    source::rootfs::{Kind, Rootfs},
};

/// One listed directory and the entries the full image has there that
/// the minimal one lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedHint {
    pub dir: String,
    /// Entries whose name the program asked for, with the name.
    pub asked: Vec<(String, String)>,
    /// The others, sorted.
    pub others: Vec<String>,
}

/// A file that could not be created and the first missing directory above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateHint {
    pub file: String,
    pub missing_dir: String,
}

/// The module, file or library name in an error message of a common
/// runtime (CPython, Perl, Node, Ruby, the dynamic loader).
pub fn asked_names(stderr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let quoted = |line: &str, start: &str, end: char| -> Option<String> {
        let at = line.find(start)? + start.len();
        let rest = &line[at..];
        Some(rest[..rest.find(end).unwrap_or(rest.len())].to_string())
    };
    for line in stderr.lines() {
        let found = quoted(line, "No module named '", '\'')
            .or_else(|| quoted(line, "Can't locate ", ' '))
            .or_else(|| quoted(line, "Cannot find module '", '\''))
            .or_else(|| quoted(line, "cannot load such file -- ", ' '))
            .or_else(|| quoted(line, "error while loading shared libraries: ", ':'));
        if let Some(n) = found {
            // `a.b.c`, `Foo/Bar.pm`, `x/y`: every part names an entry.
            for part in n.split(['.', '/', ':']).filter(|p| !p.is_empty()) {
                out.insert(part.to_string());
            }
            out.insert(n);
        }
    }
    out
}

/// The name of an entry without its extensions (`c_cpp.py` -> `c_cpp`).
fn stem(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Names the run looked up and did not find (`foo.py`, `foo/__init__.py`
/// both give `foo`).
fn looked_up(trace: &Trace) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in trace.files.iter().filter(|f| f.failed_only()) {
        let p = Path::new(&f.path);
        let name = match p.file_name().and_then(|n| n.to_str()) {
            Some(n) if n.starts_with("__init__.") => p
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str()),
            n => n,
        };
        if let Some(n) = name {
            out.insert(stem(n).to_string());
        }
    }
    out
}

fn dir_names(fs: &dyn Rootfs, dir: &Path) -> Option<(PathBuf, BTreeSet<String>)> {
    let r = resolve(fs, dir, true).ok().flatten()?;
    if !matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Dir) {
        return None;
    }
    let names = fs.list(&r.path).ok()?;
    Some((
        r.path,
        names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect(),
    ))
}

/// For each directory the run listed: what the full image has there and
/// the minimal image does not, ranked by the names the program asked for.
pub fn listed(
    trace: &Trace,
    min: &dyn Rootfs,
    full: &dyn Rootfs,
    asked: &BTreeSet<String>,
) -> Vec<ListedHint> {
    let looked = looked_up(trace);
    let mut out = Vec::new();
    for dir in listed_dirs(std::slice::from_ref(trace)) {
        let Some((_, have)) = dir_names(min, &dir) else {
            continue;
        };
        let Some((_, all)) = dir_names(full, &dir) else {
            continue;
        };
        let mut hint = ListedHint {
            dir: dir.display().to_string(),
            asked: Vec::new(),
            others: Vec::new(),
        };
        for n in all.difference(&have) {
            let s = stem(n);
            if asked.contains(s) || asked.contains(n.as_str()) {
                hint.asked.push((n.clone(), s.to_string()));
            } else if looked.contains(s) {
                hint.asked.push((n.clone(), format!("{s} (looked up)")));
            } else {
                hint.others.push(n.clone());
            }
        }
        if !hint.asked.is_empty() || !hint.others.is_empty() {
            out.push(hint);
        }
    }
    // Directories with an asked-for entry first.
    out.sort_by_key(|h| (h.asked.is_empty(), h.dir.clone()));
    out
}

/// Files the run failed to create because a directory above was missing.
pub fn create_parents(trace: &Trace, min: &dyn Rootfs, full: &dyn Rootfs) -> Vec<CreateHint> {
    let mut out = Vec::new();
    for f in &trace.files {
        let failed_create = f
            .accesses
            .iter()
            .any(|a| a.op == Op::Open && a.create && a.errno == Some(libc::ENOENT));
        // A create that worked later (after a mkdir) is not a problem.
        if !failed_create || f.used() {
            continue;
        }
        let p = Path::new(&f.path);
        // The topmost ancestor missing in the minimal image.
        let missing = p
            .ancestors()
            .skip(1)
            .filter(|a| !matches!(resolve(min, a, true), Ok(Some(_))))
            .last();
        // Only what the full image has is the minimal image's fault.
        if let Some(d) = missing
            && matches!(resolve(full, d, true), Ok(Some(_)))
        {
            out.push(CreateHint {
                file: f.path.clone(),
                missing_dir: d.display().to_string(),
            });
        }
    }
    out
}

/// Unranked entries shown per directory; the rest are counted.
const SHOWN: usize = 8;

/// The hint lines of a failed verification.
pub fn describe(o: &super::verify::Outcome, full: &crate::source::ImageRef) -> String {
    use std::fmt::Write as _;
    let esc = |p: &str| crate::model::escape::path(p.as_bytes());
    let text = crate::model::escape::text;
    let mut s = String::new();
    for c in &o.creates {
        let _ = writeln!(
            s,
            "  could not create {}: directory {} is missing here (present in {}; add with --include)",
            esc(&c.file),
            esc(&c.missing_dir),
            full
        );
    }
    if o.listed.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "  listed here, with entries only {} has (a program may have looked for one; --include it, or --keep module/package):",
        full
    );
    for h in &o.listed {
        let total = h.asked.len() + h.others.len();
        let dir = esc(&h.dir);
        let _ = writeln!(s, "    {dir}/ ({total} missing)");
        for (n, why) in &h.asked {
            let _ = writeln!(s, "      {dir}/{}   (asked for: {})", esc(n), text(why));
        }
        for n in h.others.iter().take(SHOWN) {
            let _ = writeln!(s, "      {dir}/{}", esc(n));
        }
        if h.others.len() > SHOWN {
            let _ = writeln!(s, "      ... and {} more", h.others.len() - SHOWN);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_error_messages() {
        let e = "Traceback (most recent call last):\n\
                 ModuleNotFoundError: No module named 'pygments.lexers.c_cpp'\n\
                 Can't locate Foo/Bar.pm in @INC (you may need to install the Foo::Bar module)\n\
                 Error: Cannot find module 'left-pad'\n\
                 python3: error while loading shared libraries: libz.so.1: cannot open shared object file\n";
        let n = asked_names(e);
        for want in [
            "c_cpp",
            "lexers",
            "pygments.lexers.c_cpp",
            "Bar",
            "left-pad",
            "libz",
        ] {
            assert!(n.contains(want), "{want} in {n:?}");
        }
    }

    fn image(files: &[&str]) -> (tempfile::TempDir, crate::source::dir::DirRootfs) {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            let p = d.path().join(f.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
        }
        let fs = crate::source::dir::DirRootfs::open(d.path()).unwrap();
        (d, fs)
    }

    fn trace(files: &[(&str, Op, Option<i32>, bool)]) -> Trace {
        let mut t: Trace = serde_json::from_str(
            r#"{"format":"trace","version":2,"tool":"t","command":["x"],"exit":{"code":1},
                "scope":{"mode":"cgroup","leftovers_killed":0},"complete":true,
                "lost_events":{"total":0,"per_cpu":[],"by_cause":{}},
                "counters":{"syscalls_seen":0,"deduplicated_in_kernel":0,"records":0,
                  "unreadable_paths":0,"unresolved_paths":0,"truncated_paths":0,"malformed_records":0},
                "execs":[],"files":[]}"#,
        )
        .unwrap();
        for (p, op, errno, create) in files {
            t.files.push(crate::model::trace::FileEntry {
                path: p.to_string(),
                path_hex: None,
                truncated: false,
                accesses: vec![crate::model::trace::Access {
                    create: *create,
                    result: if errno.is_some() {
                        "ENOENT".into()
                    } else {
                        "ok".into()
                    },
                    errno: *errno,
                    ..crate::model::trace::Access::new(*op, "openat")
                }],
                seen_in: Vec::new(),
            });
        }
        t
    }

    #[test]
    fn listed_directories_rank_what_was_asked_for() {
        let lexers = "/site/pygments/lexers";
        let (_m, min) = image(&["/site/pygments/lexers/python.py", "/var/x"]);
        let (_f, full) = image(&[
            "/site/pygments/lexers/python.py",
            "/site/pygments/lexers/c_cpp.py",
            "/site/pygments/lexers/json.py",
            "/site/pygments/lexers/rust.py",
            "/var/cache/app/keep",
        ]);
        let t = trace(&[
            (lexers, Op::List, None, false),
            ("/site/other/rust.py", Op::Open, Some(libc::ENOENT), false),
            ("/var/cache/app/db", Op::Open, Some(libc::ENOENT), true),
            ("/var/made/later", Op::Open, Some(libc::ENOENT), true),
        ]);
        let asked = asked_names("ModuleNotFoundError: No module named 'pygments.lexers.c_cpp'\n");
        let h = listed(&t, &min, &full, &asked);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].dir, lexers);
        assert_eq!(
            h[0].asked,
            vec![
                ("c_cpp.py".to_string(), "c_cpp".to_string()),
                ("rust.py".to_string(), "rust (looked up)".to_string())
            ]
        );
        assert_eq!(h[0].others, vec!["json.py"]);
        // The full image has /var/cache; the minimal one lacks it. The
        // other directory is missing from both: not the image's fault.
        let c = create_parents(&t, &min, &full);
        assert_eq!(
            c,
            vec![CreateHint {
                file: "/var/cache/app/db".into(),
                missing_dir: "/var/cache".into()
            }]
        );
    }

    #[test]
    fn stems_and_lookups() {
        assert_eq!(stem("c_cpp.py"), "c_cpp");
        assert_eq!(stem("_ssl.cpython-311-x86_64-linux-gnu.so"), "_ssl");
        assert_eq!(stem("README"), "README");
    }
}
