//! Path resolution inside an image: symlinks are followed the way the
//! kernel would inside a chroot of the image, so an absolute target or
//! `..` at the top stays inside the root and never reaches the host.
use std::{
    io,
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use crate::source::rootfs::{Kind, Rootfs};

/// The kernel's limit on symlinks followed in one lookup.
const MAX_LINKS: usize = 40;

/// Where a lookup ended, and every symlink it went through (the link
/// entries themselves, which an image must keep for the path to work).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub path: PathBuf,
    pub links: Vec<PathBuf>,
    /// Directories the lookup went through, including ones it left again
    /// by `..` (`link/../x` with `link -> real/sub` enters `real/sub`):
    /// the lookup fails in an image without them.
    pub traversed: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("too many levels of symbolic links resolving {0}")]
    Loop(PathBuf),
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Resolves `path` (absolute within the image). With `follow_last`, a
/// symlink in the last component is followed too (as `open` and `stat`
/// do; `lstat` and `readlink` do not). `Ok(None)` when a component does
/// not exist; the links met before that are then lost with it.
pub fn resolve(
    fs: &dyn Rootfs,
    path: &Path,
    follow_last: bool,
) -> Result<Option<Resolved>, ResolveError> {
    let mut links = Vec::new();
    let mut traversed = Vec::new();
    let mut budget = MAX_LINKS;
    // Components still to walk, in order; `done` is the resolved prefix.
    let mut todo: Vec<Vec<u8>> = split(path.as_os_str().as_bytes());
    todo.reverse();
    let mut done = PathBuf::from("/");
    while let Some(name) = todo.pop() {
        match name.as_slice() {
            b"." => continue,
            b".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let next = done.join(std::ffi::OsStr::from_bytes(&name));
        let meta = fs.meta(&next).map_err(|source| ResolveError::Io {
            path: next.clone(),
            source,
        })?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let is_last = todo.is_empty();
        match meta.kind {
            Kind::Symlink(target) if !is_last || follow_last => {
                if budget == 0 {
                    return Err(ResolveError::Loop(path.to_path_buf()));
                }
                budget -= 1;
                links.push(next);
                if target.first() == Some(&b'/') {
                    done = PathBuf::from("/");
                }
                let mut parts = split(&target);
                parts.reverse();
                todo.extend(parts);
            }
            Kind::Dir => {
                traversed.push(next.clone());
                done = next
            }
            _ if !is_last => return Ok(None),
            _ => done = next,
        }
    }
    Ok(Some(Resolved {
        path: done,
        links,
        traversed,
    }))
}

fn split(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Every ancestor directory of `path`, from `/` down (not `path` itself).
pub fn parents(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = PathBuf::from("/");
    let comps: Vec<_> = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    out.push(cur.clone());
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c.as_os_str());
        out.push(cur.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dir::DirRootfs;
    use std::os::unix::fs::symlink;

    fn image() -> (tempfile::TempDir, DirRootfs) {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/bin/python3.11"), "x").unwrap();
        symlink("python3.11", r.join("usr/bin/python3")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink("../../../../../etc", r.join("usr/escape")).unwrap();
        std::fs::create_dir(r.join("etc")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        let fs = DirRootfs::open(r).unwrap();
        (dir, fs)
    }

    #[test]
    fn symlink_chain_through_a_directory_link() {
        let (_d, fs) = image();
        let r = resolve(&fs, Path::new("/bin/python3"), true)
            .unwrap()
            .unwrap();
        assert_eq!(r.path, PathBuf::from("/usr/bin/python3.11"));
        assert_eq!(
            r.links,
            vec![PathBuf::from("/bin"), PathBuf::from("/usr/bin/python3")]
        );
        let l = resolve(&fs, Path::new("/bin/python3"), false)
            .unwrap()
            .unwrap();
        assert_eq!(l.path, PathBuf::from("/usr/bin/python3"));
    }

    #[test]
    fn escapes_stay_inside_and_loops_end() {
        let (_d, fs) = image();
        // `..` past the top of the image stays at its root.
        let r = resolve(&fs, Path::new("/usr/escape"), true)
            .unwrap()
            .unwrap();
        assert_eq!(r.path, PathBuf::from("/etc"));
        assert!(matches!(
            resolve(&fs, Path::new("/loop1"), true),
            Err(ResolveError::Loop(_))
        ));
        assert_eq!(resolve(&fs, Path::new("/nope/x"), true).unwrap(), None);
        assert_eq!(
            resolve(&fs, Path::new("/usr/bin/python3.11/x"), true).unwrap(),
            None
        );
    }

    #[test]
    fn parent_list() {
        assert_eq!(
            parents(Path::new("/usr/bin/x")),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/usr"),
                PathBuf::from("/usr/bin")
            ]
        );
        assert_eq!(parents(Path::new("/")), vec![PathBuf::from("/")]);
    }
}
