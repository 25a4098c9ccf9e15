//! Python units, from the image's layout: `sys.path` entries are the
//! directories `lib/pythonX.Y` (the standard library), its
//! `lib-dynload`, and `site-packages`/`dist-packages` below a
//! `lib/pythonX[.Y]`. A module is the top-level package directory or the
//! single-file module (with its `__pycache__` files) on an entry; a kept
//! stdlib module brings the stdlib modules it imports. Distribution
//! metadata (`*.dist-info`, `*.egg-info`) goes with the packages it
//! describes at every level: `importlib.metadata` fails without it.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ffi::OsString,
    path::{Path, PathBuf},
};

use super::{Unit, any_kept_under, whole_dir};
use crate::{
    closure::{ClosureError, Reason, walk_tree},
    source::rootfs::{Kind, Rootfs},
};

/// A `sys.path` entry a path lies in: the entry, and whether it is the
/// standard library (`lib/pythonX.Y` itself or its `lib-dynload`).
pub fn entry_of(path: &Path) -> Option<(PathBuf, bool)> {
    let comps: Vec<&str> = path.iter().filter_map(|c| c.to_str()).collect();
    let mut best = None;
    for i in 1..comps.len() {
        let c = comps[i];
        let Some(ver) = c.strip_prefix("python") else {
            continue;
        };
        let versioned = ver.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && a.bytes().all(|b| b.is_ascii_digit())
                && !b.is_empty()
                && b.bytes().all(|b| b.is_ascii_digit())
        });
        let major_only = !ver.is_empty() && ver.bytes().all(|b| b.is_ascii_digit());
        if !(comps[i - 1] == "lib" || comps[i - 1] == "lib64") || !(versioned || major_only) {
            continue;
        }
        let next = comps.get(i + 1).copied();
        let entry_len = match next {
            Some("site-packages" | "dist-packages") => i + 2,
            Some("lib-dynload") if versioned => i + 2,
            _ if versioned => i + 1,
            _ => continue,
        };
        // The path must lie below the entry, not be it.
        if comps.len() <= entry_len {
            continue;
        }
        let stdlib = versioned && !matches!(next, Some("site-packages" | "dist-packages"));
        let entry: PathBuf = comps[..entry_len].iter().collect();
        best = Some((entry, stdlib));
    }
    best
}

/// The module a path on `entry` belongs to: its top-level name and
/// whether that is a directory (a package).
fn top_level(path: &Path, entry: &Path) -> Option<String> {
    let rel = path.strip_prefix(entry).ok()?;
    let mut it = rel.iter();
    let first = it.next()?.to_str()?;
    let name = if first == "__pycache__" {
        it.next()?.to_str()?
    } else {
        first
    };
    if name.ends_with(".dist-info")
        || name.ends_with(".egg-info")
        || name.ends_with(".pth")
        || name == "__pycache__"
    {
        return None;
    }
    Some(name.split('.').next()?.to_string())
}

/// Top-level import names an import statement line names.
pub fn imported_names(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in source.lines() {
        let l = line.trim_start();
        let names: Vec<&str> = if let Some(rest) = l.strip_prefix("import ") {
            rest.split(',')
                .map(|p| p.split_whitespace().next().unwrap_or(""))
                .collect()
        } else if let Some(rest) = l.strip_prefix("from ") {
            vec![rest.split_whitespace().next().unwrap_or("")]
        } else {
            continue;
        };
        for n in names {
            let top = n.split('.').next().unwrap_or("");
            if !top.is_empty() && top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                out.insert(top.to_string());
            }
        }
    }
    out
}

#[derive(Default)]
pub struct Python {
    listings: HashMap<PathBuf, Vec<OsString>>,
}

impl Python {
    fn list(&mut self, fs: &dyn Rootfs, dir: &Path) -> Vec<OsString> {
        self.listings
            .entry(dir.to_path_buf())
            .or_insert_with(|| fs.list(dir).unwrap_or_default())
            .clone()
    }

