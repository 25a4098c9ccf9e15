//! Closure: from what a trace observed to everything the minimal image
//! must hold: the symlinks on the way to each file, their parents, shared
//! libraries (ELF closure), `#!` interpreters, a few essentials, and the
//! user's rules.
pub mod elf;
pub mod essentials;
pub mod ldcache;
pub mod packages;
pub mod resolve;
pub mod rules;
pub mod shebang;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    model::trace::{Access, Need, Op, Trace},
    source::rootfs::{Kind, Rootfs},
};

/// Whether what `access` reached at `path` can be the image's: not a
/// runtime filesystem (/proc, /dev, ...), not below a bind mount into the
/// container, and, for traces made in an image or `--root`, on the
/// image's own filesystem and below its root.
pub fn from_image(trace: &Trace, path: &str, access: &Access) -> bool {
    if essentials::RUNTIME_PREFIXES
        .iter()
        .any(|p| path.starts_with(p))
    {
        return false;
    }
    let p = Path::new(path);
    if trace.scope.bind_mounts.iter().any(|b| p.starts_with(b)) {
        return false;
    }
    if access.outside_root {
        return false;
    }
    // On the host the host's filesystems are the "image" (a separate /usr
    // is still /usr); in an image or a `--root`, another filesystem (a
    // tmpfs, a bind from outside) never is.
    let in_image = trace.scope.image.is_some() || trace.scope.root.is_some();
    !(in_image && access.mount.is_some())
}
use resolve::{ResolveError, parents, resolve};
use rules::Rules;

/// Why a path is in the image. Lower sorts first and wins when several
/// apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The trace shows it was opened, executed or probed.
    Traced,
    /// A symlink on the way to a kept path.
    Symlink,
    /// Needed by a kept ELF file (PT_INTERP or DT_NEEDED).
    SharedLibrary,
    /// The `#!` interpreter of a kept script.
    Interpreter,
    /// `--include` / `--include-from`.
    Include,
    /// Always kept (passwd, group, nsswitch.conf, mount points).
    Essential,
    /// A directory above a kept path.
    Parent,
    /// The directory the run created a file in.
    CreatedIn,
}

#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    #[error("--include {0}: not in the source image")]
    IncludeMissing(String),
    #[error("reading {path} in the source image: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The outcome: every path to keep, and what could not be kept.
#[derive(Debug, Default)]
pub struct Kept {
    pub paths: BTreeMap<PathBuf, Reason>,
    /// Seen in the trace but absent from the source (created by the run,
    /// or host paths such as the test suite's own files).
    pub not_in_source: BTreeSet<PathBuf>,
    /// Libraries an ELF file needs that the image does not have.
    pub missing_libraries: Vec<(String, PathBuf)>,
    /// Paths removed by `--exclude`, with the pattern.
    pub excluded: BTreeMap<PathBuf, String>,
}

struct Walk<'a> {
    fs: &'a dyn Rootfs,
    kept: Kept,
    /// Regular files kept and not yet looked into (ELF? script?).
    inspect: VecDeque<PathBuf>,
    inspected: BTreeSet<PathBuf>,
    elf_roots: Vec<PathBuf>,
    elf_done: BTreeSet<PathBuf>,
}

impl<'a> Walk<'a> {
    fn keep(&mut self, path: PathBuf, reason: Reason) {
        for p in parents(&path) {
            self.kept.paths.entry(p).or_insert(Reason::Parent);
        }
        let slot = self.kept.paths.entry(path).or_insert(reason);
        if reason < *slot {
            *slot = reason;
        }
    }

    /// Resolves `path` in the image and keeps what it takes: the links on
    /// the way and the final entry. Returns false when it is not there.
    fn keep_resolved(
        &mut self,
        path: &Path,
        follow_last: bool,
        reason: Reason,
    ) -> Result<bool, ClosureError> {
        let Some(r) = resolve(self.fs, path, follow_last)? else {
            return Ok(false);
        };
        for link in r.links {
            self.keep(link, Reason::Symlink);
        }
        let meta = self.fs.meta(&r.path).map_err(|source| ClosureError::Io {
            path: r.path.clone(),
            source,
        })?;
        // A directory the program only looked at is kept without its
        // contents; what it read inside is in the trace by itself.
        if let Some(m) = meta
            && m.kind == Kind::Regular
            && self.inspected.insert(r.path.clone())
        {
            self.inspect.push_back(r.path.clone());
        }
        self.keep(r.path, reason);
        Ok(true)
    }

    /// Looks into kept regular files: ELF files become roots of the
    /// library closure, scripts bring their interpreter.
    fn inspect_files(&mut self) -> Result<(), ClosureError> {
        while let Some(path) = self.inspect.pop_front() {
            let head =
                self.fs
                    .read_head(&path, shebang::HEAD)
                    .map_err(|source| ClosureError::Io {
                        path: path.clone(),
                        source,
                    })?;
            if head.starts_with(b"\x7fELF") {
                if !self.elf_done.contains(&path) {
                    self.elf_roots.push(path);
                }
            } else if let Some(interp) = shebang::interpreter(&head) {
                self.keep_resolved(&interp, true, Reason::Interpreter)?;
            }
        }
        Ok(())
    }
}

