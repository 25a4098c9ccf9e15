//! A content-addressed cache of unpacked images: the merged root
//! filesystem of a layered image, written out once by the safe
//! [`unpack`](crate::runtime::unpack), then used read-only as the
//! overlay's lower layer by `run --image` (and `verify`, `minimize`) and
//! read by `build --from` instead of the image's layers.
//!
//! Layout below the cache directory:
//! - `lock`: the cache-wide lock. Held shared for a moment by whoever
//!   looks an entry up, starts a build in `tmp/` or publishes one;
//!   exclusive while stale builds and pruned entries are removed.
//! - `rootfs/sha256/<chain id>/`: one entry, keyed by the OCI ChainID of
//!   the image's layers: `rootfs/` (the tree), `entry.json` (written
//!   last: what the tree is) and `lock` (held shared while the entry is
//!   used, its mtime is the last use).
//! - `tmp/<unique>/`: an entry being built, its `lock` held exclusive by
//!   the builder; published into `rootfs/sha256/` with one rename.
//!
//! Only used as root (the tree keeps the image's owners and xattrs); as
//! another user, or with `--no-cache`, images are unpacked per run as
//! before.
pub mod chain;
mod entry;
mod lock;
pub mod prune;
mod rootfs;

use std::{
    io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

pub use entry::{EntryInfo, Lower};

use crate::{
    runtime::unpack::UnpackError,
    source::{Image, ImageRef, SourceError, image::Unmerged, transport::TransportError},
};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("image cache: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "image cache entry {} is unusable ({why}); remove it with `trace cache prune --all`, or pass --no-cache",
        path.display()
    )]
    Corrupt { path: PathBuf, why: String },
    #[error("image cache: no location (set TRACE_CACHE_DIR, XDG_CACHE_HOME or HOME)")]
    NoLocation,
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CacheError {
    let what = what.into();
    move |source| CacheError::Io { what, source }
}

static DISABLED: AtomicBool = AtomicBool::new(false);

/// `--no-cache`: images are read and unpacked as if there were no cache.
pub fn set_enabled(on: bool) {
    DISABLED.store(!on, Ordering::Relaxed);
}

/// The cache directory: `$TRACE_CACHE_DIR`, else `$XDG_CACHE_HOME/trace`,
/// else `$HOME/.cache/trace` (empty variables count as unset).
pub fn location() -> Result<PathBuf, CacheError> {
    let var = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("TRACE_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("trace")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("trace")))
        .ok_or(CacheError::NoLocation)
}

/// The cache at [`location`].
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn at(root: PathBuf) -> Cache {
        Cache { root }
    }

    pub fn open() -> Result<Cache, CacheError> {
        location().map(Cache::at)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entries_dir(&self) -> PathBuf {
        self.root.join("rootfs").join("sha256")
    }

    fn entry_dir(&self, chain: &str) -> PathBuf {
        self.entries_dir().join(chain)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The cache-wide lock file, created with the cache's directories.
    fn cache_lock(&self) -> Result<lock::Lock, CacheError> {
        for d in [self.entries_dir(), self.tmp_dir()] {
            std::fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let p = self.root.join("lock");
        lock::Lock::open(&p, true)
            .map_err(io_err(format!("opening {}", p.display())))?
            .ok_or_else(|| io_err(p.display().to_string())(io::ErrorKind::NotFound.into()))
    }
}

/// The cache and the entry's key, when this image is one the cache holds:
/// a layered image, caching on, running as root.
fn usable_for(image: &Unmerged) -> Result<Option<(Cache, String)>, CacheError> {
    if DISABLED.load(Ordering::Relaxed) || !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let Some(chain) = image.diff_ids().and_then(|d| chain::chain_id(&d)) else {
        return Ok(None);
    };
    // Nowhere to keep it (no HOME): as without a cache.
    Ok(location().ok().map(|root| (Cache::at(root), chain)))
}

/// Opens `image` for a container run: with the unpacked tree to use as
/// the overlay's lower layer when the image is cached (unpacking it into
/// the cache first if it is not there yet). `None` means: unpack it for
/// this run as before (a directory source, the cache off, not root).
pub fn open_for_run(image: &ImageRef) -> Result<(Image, Option<Lower>), CacheError> {
    let unmerged = image.open_unmerged()?;
    let Some((cache, chain)) = usable_for(&unmerged)? else {
        return Ok((unmerged.merge()?, None));
    };
    cache.sweep();
    if let Some(hit) = cache.lookup(&chain)? {
        return hit.into_run(unmerged);
    }
    let image = unmerged.merge()?;
    let lower = cache.insert(&chain, &image)?;
    Ok((image, Some(lower)))
}

/// Opens `image` for reading its files (`build`): from its cached tree
/// when the cache has it, else from the image's layers. Never adds an
/// entry (that would cost an unpack nobody asked for).
pub fn open_for_read(image: &ImageRef) -> Result<Image, CacheError> {
    let unmerged = image.open_unmerged()?;
    let Some((cache, chain)) = usable_for(&unmerged)? else {
        return Ok(unmerged.merge()?);
    };
    cache.sweep();
    match cache.lookup(&chain)? {
        Some(hit) => hit.into_read(unmerged),
        None => Ok(unmerged.merge()?),
    }
}
