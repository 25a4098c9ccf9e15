//! Closure: from what a trace observed to everything the minimal image
//! must hold: the symlinks on the way to each file, their parents, shared
//! libraries (ELF closure), `#!` interpreters, a few essentials, and the
//! user's rules.
pub mod elf;
pub mod essentials;
pub mod granularity;
pub mod ldcache;
pub mod listed;
pub mod packages;
pub mod programs;
pub mod resolve;
pub mod rules;
pub mod shebang;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::{
    model::trace::{Access, Need, Op, Role, Trace},
    source::rootfs::{Kind, Rootfs},
};

/// Whether what `access` reached at `path` can be the image's: not a
/// runtime filesystem (/proc, /dev, ...), not below a bind mount into the
/// container, and, for traces made in an image or `--root`, on the
/// image's own filesystem and below its root.
pub fn from_image(trace: &Trace, path: &str, access: &Access) -> bool {
    if trace.beyond_image(Path::new(path)) || access.outside_root {
        return false;
    }
    // On the host the host's filesystems are the "image" (a separate /usr
    // is still /usr); in an image or a `--root`, another filesystem (a
    // tmpfs, a bind from outside) never is.
    let in_image = trace.scope.image.is_some() || trace.scope.root.is_some();
    !(in_image && access.mount.is_some())
}
pub use granularity::Level;
pub use programs::InterpreterUse;
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
    /// Metadata that describes a kept unit (`*.dist-info`, `package.json`,
    /// a gem specification): read at run time, whatever the level.
    Metadata,
    /// Part of a language module that owns a kept path (`--keep module`).
    Module,
    /// A file of an OS package that owns a kept path (`--keep package`).
    Package,
    /// A file of a package the kept packages depend on (`--keep package+deps`).
    Dependency,
    /// An entry of a directory the run listed (`--keep-listed`).
    Listed,
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
    #[error("reading the package database")]
    PackageDb(#[source] std::io::Error),
    #[error("reading {path} in the source image")]
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
    /// Interpreters named by a relative path (a `#!` line, an ELF's
    /// `PT_INTERP`), with the file naming them: the kernel looks them up
    /// from the caller's working directory, which a trace does not
    /// record, so nothing is kept for them.
    pub relative_interpreters: Vec<(String, PathBuf)>,
    /// Paths removed by `--exclude`, with the pattern.
    pub excluded: BTreeMap<PathBuf, String>,
    /// The unit that pulled each path a level, the metadata rule or
    /// `--keep-listed` added (`package git`, `python module pygments`).
    pub units: BTreeMap<PathBuf, String>,
    /// Why each `#!` interpreter is in the image.
    pub interpreters: Vec<InterpreterUse>,
    /// False when some trace is incomplete or attached to a running
    /// process: every kept ELF file then roots the library closure, as a
    /// library the loader mapped may be missing from the trace.
    pub precise: bool,
}

/// How much to keep around what the trace shows (see `granularity`).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub keep: Level,
    /// Keep documentation, man pages and all locales of kept packages.
    pub keep_docs: bool,
    /// Keep the entries of every directory the run listed.
    pub keep_listed: bool,
    /// Programs the image's config starts (Entrypoint, Cmd).
    pub config_programs: Vec<programs::ConfigProgram>,
}

struct Walk<'a> {
    fs: &'a dyn Rootfs,
    kept: Kept,
    /// Regular files kept and not yet looked into (ELF? script?).
    inspect: VecDeque<PathBuf>,
    inspected: BTreeSet<PathBuf>,
    elf_roots: Vec<PathBuf>,
    elf_done: BTreeSet<PathBuf>,
    /// Kept files that are programs (executed, named by the config or
    /// `--include`, or added by a level), with why.
    programs: BTreeMap<PathBuf, programs::Why>,
    /// Set while a level's units are added.
    units_round: bool,
}

