//! A cached tree read as the image it was unpacked from: a directory
//! reader that describes itself as the image did, so messages and the
//! build report read the same with or without the cache.
use std::{ffi::OsString, io, path::Path};

use super::lock::Lock;
use crate::source::{
    dir::DirRootfs,
    rootfs::{Meta, Rootfs},
};

pub struct CachedRootfs {
    tree: DirRootfs,
    label: String,
    /// Keeps `prune` off the entry while it is read.
    _lease: Option<Lock>,
}

impl CachedRootfs {
    pub fn new(tree: DirRootfs, label: String, lease: Option<Lock>) -> CachedRootfs {
        CachedRootfs {
            tree,
            label,
            _lease: lease,
        }
    }
}

impl Rootfs for CachedRootfs {
    fn meta(&self, path: &Path) -> io::Result<Option<Meta>> {
        self.tree.meta(path)
    }
    fn read_head(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        self.tree.read_head(path, limit)
    }
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.tree.read_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        self.tree.list(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn io::Read + '_>> {
        self.tree.open(path)
    }
    fn describe(&self) -> String {
        self.label.clone()
    }
}
