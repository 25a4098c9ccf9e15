//! The image's merged filesystem, as the closure and the output writer see
//! it: metadata without following symlinks, contents on demand. A root
//! directory, an OCI layout and a docker archive all present this view.
use std::{
    ffi::OsString,
    io::{self, Read},
    path::Path,
};

/// Bytes of regular files, each hardlinked file counted once however
/// many of its names are added (as `du` counts them).
#[derive(Debug, Default)]
pub struct DataBytes {
    pub total: u64,
    links: std::collections::HashSet<u64>,
}

impl DataBytes {
    /// Adds the entry `m`; returns whether it is a regular file seen for
    /// the first time (so its size was counted).
    pub fn add(&mut self, m: &Meta) -> bool {
        let new = m.kind == Kind::Regular && m.link_id.is_none_or(|id| self.links.insert(id));
        if new {
            self.total = self.total.saturating_add(m.size);
        }
        new
    }
}

/// What kind of entry a path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Dir,
    /// The link's target exactly as stored (may be relative or absolute).
    Symlink(Vec<u8>),
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
    Socket,
}

/// Metadata of one entry: everything the minimal image must keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Size of a regular file's contents.
    pub size: u64,
    /// Extended attributes such as `security.capability`, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Identity shared by all names of one hardlinked file (regular files
    /// with more than one link); `None` otherwise.
    pub link_id: Option<u64>,
}

/// A read-only view of an image's root filesystem. Paths are absolute
/// within the image (`/usr/bin/python3`) and are never resolved through
/// symlinks by these methods: callers resolve (see `closure::resolve`).
pub trait Rootfs {
    /// Metadata of the entry at `path`, like `lstat`; `Ok(None)` when
    /// nothing is there.
    fn meta(&self, path: &Path) -> io::Result<Option<Meta>>;
    /// Up to `limit` bytes from the start of a regular file.
    fn read_head(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>>;
    /// The whole contents of a regular file.
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Names in a directory, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>>;
    /// A reader over a regular file's contents, for copying it out.
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + '_>>;
    /// A label for messages (`rootfs /srv/full`, `oci-archive full.tar`).
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_bytes_count_a_hardlinked_file_once() {
        let meta = |kind, size, link_id| Meta {
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size,
            xattrs: Vec::new(),
            link_id,
        };
        let mut b = DataBytes::default();
        assert!(b.add(&meta(Kind::Regular, 10, None)));
        assert!(b.add(&meta(Kind::Regular, 100, Some(7))));
        assert!(!b.add(&meta(Kind::Regular, 100, Some(7))), "second name");
        assert!(b.add(&meta(Kind::Regular, 1000, Some(8))));
        assert!(!b.add(&meta(Kind::Dir, 4096, None)));
        assert_eq!(b.total, 1110);
    }
}