/// Computes the kept set for `traces` over the source `fs`.
pub fn compute(fs: &dyn Rootfs, traces: &[Trace], rules: &Rules) -> Result<Kept, ClosureError> {
    let mut w = Walk {
        fs,
        kept: Kept::default(),
        inspect: VecDeque::new(),
        inspected: BTreeSet::new(),
        elf_roots: Vec::new(),
        elf_done: BTreeSet::new(),
    };
    w.keep(PathBuf::from("/"), Reason::Parent);

    for trace in traces {
        for file in &trace.files {
            if file.path_hex.is_some() {
                continue;
            }
            // Each way (follow the last symlink or not) of each name is
            // resolved once, however many accesses.
            let mut exists: BTreeSet<(PathBuf, bool)> = BTreeSet::new();
            let mut parents_of: BTreeSet<PathBuf> = BTreeSet::new();
            for a in &file.accesses {
                if !from_image(trace, &file.path, a) {
                    continue;
                }
                let name = PathBuf::from(a.requested.as_deref().unwrap_or(&file.path));
                match a.need() {
                    Need::Exists => {
                        // lstat and readlink look at the link itself; the
                        // rest follow it.
                        let follow = !(a.nofollow || a.op == Op::Readlink);
                        exists.insert((name, follow));
                    }
                    Need::Parent => {
                        // An O_CREAT open may have found the file there.
                        exists.insert((name.clone(), !a.nofollow));
                        if let Some(dir) = name.parent() {
                            parents_of.insert(dir.to_path_buf());
                        }
                    }
                    Need::Nothing => {}
                }
            }
            for (name, follow) in exists {
                if !w.keep_resolved(&name, follow, Reason::Traced)? {
                    w.kept.not_in_source.insert(name);
                }
            }
            // What the program made needs the directory it made it in,
            // with that directory's mode and owner, even when the program
            // never looked the directory up itself.
            for dir in parents_of {
                w.keep_resolved(&dir, true, Reason::CreatedIn)?;
            }
        }
    }

    for inc in &rules.includes {
        match (&inc.glob, &inc.walk_from) {
            (Some(glob), Some(from)) => {
                for p in walk_tree(fs, from)? {
                    if glob.is_match(&p) {
                        w.keep_resolved(&p, false, Reason::Include)?;
                    }
                }
            }
            _ => {
                if !w.keep_resolved(Path::new(&inc.text), true, Reason::Include)? {
                    return Err(ClosureError::IncludeMissing(inc.text.clone()));
                }
            }
        }
    }

    for f in essentials::FILES {
        w.keep_resolved(Path::new(f), true, Reason::Essential)?;
    }
    for d in essentials::DIRS {
        let path = Path::new(d);
        if let Ok(Some(m)) = fs.meta(path)
            && m.kind == Kind::Dir
        {
            w.keep(path.to_path_buf(), Reason::Essential);
        }
    }

    // Scripts can bring interpreters, interpreters bring libraries: repeat
    // until nothing new turns up.
    let search = elf::LibSearch::new(fs);
    loop {
        w.inspect_files()?;
        let roots = std::mem::take(&mut w.elf_roots);
        if roots.is_empty() {
            break;
        }
        w.elf_done.extend(roots.iter().cloned());
        let closure = elf::closure_with(fs, &search, &roots)?;
        for lib in closure.found.keys() {
            w.keep_resolved(lib, true, Reason::SharedLibrary)?;
        }
        // The closure already followed these transitively.
        for (lib, _) in closure.found {
            if let Some(r) = resolve(fs, &lib, true)? {
                w.elf_done.insert(r.path);
            }
        }
        w.kept.missing_libraries.extend(closure.missing);
    }

    let mut kept = w.kept;
    if rules.exclude_texts.is_empty() {
        return Ok(kept);
    }
    let excluded: Vec<(PathBuf, String)> = kept
        .paths
        .keys()
        .filter_map(|p| rules.excluded_by(p).map(|pat| (p.clone(), pat.to_string())))
        .collect();
    for (p, pat) in excluded {
        kept.paths.remove(&p);
        kept.excluded.insert(p, pat);
    }
    Ok(kept)
}

/// Every path below `dir` in the image, not following symlinks.
pub fn walk_tree(fs: &dyn Rootfs, dir: &Path) -> Result<Vec<PathBuf>, ClosureError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let names = fs.list(&d).map_err(|source| ClosureError::Io {
            path: d.clone(),
            source,
        })?;
        for n in names {
            let p = d.join(n);
            if let Ok(Some(m)) = fs.meta(&p)
                && m.kind == Kind::Dir
            {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}