    /// The paths of module `name` on `entry`: a package directory, or a
    /// file `name.*` with its `__pycache__/name.*` files.
    fn module_paths(&mut self, fs: &dyn Rootfs, entry: &Path, name: &str) -> Vec<PathBuf> {
        let dir = entry.join(name);
        if matches!(fs.meta(&dir), Ok(Some(m)) if m.kind == Kind::Dir) {
            return vec![dir];
        }
        let mut out = Vec::new();
        let prefix = format!("{name}.");
        for n in self.list(fs, entry) {
            if n.to_string_lossy().starts_with(&prefix) {
                out.push(entry.join(&n));
            }
        }
        if !out.is_empty() {
            let cache = entry.join("__pycache__");
            for n in self.list(fs, &cache) {
                if n.to_string_lossy().starts_with(&prefix) {
                    out.push(cache.join(&n));
                }
            }
        }
        out
    }

    fn push_module(
        &mut self,
        fs: &dyn Rootfs,
        entry: &Path,
        name: &str,
        unit: &str,
        out: &mut Vec<Unit>,
    ) -> Result<Vec<PathBuf>, ClosureError> {
        let paths = self.module_paths(fs, entry, name);
        for p in &paths {
            if matches!(fs.meta(p), Ok(Some(m)) if m.kind == Kind::Dir) {
                whole_dir(fs, p, Reason::Module, unit, true, out)?;
            } else {
                out.push(Unit {
                    path: p.clone(),
                    reason: Reason::Module,
                    unit: unit.to_string(),
                    program: true,
                });
            }
        }
        Ok(paths)
    }

