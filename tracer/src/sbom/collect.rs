//! Gathering the model from an image's files: the packages each
//! ecosystem's metadata records, then every regular file, hashed and tied
//! to the package owning it.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{self, Read},
    path::{Component, Path, PathBuf},
};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{
    SbomError, dpkg, gem,
    model::{File, Package, Sbom, Subject},
    npm, pypi,
};
use crate::source::rootfs::{Kind, Meta, Rootfs};

/// The image as the SBOM sees it: the paths it holds, read through `fs`.
/// For a minimal image `fs` is the source with the trimmed dpkg database
/// laid over it and `paths` what the image keeps; for any other image,
/// every path in it (see [`walk`]).
pub struct View<'a> {
    pub fs: &'a dyn Rootfs,
    pub paths: &'a BTreeSet<PathBuf>,
}

impl View<'_> {
    /// Metadata of `path` when the image holds it.
    pub fn present(&self, path: &Path) -> Option<Meta> {
        if !self.paths.contains(path) {
            return None;
        }
        self.fs.meta(path).ok().flatten()
    }

    pub fn is_file(&self, path: &Path) -> bool {
        self.present(path).is_some_and(|m| m.kind == Kind::Regular)
    }

    /// The regular files the image holds below `dir`, in path order.
    pub fn files_under<'v>(&'v self, dir: &'v Path) -> impl Iterator<Item = &'v PathBuf> + 'v {
        self.paths
            .range(dir.to_path_buf()..)
            .take_while(move |p| p.starts_with(dir))
            .filter(|p| self.is_file(p))
    }

    /// What a package's record of `listed` finds in the image: the
    /// regular file (at the path it really has: Debian lists `/bin/sh`,
    /// the merged-/usr image holds `/usr/bin/sh`), something else, or
    /// nothing.
    pub fn locate(&self, listed: &Path) -> Located {
        if listed.parent().is_none() {
            return Located::Other;
        }
        let here = match self.present(listed) {
            Some(m) => Some((listed.to_path_buf(), m)),
            None => crate::closure::resolve::resolve(self.fs, listed, false)
                .ok()
                .flatten()
                .filter(|r| r.path != listed)
                .and_then(|r| self.present(&r.path).map(|m| (r.path, m))),
        };
        match here {
            Some((p, m)) if m.kind == Kind::Regular => Located::File(p),
            Some(_) => Located::Other,
            None => Located::Absent,
        }
    }

    /// The contents of a regular file the image holds, or None.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, SbomError> {
        if !self.is_file(path) {
            return Ok(None);
        }
        self.fs
            .read_all(path)
            .map(Some)
            .map_err(|e| io_err(path, e))
    }

    /// The contents of a file of the source, held by the image or not
    /// (the dpkg database and the copyright files describe packages whose
    /// records the image keeps even where it drops those files).
    pub fn read_source(&self, path: &Path) -> Result<Option<Vec<u8>>, SbomError> {
        match self.fs.meta(path) {
            Ok(Some(m)) if m.kind == Kind::Regular => self
                .fs
                .read_all(path)
                .map(Some)
                .map_err(|e| io_err(path, e)),
            Ok(_) => Ok(None),
            Err(e) => Err(io_err(path, e)),
        }
    }
}

pub enum Located {
    File(PathBuf),
    Other,
    Absent,
}

pub(crate) fn io_err(path: &Path, source: io::Error) -> SbomError {
    SbomError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every path in `fs` (not the root itself), for an image read whole.
pub fn walk(fs: &dyn Rootfs) -> Result<BTreeSet<PathBuf>, SbomError> {
    let mut out = BTreeSet::new();
    let mut stack = vec![PathBuf::from("/")];
    while let Some(dir) = stack.pop() {
        for name in fs.list(&dir).map_err(|e| io_err(&dir, e))? {
            let p = dir.join(name);
            if let Some(m) = fs.meta(&p).map_err(|e| io_err(&p, e))?
                && m.kind == Kind::Dir
            {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    Ok(out)
}

/// `base/rel` with `.` and `..` taken out lexically (RECORD entries such
/// as `../../../bin/pygmentize`).
pub(crate) fn join_lexical(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn hash(fs: &dyn Rootfs, path: &Path) -> Result<(String, String), SbomError> {
    let mut r = fs.open(path).map_err(|e| io_err(path, e))?;
    let (mut a, mut b) = (Sha256::new(), Sha1::new());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
        b.update(&buf[..n]);
    }
    Ok((
        crate::source::archive::hex(&a.finalize()),
        crate::source::archive::hex(&b.finalize()),
    ))
}

/// The SBOM of the image `view` holds.
pub fn collect(view: &View, subject: Subject) -> Result<Sbom, SbomError> {
    let mut packages: Vec<Package> = Vec::new();
    packages.extend(dpkg::packages(view)?);
    packages.extend(pypi::packages(view)?);
    packages.extend(npm::packages(view)?);
    packages.extend(gem::packages(view)?);
    packages.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.arch, &a.source).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.arch,
            &b.source,
        ))
    });
    // A file two packages claim (rare: shared paths of co-installed
    // architectures) is tied to the first.
    let mut owner: BTreeMap<&Path, usize> = BTreeMap::new();
    for (i, p) in packages.iter().enumerate() {
        for f in &p.present {
            owner.entry(f.as_path()).or_insert(i);
        }
    }
    let mut files = Vec::new();
    let mut by_link: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for path in view.paths {
        let Some(m) = view.present(path) else {
            continue;
        };
        if m.kind != Kind::Regular {
            continue;
        }
        let (sha256, sha1) = match m.link_id.and_then(|id| by_link.get(&id)) {
            Some(h) => h.clone(),
            None => {
                let h = hash(view.fs, path)?;
                if let Some(id) = m.link_id {
                    by_link.insert(id, h.clone());
                }
                h
            }
        };
        files.push(File {
            path: path.clone(),
            sha256,
            sha1,
            size: m.size,
            owner: owner.get(path.as_path()).copied(),
        });
    }
    Ok(Sbom {
        subject,
        packages,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_paths_are_joined_lexically() {
        let base = Path::new("/usr/lib/python3/dist-packages");
        assert_eq!(
            join_lexical(base, "../../../bin/x"),
            Path::new("/usr/bin/x")
        );
        assert_eq!(
            join_lexical(base, "./a/b.py"),
            Path::new("/usr/lib/python3/dist-packages/a/b.py")
        );
    }
}
