//! The merged filesystem of a layered image, held as an in-memory tree of
//! metadata whose file contents stay in place: in the layer blob itself
//! when it is an uncompressed tar, or in an anonymous temporary file that
//! holds the decompressed tar. Nothing is ever extracted onto disk, so a
//! hostile layer cannot write outside those temporary files.
//!
//! - [`entries`]: reading a layer tar's entry headers, and what each
//!   entry does (add, whiteout, opaque directory).
//! - [`merge`]: applying layers one over another ([`Merger`]).
//! - [`view`]: the finished tree as a [`Rootfs`](super::rootfs::Rootfs)
//!   ([`LayeredRootfs`]).
mod entries;
mod merge;
mod view;

use std::path::{Path, PathBuf};

pub use self::{merge::Merger, view::LayeredRootfs};
use super::{
    archive::Region,
    rootfs::{Kind, Meta},
};

/// One layer to apply: where its blob is and how to check it.
pub struct LayerBlob {
    /// For messages: `layer 2/3 sha256:…`.
    pub label: String,
    /// The image file or directory the blob is read from (for I/O errors).
    pub origin: PathBuf,
    pub region: Region,
    /// sha256 (hex) of the blob as stored (OCI descriptor digest).
    pub blob_sha: Option<String>,
    /// sha256 (hex) of the uncompressed tar (config `rootfs.diff_ids`).
    pub diff_sha: Option<String>,
}

/// Where a regular file's bytes are: a store (layer tar) and an offset.
#[derive(Clone, Copy, Debug)]
struct Data {
    store: usize,
    offset: u64,
}

#[derive(Clone, Debug)]
struct Node {
    meta: Meta,
    data: Option<Data>,
}

fn dir_meta(mode: u32) -> Meta {
    Meta {
        kind: Kind::Dir,
        mode,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
        xattrs: Vec::new(),
        link_id: None,
    }
}

/// Ancestors of `path`, root first, excluding `path` itself.
fn ancestors_top_down(path: &Path) -> Vec<&Path> {
    let mut v: Vec<&Path> = path.ancestors().skip(1).collect();
    v.reverse();
    v
}
