//! Directories the run listed (getdents64): a program that acts on a
//! listing itself (`find DIR -name 'x*'`, `ls DIR | wc -l`) needs the
//! entries there, even the ones it never opened. `--keep-listed` keeps
//! them, one level deep, as entries: files with their contents,
//! directories empty, symlinks as links.
use std::{collections::BTreeSet, path::PathBuf};

use super::{ClosureError, resolve::resolve};
use crate::{
    model::trace::{Op, Trace},
    source::rootfs::{Kind, Rootfs},
};

/// The directories the traces show listed, as the program named them.
pub fn listed_dirs(traces: &[Trace]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for t in traces {
        for f in &t.files {
            let path = f.os_path();
            if f.accesses.iter().any(|a| a.ok() && a.op == Op::List) && !t.beyond_image(&path) {
                out.insert(path);
            }
        }
    }
    out
}

/// Every entry of every listed directory in `fs`, with the directory
/// (resolved in the image) it was found in.
pub fn entries(fs: &dyn Rootfs, traces: &[Trace]) -> Result<Vec<(PathBuf, PathBuf)>, ClosureError> {
    let mut out = Vec::new();
    for dir in listed_dirs(traces) {
        let Some(r) = resolve(fs, &dir, true)? else {
            continue;
        };
        if !matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Dir) {
            continue;
        }
        let names = fs.list(&r.path).map_err(|source| ClosureError::Io {
            path: r.path.clone(),
            source,
        })?;
        for n in names {
            out.push((r.path.join(n), r.path.clone()));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
