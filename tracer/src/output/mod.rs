//! Image output: the minimal image, written as an OCI layout or a docker archive.
//!
//! The image has one layer holding exactly the given paths with their
//! metadata (mode incl. setuid, numeric owner, mtime, symlinks, hardlinks,
//! devices, fifos, xattrs), plus the source image's config. Output is
//! reproducible: the same inputs give the same bytes and digests (no
//! current time anywhere, sorted entries and JSON keys, fixed gzip level and block size).
//!
//! Writing is atomic: everything is built in a temporary sibling of `out`
//! and renamed into place at the end (never over an existing `out`); on
//! error the temporary is removed and `out` does not appear.
mod archive;
pub(crate) mod config;
mod docker;
mod layer;
mod oci;
mod pgzip;
pub mod structure_test;
pub mod target;

use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::source::rootfs::Rootfs;

/// How the image is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    /// OCI image layout directory (`oci:DIR[:TAG]`).
    Oci,
    /// The same layout as a tar file (`oci-archive:FILE`).
    OciArchive,
    /// `docker save` format (`docker-archive:FILE`, `docker load`).
    DockerArchive,
}

/// What to write.
pub struct Spec<'a> {
    pub rootfs: &'a dyn Rootfs,
    /// Every path to put in the layer (the caller has already added parent
    /// dirs, symlink targets, etc.), absolute in the image. Sorted set. The
    /// root `/` is not emitted as an entry; sockets are skipped (tar cannot
    /// hold them).
    pub paths: &'a BTreeSet<PathBuf>,
    /// The source image's config, carried over (Entrypoint, Cmd, Env, User,
    /// WorkingDir, ExposedPorts, Labels, architecture, os); None for a plain
    /// rootfs source (then architecture from the host, os linux, no
    /// entrypoint).
    pub config: Option<oci_spec::image::ImageConfiguration>,
    /// Digest of the source image's manifest, if any, for annotations/history.
    pub source_digest: Option<String>,
    /// Name for the image: docker-archive RepoTags (`:latest` added to a bare
    /// name) / OCI `org.opencontainers.image.ref.name` annotation in index.json.
    pub tag: Option<String>,
    pub format: Format,
}

/// What was written. Digests are `sha256:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// OCI: the image manifest's digest. Docker archive (which has no
    /// registry manifest): the digest of its `manifest.json`.
    pub manifest_digest: String,
    pub config_digest: String,
    /// The layer blob as stored: gzip for OCI, plain tar for docker (there
    /// it equals the diff_id).
    pub layer_digest: String,
    /// Size of the layer blob as stored.
    pub layer_bytes: u64,
    /// Tar entries in the layer (hardlinks included).
    pub entries: usize,
}

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("{0} is not a usable output path")]
    BadOut(PathBuf),
    #[error("{path} is not a normalized absolute path in the image")]
    BadPath { path: PathBuf },
    #[error(
        "{path} cannot be stored in an image layer: a name starting with .wh. marks a deletion there"
    )]
    WhiteoutName { path: PathBuf },
    #[error("{path} is not in {rootfs}")]
    Missing { path: PathBuf, rootfs: String },
    #[error("cannot read {path} from {rootfs}")]
    Read {
        path: PathBuf,
        rootfs: String,
        source: io::Error,
    },
    #[error("cannot add {path} to the layer")]
    Layer { path: PathBuf, source: io::Error },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot build the image {what}")]
    Spec {
        what: &'static str,
        source: oci_spec::OciSpecError,
    },
    #[error("cannot encode the {what}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// Writes the image described by `spec` to `out`, which must not exist.
pub fn write(out: &Path, spec: &Spec) -> Result<Written, OutputError> {
    match fs::symlink_metadata(out) {
        Ok(_) => return Err(OutputError::Exists(out.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(OutputError::Write {
                path: out.to_path_buf(),
                source,
            });
        }
    }
    let name = out
        .file_name()
        .ok_or_else(|| OutputError::BadOut(out.to_path_buf()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Same directory as `out`, so the final rename is atomic. Removed on
    // drop: on every error return (and panic) nothing is left behind.
    let scratch = tempfile::Builder::new()
        .prefix(&format!(".{}.tmp-", name.to_string_lossy()))
        .tempdir_in(parent)
        .map_err(|source| OutputError::Write {
            path: parent.to_path_buf(),
            source,
        })?;
    crate::runtime::leftovers::record_path(scratch.path());
    let s = scratch.path();
    let (product, written) = match spec.format {
        Format::Oci => {
            let dir = s.join("image");
            let (w, _) = oci::write_layout(&dir, s, spec)?;
            (dir, w)
        }
        Format::OciArchive => {
            let dir = oci::staging(s);
            let (w, blobs) = oci::write_layout(&dir, s, spec)?;
            let file = s.join("image.tar");
            oci::write_archive(&dir, &file, &blobs)?;
            (file, w)
        }
        Format::DockerArchive => {
            let file = s.join("image.tar");
            let w = docker::write_archive(&file, s, spec)?;
            (file, w)
        }
    };
    crate::model::write::stall_for_tests(out);
    rename_noreplace(&product, out).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            OutputError::Exists(out.to_path_buf())
        } else {
            OutputError::Write {
                path: out.to_path_buf(),
                source,
            }
        }
    })?;
    // Make the rename itself durable; the image is complete either way.
    if let Ok(d) = fs::File::open(parent) {
        let _ = d.sync_all();
    }
    // Best effort: the scratch leftovers (staging layout) are not the output.
    let _ = scratch.close();
    Ok(written)
}

/// `rename` that fails instead of replacing an existing `to` (which a
/// plain rename would do for a file or an empty directory created since
/// the check at the start).
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let e = match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(e) => io::Error::from(e),
    };
    match e.raw_os_error() {
        // Filesystem or kernel without RENAME_NOREPLACE: check, then rename.
        Some(libc::EINVAL | libc::ENOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            fs::rename(from, to)
        }
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests;
