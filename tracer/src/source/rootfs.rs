//! The image's merged filesystem, as the closure and the output writer see
//! it: metadata without following symlinks, contents on demand. A root
//! directory, an OCI layout and a docker archive all present this view.
use std::{
    ffi::OsString,
    io::{self, Read},
    path::Path,
};

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
