//! ELF dependencies: the interpreter and the shared libraries a program
//! needs, found in the image the way glibc's ld.so would find them.
//!
//! A trace only sees the libraries one run loaded; this closure adds the
//! ones any run would load (all of `DT_NEEDED`, transitively), so a
//! minimal image never lacks a library for a code path the trace missed.
//! Everything read comes from the image and is untrusted: offsets are
//! checked, and malformed objects are skipped, not trusted.
//!
//! `object` reads one ELF file, `search` is the loader's search policy,
//! and this module walks the closure from the roots.
mod object;
mod search;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    io,
    path::{Path, PathBuf},
    rc::Rc,
};

pub use object::{ElfInfo, parse};
use object::{HEAD, Object, Unparsed, parse_object};
pub use search::LibSearch;
use search::clean;

use super::resolve::{ResolveError, resolve};
use crate::source::rootfs::{Kind, Rootfs};

/// The interpreters and libraries the roots need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfClosure {
    /// Each object found, by the path it was found under (symlinks on
    /// the way kept), with the object that first needed it.
    pub found: BTreeMap<PathBuf, PathBuf>,
    /// Needed names (or interpreters) not found in the image, with the
    /// object that needed them: the program would fail to start.
    pub missing: Vec<(String, PathBuf)>,
    /// Interpreters (`PT_INTERP`) named by a relative path, with the
    /// program: the kernel opens them from the working directory of the
    /// process that runs the program, which nothing here knows.
    pub relative: Vec<(String, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// One loaded object's place in the loader chain, for `DT_RPATH`
/// inheritance: glibc searches the `DT_RPATH` of the object needing a
/// name, then of the object that loaded that one, and so on up to the
/// program.
struct Loader {
    path: PathBuf,
    /// Empty when the object has a `DT_RUNPATH` (glibc then drops its
    /// `DT_RPATH` altogether).
    rpath: Vec<String>,
    parent: Option<Rc<Loader>>,
}

struct Node {
    path: PathBuf,
    object: Rc<Object>,
    loader: Rc<Loader>,
}

/// Parsed objects by real path, so each file is read once for all roots.
type Objects = HashMap<PathBuf, Option<Rc<Object>>>;

fn load(
    fs: &dyn Rootfs,
    real: &Path,
    objects: &mut Objects,
) -> Result<Option<Rc<Object>>, ElfError> {
    if let Some(o) = objects.get(real) {
        return Ok(o.clone());
    }
    let io_err = |source| ElfError::Io {
        path: real.to_path_buf(),
        source,
    };
    let object = match fs.meta(real).map_err(io_err)? {
        Some(m) if m.kind == Kind::Regular => {
            let head = fs.read_head(real, HEAD).map_err(io_err)?;
            match parse_object(&head) {
                Ok(o) => Some(Rc::new(o)),
                Err(Unparsed::Short) if (head.len() as u64) < m.size => {
                    let all = fs.read_all(real).map_err(io_err)?;
                    parse_object(&all).ok().map(Rc::new)
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    objects.insert(real.to_path_buf(), object.clone());
    Ok(object)
}

fn effective_rpath(info: &ElfInfo) -> Vec<String> {
    if info.runpath.is_empty() {
        info.rpath.clone()
    } else {
        Vec::new()
    }
}

/// The ELF closure of `roots` with the image's own library search.
pub fn closure(fs: &dyn Rootfs, roots: &[PathBuf]) -> Result<ElfClosure, ElfError> {
    closure_with(fs, &LibSearch::new(fs), roots)
}

/// The ELF closure of `roots` (ELF files, by real path; others are
/// ignored): each root's interpreter and, breadth-first as ld.so loads
/// them, every `DT_NEEDED` library, transitively. Each root is a process
/// of its own: a needed name already loaded in it (by soname or by the
/// name it was loaded under) is not searched again, as in ld.so, which
/// also ends cycles.
pub fn closure_with(
    fs: &dyn Rootfs,
    search: &LibSearch,
    roots: &[PathBuf],
) -> Result<ElfClosure, ElfError> {
    let mut objects = Objects::new();
    let mut out = ElfClosure::default();
    let mut missing_seen = HashSet::new();
    let mut note_missing = |name: &str, by: &Path, out: &mut ElfClosure| {
        if missing_seen.insert((name.to_owned(), by.to_path_buf())) {
            out.missing.push((name.to_owned(), by.to_path_buf()));
        }
    };
    for root in roots {
        let root = Path::new("/").join(root);
        let Some(real) = resolve(fs, &root, true)? else {
            continue;
        };
        let Some(object) = load(fs, &real.path, &mut objects)? else {
            continue;
        };
        // Names this process has loaded, and the files behind them.
        let mut names: HashSet<String> = HashSet::new();
        let mut files: HashSet<PathBuf> = HashSet::from([real.path.clone()]);
        names.extend(object.soname.clone());
        let exe = Rc::new(Loader {
            path: root.clone(),
            rpath: effective_rpath(&object.info),
            parent: None,
        });
        let mut queue = VecDeque::new();
        if let Some(interp) = object.info.interp.as_ref().filter(|i| !i.starts_with('/')) {
            // Never guessed from `/`: a file there would be kept in place
            // of the one the kernel loads.
            out.relative.push((interp.clone(), root.clone()));
        } else if let Some(interp) = &object.info.interp {
            let path = clean(fs, &Path::new("/").join(interp));
            let loaded = match &path {
                Some(p) => match resolve(fs, p, true) {
                    Ok(Some(r)) => load(fs, &r.path, &mut objects)?.map(|o| (o, r.path)),
                    _ => None,
                },
                None => None,
            };
            match (path, loaded) {
                (Some(path), Some((o, file))) => {
                    out.found.entry(path.clone()).or_insert(root.clone());
                    names.extend(o.soname.clone());
                    names.insert(interp.clone());
                    names.insert(path.to_string_lossy().into_owned());
                    files.insert(file);
                    let loader = Rc::new(Loader {
                        path: path.clone(),
                        rpath: effective_rpath(&o.info),
                        parent: None,
                    });
                    queue.push_back(Node {
                        path,
                        object: o,
                        loader,
                    });
                }
                _ => note_missing(interp, &root, &mut out),
            }
        }
        queue.push_front(Node {
            path: root.clone(),
            object,
            loader: exe.clone(),
        });
        while let Some(node) = queue.pop_front() {
            // RPATHs of the objects above this one, and the program's.
            let mut chain: Vec<(&Path, &[String])> = Vec::new();
            let mut up = node.loader.parent.as_deref();
            let mut saw_exe = Rc::ptr_eq(&node.loader, &exe);
            while let Some(l) = up {
                saw_exe |= std::ptr::eq(l, &*exe);
                chain.push((&l.path, &l.rpath));
                up = l.parent.as_deref();
            }
            if !saw_exe {
                chain.push((&exe.path, &exe.rpath));
            }
            for name in &node.object.info.needed {
                if names.contains(name) {
                    continue;
                }
                let Some(path) =
                    search.find_in(fs, name, &node.path, &node.object.info, &chain, &root)
                else {
                    note_missing(name, &node.path, &mut out);
                    continue;
                };
                names.insert(name.clone());
                names.insert(path.to_string_lossy().into_owned());
                out.found.entry(path.clone()).or_insert(node.path.clone());
                let Some(real) = resolve(fs, &path, true)? else {
                    continue;
                };
                // The same file under another name is the same object.
                if !files.insert(real.path.clone()) {
                    continue;
                }
                let Some(object) = load(fs, &real.path, &mut objects)? else {
                    continue;
                };
                names.extend(object.soname.clone());
                let loader = Rc::new(Loader {
                    path: path.clone(),
                    rpath: effective_rpath(&object.info),
                    parent: Some(node.loader.clone()),
                });
                queue.push_back(Node {
                    path,
                    object,
                    loader,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