    /// Whole modules around kept paths; stdlib modules bring the stdlib
    /// modules their sources import, transitively.
    pub fn modules(
        &mut self,
        fs: &dyn Rootfs,
        kept: &BTreeMap<PathBuf, Reason>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<Unit>,
    ) -> Result<(), ClosureError> {
        let mut queue: Vec<(PathBuf, bool, String, Option<String>)> = Vec::new();
        for p in kept.keys() {
            if let Some((entry, stdlib)) = entry_of(p)
                && let Some(name) = top_level(p, &entry)
            {
                queue.push((entry, stdlib, name, None));
            }
        }
        while let Some((entry, stdlib, name, by)) = queue.pop() {
            if !done.insert(format!("py:{}:{name}", entry.display())) {
                continue;
            }
            let unit = match (&by, stdlib) {
                (Some(by), _) => format!("python stdlib {name} (imported by {by})"),
                (None, true) => format!("python stdlib {name}"),
                (None, false) => format!("python module {name}"),
            };
            let paths = self.push_module(fs, &entry, &name, &unit, out)?;
            if !stdlib {
                continue;
            }
            // The stdlib directory of this entry, and its lib-dynload.
            let std_dir = if entry.ends_with("lib-dynload") {
                entry
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or(entry.clone())
            } else {
                entry.clone()
            };
            let mut sources = Vec::new();
            for p in &paths {
                if p.extension().is_some_and(|e| e == "py") {
                    sources.push(p.clone());
                } else if matches!(fs.meta(p), Ok(Some(m)) if m.kind == Kind::Dir) {
                    sources.extend(
                        walk_tree(fs, p)?
                            .into_iter()
                            .filter(|s| s.extension().is_some_and(|e| e == "py")),
                    );
                }
            }
            for s in sources {
                let Ok(text) = fs.read_all(&s) else { continue };
                for n in imported_names(&String::from_utf8_lossy(&text)) {
                    for e in [std_dir.clone(), std_dir.join("lib-dynload")] {
                        if !self.module_paths(fs, &e, &n).is_empty() {
                            queue.push((e, true, n.clone(), Some(name.clone())));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `*.dist-info` / `*.egg-info` of distributions with a kept module.
    pub fn metadata(
        &mut self,
        fs: &dyn Rootfs,
        kept: &BTreeMap<PathBuf, Reason>,
        out: &mut Vec<Unit>,
    ) -> Result<(), ClosureError> {
        let entries: BTreeSet<PathBuf> = kept
            .keys()
            .filter_map(|p| entry_of(p))
            .filter(|(_, stdlib)| !stdlib)
            .map(|(e, _)| e)
            .collect();
        for entry in entries {
            for n in self.list(fs, &entry) {
                let name = n.to_string_lossy();
                let Some(dist) = name
                    .strip_suffix(".dist-info")
                    .or_else(|| name.strip_suffix(".egg-info"))
                else {
                    continue;
                };
                let meta = entry.join(&n);
                if kept.contains_key(&meta) {
                    continue;
                }
                let tops = self.tops(fs, &meta, dist);
                let used = tops.iter().any(|t| {
                    self.module_paths(fs, &entry, t)
                        .iter()
                        .any(|p| any_kept_under(kept, p))
                });
                if !used {
                    continue;
                }
                let unit = format!("python distribution {dist} (metadata)");
                if matches!(fs.meta(&meta), Ok(Some(m)) if m.kind == Kind::Dir) {
                    whole_dir(fs, &meta, Reason::Metadata, &unit, false, out)?;
                } else {
                    out.push(Unit {
                        path: meta,
                        reason: Reason::Metadata,
                        unit,
                        program: false,
                    });
                }
            }
        }
        Ok(())
    }

    /// The import names a distribution provides: `top_level.txt`, else
    /// the first components in `RECORD`, else its normalized name.
    fn tops(&mut self, fs: &dyn Rootfs, meta: &Path, dist: &str) -> BTreeSet<String> {
        let read = |f: &str| {
            fs.read_all(&meta.join(f))
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        if let Some(t) = read("top_level.txt") {
            let s: BTreeSet<String> = t
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if !s.is_empty() {
                return s;
            }
        }
        if let Some(r) = read("RECORD") {
            let s: BTreeSet<String> = r
                .lines()
                .filter_map(|l| l.split(',').next())
                .filter_map(|p| p.split('/').next())
                .filter(|c| {
                    !c.is_empty()
                        && *c != ".."
                        && *c != "__pycache__"
                        && !c.ends_with(".dist-info")
                        && !c.ends_with(".data")
                })
                .filter_map(|c| c.split('.').next().map(String::from))
                .collect();
            if !s.is_empty() {
                return s;
            }
        }
        let base = dist.split('-').next().unwrap_or(dist);
        BTreeSet::from([base.to_lowercase().replace(['-', '.'], "_")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_path_entries() {
        let e = |p: &str| entry_of(Path::new(p)).map(|(e, s)| (e.display().to_string(), s));
        assert_eq!(
            e("/usr/lib/python3.11/json/decoder.py"),
            Some(("/usr/lib/python3.11".into(), true))
        );
        assert_eq!(
            e("/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"),
            Some(("/usr/lib/python3.11/lib-dynload".into(), true))
        );
        assert_eq!(
            e("/usr/local/lib/python3.11/dist-packages/pygments/lexers/c_cpp.py"),
            Some(("/usr/local/lib/python3.11/dist-packages".into(), false))
        );
        assert_eq!(
            e("/usr/lib/python3/dist-packages/six.py"),
            Some(("/usr/lib/python3/dist-packages".into(), false))
        );
        assert_eq!(
            e("/app/venv/lib/python3.12/site-packages/x/__init__.py"),
            Some(("/app/venv/lib/python3.12/site-packages".into(), false))
        );
        assert_eq!(e("/usr/lib/python3.11"), None);
        assert_eq!(e("/usr/lib/python3/x.py"), None);
        assert_eq!(e("/usr/bin/python3"), None);
    }

    #[test]
    fn top_level_names() {
        let entry = Path::new("/usr/lib/python3.11");
        let t = |p: &str| top_level(Path::new(p), entry);
        assert_eq!(
            t("/usr/lib/python3.11/json/decoder.py").as_deref(),
            Some("json")
        );
        assert_eq!(
            t("/usr/lib/python3.11/decimal.py").as_deref(),
            Some("decimal")
        );
        assert_eq!(
            t("/usr/lib/python3.11/__pycache__/decimal.cpython-311.pyc").as_deref(),
            Some("decimal")
        );
        assert_eq!(t("/usr/lib/python3.11/x-1.0.dist-info/RECORD"), None);
    }

    #[test]
    fn import_statements() {
        let src = "import os, sys as s\nfrom email.mime import text\n  import json.decoder\n\
                   from . import sibling\nx = 'import'\n# import nothing here\n";
        let n = imported_names(src);
        assert_eq!(
            n.into_iter().collect::<Vec<_>>(),
            vec!["email", "json", "os", "sys"]
        );
    }
}
