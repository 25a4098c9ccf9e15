//! Granularity (`--keep`): how much to keep around each path the trace
//! shows. `file` keeps exactly what was used (and its closure); the
//! coarser levels keep whole units, so that the app's other uses (code
//! paths the tests did not take) find what they need:
//!
//! - `module`: language units found from the image's own layout: a
//!   Python import package on a `sys.path` entry (and, for the standard
//!   library, the stdlib modules a kept stdlib module imports), a Node
//!   package, a Ruby gem, a Perl module with its `auto/` directory;
//! - `package`: the module level plus every file of each OS package
//!   (dpkg, apk) that owns a kept file, and the files no package owns in
//!   directories a kept package owns (made at install time);
//! - `package+deps`: the same, closed under `Depends`/`Pre-Depends`.
//!
//! At every level the metadata describing a kept unit goes with it
//! (`*.dist-info`, `package.json`, gem specifications).
pub mod docs;
pub mod langs;
pub mod os;
pub mod python;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{ClosureError, Options, Reason, walk_tree};
use crate::{model::trace::Trace, source::rootfs::Rootfs};

/// `--keep`: the unit kept around each used path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Level {
    /// Exactly the files the run used, with their libraries and links.
    #[default]
    #[serde(rename = "file")]
    File,
    /// Whole language modules (Python packages, Node packages, gems, Perl modules).
    #[serde(rename = "module")]
    Module,
    /// Whole OS packages owning a used file (and modules outside them).
    #[serde(rename = "package")]
    Package,
    /// Packages and their Depends/Pre-Depends, transitively.
    #[cfg_attr(feature = "cli", value(name = "package+deps"))]
    #[serde(rename = "package+deps")]
    PackageDeps,
}

impl Level {
    pub const ALL: [Level; 4] = [
        Level::File,
        Level::Module,
        Level::Package,
        Level::PackageDeps,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Level::File => "file",
            Level::Module => "module",
            Level::Package => "package",
            Level::PackageDeps => "package+deps",
        }
    }
}

/// One path a unit brings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub path: PathBuf,
    pub reason: Reason,
    /// `package git`, `python module pygments`, ...
    pub unit: String,
    /// A file that may be run: an ELF file brings its libraries, an
    /// executable `#!` script its interpreter.
    pub program: bool,
}

/// The paths of a unit rooted at `dir` (the directory and everything below).
pub(crate) fn whole_dir(
    fs: &dyn Rootfs,
    dir: &Path,
    reason: Reason,
    unit: &str,
    program: bool,
    out: &mut Vec<Unit>,
) -> Result<(), ClosureError> {
    out.push(Unit {
        path: dir.to_path_buf(),
        reason,
        unit: unit.to_string(),
        program: false,
    });
    for p in walk_tree(fs, dir)? {
        out.push(Unit {
            path: p,
            reason,
            unit: unit.to_string(),
            program,
        });
    }
    Ok(())
}

/// Kept paths at or below `dir` (a range query on the sorted map).
pub(crate) fn any_kept_under(kept: &BTreeMap<PathBuf, Reason>, dir: &Path) -> bool {
    kept.range(dir.to_path_buf()..)
        .next()
        .is_some_and(|(p, _)| p.starts_with(dir))
}

/// Works out, round after round, what the level adds to a kept set.
pub struct Expander<'a> {
    fs: &'a dyn Rootfs,
    level: Level,
    keep_docs: bool,
    /// Locale languages the traces looked at (their files stay).
    langs: BTreeSet<String>,
    python: python::Python,
    os: Option<Option<os::OsPackages>>,
    /// Units already expanded: each is added once.
    done: BTreeSet<String>,
}

impl<'a> Expander<'a> {
    pub fn new(fs: &'a dyn Rootfs, opts: &Options, traces: &[Trace]) -> Expander<'a> {
        Expander {
            fs,
            level: opts.keep,
            keep_docs: opts.keep_docs,
            langs: docs::traced_langs(traces),
            python: python::Python::default(),
            os: None,
            done: BTreeSet::new(),
        }
    }

    /// The paths to add for `kept` (some may be kept already).
    pub fn expand(&mut self, kept: &BTreeMap<PathBuf, Reason>) -> Result<Vec<Unit>, ClosureError> {
        let mut out = Vec::new();
        self.python.metadata(self.fs, kept, &mut out)?;
        langs::metadata(self.fs, kept, &mut out)?;
        if self.level >= Level::Module {
            self.python
                .modules(self.fs, kept, &mut self.done, &mut out)?;
            langs::modules(self.fs, kept, &mut self.done, &mut out)?;
        }
        if self.level >= Level::Package {
            if self.os.is_none() {
                self.os = Some(os::OsPackages::load(self.fs)?);
            }
            if let Some(Some(db)) = &self.os {
                let filter = docs::Filter {
                    keep_docs: self.keep_docs,
                    langs: &self.langs,
                };
                db.expand(
                    self.fs,
                    kept,
                    self.level == Level::PackageDeps,
                    &filter,
                    &mut self.done,
                    &mut out,
                )?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
