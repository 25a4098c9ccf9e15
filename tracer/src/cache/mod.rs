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
pub(crate) mod lock;
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
    #[error("image cache: {what}")]
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

#[cfg(test)]
mod tests {
    use std::{fs, time::Duration};

    use super::{lock::Lock, prune::Policy, *};

    fn small_image(root: &Path) -> Image {
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/hostname"), "box\n").unwrap();
        crate::source::open(root).unwrap()
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn an_entry_is_published_whole_and_a_second_copy_is_discarded() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("c"));
        let image = small_image(&d.path().join("src"));
        assert!(cache.lookup(A).unwrap().is_none());
        let first = cache.insert(A, &image).unwrap();
        assert_eq!(
            fs::read(first.path().join("etc/hostname")).unwrap(),
            b"box\n"
        );
        // Another process unpacked the same layers meanwhile: its rename
        // fails, it uses the published entry and drops its copy.
        let second = cache.insert(A, &image).unwrap();
        assert_eq!(second.path(), first.path());
        assert_eq!(fs::read_dir(cache.tmp_dir()).unwrap().count(), 0);
        let hit = cache.lookup(A).unwrap().unwrap();
        assert_eq!(hit_info(&hit).chain_id, format!("sha256:{A}"));
        assert_eq!(hit_info(&hit).total_entries, 2);
    }

    fn hit_info(hit: &entry::Hit) -> EntryInfo {
        hit.info().clone()
    }

    #[test]
    fn an_entry_without_its_info_is_an_error_and_pruned() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("c"));
        let image = small_image(&d.path().join("src"));
        drop(cache.insert(A, &image).unwrap());
        fs::remove_file(cache.entry_dir(A).join("entry.json")).unwrap();
        let err = cache.lookup(A).err().unwrap().to_string();
        assert!(err.contains("is unusable (entry.json: "), "{err}");
        // Unusable entries go whatever the policy.
        let pruned = cache.prune(Policy::OlderThan(Duration::MAX)).unwrap();
        assert_eq!(pruned.removed.len(), 1);
        assert!(cache.lookup(A).unwrap().is_none());
    }

    #[test]
    fn stale_builds_are_swept_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("c"));
        drop(cache.cache_lock().unwrap());
        let (live, dead) = (cache.tmp_dir().join("live"), cache.tmp_dir().join("dead"));
        for b in [&live, &dead] {
            fs::create_dir_all(b.join("rootfs/usr")).unwrap();
        }
        let held = Lock::open(&live.join("lock"), true).unwrap().unwrap();
        held.exclusive().unwrap();
        drop(Lock::open(&dead.join("lock"), true).unwrap());
        cache.sweep();
        assert!(live.exists() && !dead.exists());
        drop(held);
        let pruned = cache.prune(Policy::All).unwrap();
        assert_eq!(pruned.stale_builds, 1);
        assert!(!live.exists());
    }

    #[test]
    fn prune_by_size_keeps_the_most_recently_used() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().join("c"));
        let image = small_image(&d.path().join("src"));
        drop(cache.insert(A, &image).unwrap());
        drop(cache.insert(B, &image).unwrap());
        // A was used long ago.
        let old = fs::File::options()
            .write(true)
            .open(cache.entry_dir(A).join("lock"))
            .unwrap();
        old.set_modified(std::time::UNIX_EPOCH).unwrap();
        let one = cache.list().unwrap()[0].disk_bytes;
        let pruned = cache.prune(Policy::KeepSize(one)).unwrap();
        assert_eq!(pruned.removed.len(), 1);
        assert_eq!(pruned.removed[0].0, format!("sha256:{A}"));
        assert!(cache.lookup(B).unwrap().is_some());
        let pruned = cache
            .prune(Policy::OlderThan(Duration::from_secs(3600)))
            .unwrap();
        assert!(pruned.removed.is_empty());
        // In use: kept.
        let lease = cache.lookup(B).unwrap().unwrap();
        let pruned = cache.prune(Policy::All).unwrap();
        assert_eq!(pruned.in_use, [format!("sha256:{B}")]);
        drop(lease);
        assert_eq!(cache.prune(Policy::All).unwrap().removed.len(), 1);
        assert!(cache.list().unwrap().is_empty());
    }
}
