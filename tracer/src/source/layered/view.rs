//! The finished tree of a layered image, read as a root filesystem:
//! metadata from memory, file data from the layer tars in place.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::OsString,
    io::{self, Read},
    path::{Component, Path, PathBuf},
};

use super::Node;
use crate::source::{
    archive::Region,
    rootfs::{Kind, Meta, Rootfs},
};

/// The merged root filesystem of a layered image.
pub struct LayeredRootfs {
    pub(super) label: String,
    pub(super) nodes: BTreeMap<PathBuf, Node>,
    pub(super) children: HashMap<PathBuf, Vec<OsString>>,
    pub(super) stores: Vec<Region>,
}

impl LayeredRootfs {
    /// The tree key for a caller's path: absolute or relative to the root;
    /// `.`/`..` are refused like `DirRootfs` does.
    fn key(path: &Path) -> io::Result<PathBuf> {
        let mut key = PathBuf::from("/");
        for c in path.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(n) => key.push(n),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a normalized absolute path", path.display()),
                    ));
                }
            }
        }
        Ok(key)
    }

    /// The bytes of a regular file, as a region of its layer store.
    fn data(&self, path: &Path) -> io::Result<Region> {
        let key = Self::key(path)?;
        let Some(node) = self.nodes.get(&key) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found in {}", path.display(), self.label),
            ));
        };
        match (&node.meta.kind, node.data) {
            (Kind::Regular, Some(d)) => match self.stores.get(d.store) {
                Some(s) => Ok(s.sub(d.offset, node.meta.size)),
                None => Err(io::Error::other("internal: unknown layer store")),
            },
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            )),
        }
    }

    /// Entries (the root excluded) and the size of regular files, each
    /// hardlinked file counted once.
    pub fn totals(&self) -> (u64, u64) {
        let mut seen = HashSet::new();
        let mut bytes = 0u64;
        for n in self.nodes.values() {
            if n.meta.kind == Kind::Regular && n.meta.link_id.is_none_or(|id| seen.insert(id)) {
                bytes += n.meta.size;
            }
        }
        (bytes, self.nodes.len() as u64 - 1)
    }
}

impl Rootfs for LayeredRootfs {
    fn meta(&self, path: &Path) -> io::Result<Option<Meta>> {
        Ok(self.nodes.get(&Self::key(path)?).map(|n| n.meta.clone()))
    }

    fn read_head(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        let r = self.data(path)?;
        r.read_exact_at(0, limit.min(usize::try_from(r.len()).unwrap_or(usize::MAX)))
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let r = self.data(path)?;
        let len = usize::try_from(r.len()).map_err(io::Error::other)?;
        r.read_exact_at(0, len)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        Ok(self
            .children
            .get(&Self::key(dir)?)
            .cloned()
            .unwrap_or_default())
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.data(path)?.reader()))
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}