impl<'a> Walk<'a> {
    fn keep(&mut self, path: PathBuf, reason: Reason) {
        for p in parents(&path) {
            self.kept.paths.entry(p).or_insert(Reason::Parent);
        }
        let slot = self.kept.paths.entry(path).or_insert(reason);
        // A unit met again (a module inside a kept package) does not
        // change why a path is there.
        if reason < *slot && !(self.units_round && *slot != Reason::Parent) {
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
        Ok(self.keep_found(path, follow_last, reason)?.is_some())
    }

    /// As `keep_resolved`; returns where the lookup ended and whether that
    /// entry is new in the kept set.
    fn keep_found(
        &mut self,
        path: &Path,
        follow_last: bool,
        reason: Reason,
    ) -> Result<Option<(PathBuf, bool)>, ClosureError> {
        let Some(r) = resolve(self.fs, path, follow_last)? else {
            return Ok(None);
        };
        let new = !self.kept.paths.contains_key(&r.path);
        for link in r.links {
            self.keep(link, Reason::Symlink);
        }
        for dir in r.traversed {
            self.keep(dir, Reason::Parent);
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
        self.keep(r.path.clone(), reason);
        Ok(Some((r.path, new)))
    }

    /// Notes that the file at `real` is a program; looks at it again if
    /// it was already looked at as a plain file.
    fn mark_program(&mut self, real: PathBuf, why: programs::Why) {
        if self.programs.contains_key(&real) {
            return;
        }
        self.programs.insert(real.clone(), why);
        let regular = matches!(self.fs.meta(&real), Ok(Some(m)) if m.kind == Kind::Regular);
        if regular && self.kept.paths.contains_key(&real) && !self.inspect.contains(&real) {
            self.inspected.insert(real.clone());
            self.inspect.push_back(real);
        }
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
            let why = self.programs.get(&path).cloned();
            if head.starts_with(b"\x7fELF") {
                // A library the loader maps is opened, and so traced, with
                // everything it needs: only programs (and, when the trace
                // may miss opens, every ELF file) root the closure.
                if (why.is_some() || !self.kept.precise) && !self.elf_done.contains(&path) {
                    self.elf_roots.push(path);
                }
            } else if let Some(interp) = shebang::interpreter(&head)
                && let Some(why) = why
                && (!why.needs_exec_bit || self.executable(&path))
            {
                // A script that was only read or copied needs no interpreter.
                if !interp.starts_with("/") {
                    self.kept
                        .relative_interpreters
                        .push((interp.display().to_string(), path.clone()));
                } else if let Some((real, _)) =
                    self.keep_found(&interp, true, Reason::Interpreter)?
                {
                    self.kept.interpreters.push(InterpreterUse {
                        interpreter: interp.display().to_string(),
                        resolved: real.display().to_string(),
                        script: path.display().to_string(),
                        why: why.text,
                    });
                    // The kernel runs the interpreter as a program: a
                    // script in turn brings its own (`#!` chains, up to
                    // the kernel's depth), a binary its libraries. The
                    // trace names only the first script and the last
                    // binary; the ones between are read by the kernel.
                    self.mark_program(real, programs::Why::interpreter_of(&path));
                }
            }
        }
        Ok(())
    }

    fn executable(&self, path: &Path) -> bool {
        matches!(self.fs.meta(path), Ok(Some(m)) if m.mode & 0o111 != 0)
    }

    /// Scripts can bring interpreters, interpreters bring libraries:
    /// repeats until nothing new turns up.
    fn close(&mut self, search: &elf::LibSearch) -> Result<(), ClosureError> {
        loop {
            self.inspect_files()?;
            let roots = std::mem::take(&mut self.elf_roots);
            if roots.is_empty() {
                return Ok(());
            }
            self.elf_done.extend(roots.iter().cloned());
            let closure = elf::closure_with(self.fs, search, &roots)?;
            for lib in closure.found.keys() {
                self.keep_resolved(lib, true, Reason::SharedLibrary)?;
            }
            // The closure already followed these transitively.
            for (lib, _) in closure.found {
                if let Some(r) = resolve(self.fs, &lib, true)? {
                    self.elf_done.insert(r.path);
                }
            }
            self.kept.missing_libraries.extend(closure.missing);
            self.kept.relative_interpreters.extend(closure.relative);
        }
    }
}

/// Computes the kept set for `traces` over the source `fs`, at file level.
pub fn compute(fs: &dyn Rootfs, traces: &[Trace], rules: &Rules) -> Result<Kept, ClosureError> {
    compute_with(fs, traces, rules, &Options::default())
}

/// Every symlink the traced runs made, with each target it was given.
fn symlinks_made(traces: &[Trace]) -> Vec<(PathBuf, PathBuf)> {
    let mut made = Vec::new();
    for trace in traces {
        for file in &trace.files {
            for a in &file.accesses {
                if a.op == Op::Symlink
                    && a.errno.is_none()
                    && let Some(target) = a.content.as_deref()
                {
                    made.push((file.os_path(), PathBuf::from(target)));
                }
            }
        }
    }
    made.sort();
    made.dedup();
    made
}

/// Directories a run renamed. A trace files a rename's two names apart,
/// so a name below a rename's new name may stand for one below any
/// directory the same run renamed away (`mv D D.bak; cat D.bak/y` read
/// the image's `D/y`): each such directory of the image is tried.
struct Renamed {
    targets: Vec<PathBuf>,
    sources: Vec<PathBuf>,
}

impl Renamed {
    /// More directories renamed than this are not tried one by one.
    const MAX_SOURCES: usize = 64;

    fn of(fs: &dyn Rootfs, trace: &Trace) -> Result<Renamed, ClosureError> {
        let (mut targets, mut sources) = (Vec::new(), Vec::new());
        for file in &trace.files {
            for a in &file.accesses {
                if a.op != Op::Rename || a.errno.is_some() || !from_image(trace, &file.path, a) {
                    continue;
                }
                match a.role {
                    Some(Role::Target) => targets.push(file.os_path()),
                    Some(Role::Source) => sources.push(file.os_path()),
                    _ => {}
                }
            }
        }
        let mut dirs = Vec::new();
        if !targets.is_empty() {
            sources.sort();
            sources.dedup();
            for s in sources {
                if matches!(resolve(fs, &s, false)?, Some(r)
                    if matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Dir))
                {
                    dirs.push(s);
                }
            }
        }
        if dirs.len() > Self::MAX_SOURCES {
            dirs.clear();
        }
        Ok(Renamed {
            targets,
            sources: dirs,
        })
    }

    fn alternatives(&self, name: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for t in &self.targets {
            if let Some(rest) = strictly_below(name, t) {
                out.extend(
                    self.sources
                        .iter()
                        .filter(|s| *s != t)
                        .map(|s| s.join(rest)),
                );
            }
        }
        out
    }
}

/// `name` with a symlink the run made on its way replaced by each target
/// that link was given (relative targets from the link's directory).
fn through_made_links(made: &[(PathBuf, PathBuf)], name: &Path) -> Vec<PathBuf> {
    made.iter()
        .filter_map(|(link, target)| {
            let rest = strictly_below(name, link)?;
            let dir = link.parent().unwrap_or(Path::new("/"));
            Some(dir.join(target).join(rest))
        })
        .collect()
}

/// What follows `top` in `name`, when `name` lies below it.
fn strictly_below<'n>(name: &'n Path, top: &Path) -> Option<&'n Path> {
    name.strip_prefix(top)
        .ok()
        .filter(|rest| !rest.as_os_str().is_empty())
}

/// Computes the kept set for `traces` over the source `fs`.
pub fn compute_with(
    fs: &dyn Rootfs,
    traces: &[Trace],
    rules: &Rules,
    opts: &Options,
) -> Result<Kept, ClosureError> {
    let mut w = Walk {
        fs,
        kept: Kept {
            precise: traces.iter().all(programs::covers_every_open),
            ..Kept::default()
        },
        inspect: VecDeque::new(),
        inspected: BTreeSet::new(),
        elf_roots: Vec::new(),
        elf_done: BTreeSet::new(),
        programs: BTreeMap::new(),
        units_round: false,
    };
    w.keep(PathBuf::from("/"), Reason::Parent);
    for (real, why) in programs::named(fs, traces, rules, &opts.config_programs)? {
        w.mark_program(real, why);
    }

    let made = symlinks_made(traces);
    for trace in traces {
        let renamed = Renamed::of(fs, trace)?;
        for file in &trace.files {
            let path = file.os_path();
            // Each way (follow the last symlink or not) of each name is
            // resolved once, however many accesses.
            let mut exists: BTreeSet<(PathBuf, bool)> = BTreeSet::new();
            let mut parents_of: BTreeSet<PathBuf> = BTreeSet::new();
            for a in &file.accesses {
                if !from_image(trace, &file.path, a) {
                    continue;
                }
                let name = a.requested_path().unwrap_or_else(|| path.clone());
                match a.need() {
                    Need::Exists => {
                        // lstat and readlink look at the link itself; the
                        // rest follow it.
                        let follow = !(a.nofollow || a.op == Op::Readlink);
                        // The file the kernel named is kept as itself too:
                        // the request shows the symlinks on the way, the
                        // observed name where the file is.
                        if a.observed && a.requested.is_some() {
                            exists.insert((path.clone(), follow));
                        }
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
                // A name through a symlink the run made (or re-pointed)
                // went where that link pointed, not where the image's
                // link of that name does: both are kept.
                for alt in through_made_links(&made, &name) {
                    w.keep_resolved(&alt, follow, Reason::Traced)?;
                }
                for alt in renamed.alternatives(&name) {
                    w.keep_resolved(&alt, follow, Reason::Traced)?;
                }
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
                if !w.keep_resolved(&inc.path, true, Reason::Include)? {
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

    let search = elf::LibSearch::new(fs);
    let mut units = granularity::Expander::new(fs, opts, traces);
    loop {
        w.close(&search)?;
        // Metadata at every level, whole units at the coarser ones; what
        // they add is closed again (package binaries need libraries).
        let mut grew = false;
        let round = units.expand(&w.kept.paths)?;
        w.units_round = true;
        for u in round {
            if let Some((real, new)) = w.keep_found(&u.path, false, u.reason)? {
                if new {
                    grew = true;
                    w.kept.units.insert(real.clone(), u.unit.clone());
                }
                if u.program {
                    w.mark_program(real, programs::Why::of_unit(&u.unit));
                }
            }
        }
        w.units_round = false;
        if !grew && w.inspect.is_empty() {
            break;
        }
    }
    if opts.keep_listed {
        for (entry, dir) in listed::entries(fs, traces)? {
            if !w.kept.paths.contains_key(&entry) {
                w.kept
                    .units
                    .insert(entry.clone(), format!("listed {}", dir.display()));
                w.keep(entry, Reason::Listed);
            }
        }
    }
    w.kept.interpreters.sort();
    w.kept.interpreters.dedup();

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
    // A directory that still holds a kept path stays, as a parent with
    // its own mode and owner: the runtime would make it 0755 root.
    let holding: BTreeSet<PathBuf> = kept.paths.keys().flat_map(|p| parents(p)).collect();
    for dir in holding {
        if kept.excluded.remove(&dir).is_some() {
            kept.paths.insert(dir, Reason::Parent);
        }
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
