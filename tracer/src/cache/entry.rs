//! One cache entry: looking it up and taking a lease on it, building it
//! in `tmp/` and publishing it with one rename.
use std::{
    collections::HashSet,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{Cache, CacheError, io_err, lock::Lock, rootfs::CachedRootfs};
use crate::{
    runtime::{leftovers, unpack},
    source::{Image, dir::DirRootfs, image::Unmerged},
};

/// `entry.json`: written into the entry last, so an entry that has it
/// was unpacked to the end.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntryInfo {
    /// `sha256:<hex>`, the entry's directory name.
    pub chain_id: String,
    /// Disk space the tree takes (allocated blocks, hardlinks once).
    pub disk_bytes: u64,
    /// The image's own totals (see [`Image`]), so a cached image reports
    /// what the layers would.
    pub total_bytes: u64,
    pub total_entries: u64,
}

const INFO: &str = "entry.json";
const TREE: &str = "rootfs";
const LOCK: &str = "lock";

impl EntryInfo {
    /// The info of the entry at `dir`, which must be named `chain`.
    pub fn read(dir: &Path, chain: &str) -> Result<EntryInfo, CacheError> {
        let corrupt = |why: String| CacheError::Corrupt {
            path: dir.to_path_buf(),
            why,
        };
        let bytes = fs::read(dir.join(INFO)).map_err(|e| corrupt(format!("{INFO}: {e}")))?;
        let info: EntryInfo =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("{INFO}: {e}")))?;
        if info.chain_id != format!("sha256:{chain}") {
            return Err(corrupt(format!("{INFO} names {}", info.chain_id)));
        }
        if !fs::symlink_metadata(dir.join(TREE)).is_ok_and(|m| m.is_dir()) {
            return Err(corrupt(format!("no {TREE} directory")));
        }
        Ok(info)
    }
}

/// A cached tree in use: while this is held, `prune` leaves the entry.
pub struct Lower {
    path: PathBuf,
    _lease: Lock,
}

impl Lower {
    /// The unpacked tree (read-only: an overlay's lower layer).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// An entry found in the cache, its lease taken.
pub(super) struct Hit {
    dir: PathBuf,
    info: EntryInfo,
    lease: Lock,
}

/// The image, its files read from the entry at `dir`, its config and
/// digest from the image itself.
fn cached_image(
    dir: &Path,
    info: &EntryInfo,
    unmerged: Unmerged,
    lease: Option<Lock>,
) -> Result<Image, CacheError> {
    let corrupt = |why: String| CacheError::Corrupt {
        path: dir.to_path_buf(),
        why,
    };
    let tree = DirRootfs::open(&dir.join(TREE)).map_err(|e| corrupt(e.to_string()))?;
    let label = unmerged.label().unwrap_or_default().to_string();
    let (config, digest) = unmerged
        .into_parts()
        .ok_or_else(|| corrupt("not a layered image".into()))?;
    Ok(Image {
        rootfs: Box::new(CachedRootfs::new(tree, label, lease)),
        config: Some(config),
        digest: Some(digest),
        total_bytes: info.total_bytes,
        total_entries: info.total_entries,
    })
}

impl Hit {
    #[cfg(test)]
    pub(super) fn info(&self) -> &EntryInfo {
        &self.info
    }

    pub(super) fn into_run(self, unmerged: Unmerged) -> Result<(Image, Option<Lower>), CacheError> {
        let image = cached_image(&self.dir, &self.info, unmerged, None)?;
        let lower = Lower {
            path: self.dir.join(TREE),
            _lease: self.lease,
        };
        Ok((image, Some(lower)))
    }

    /// The image, holding the lease for as long as its files are read.
    pub(super) fn into_read(self, unmerged: Unmerged) -> Result<Image, CacheError> {
        cached_image(&self.dir, &self.info, unmerged, Some(self.lease))
    }
}

/// A build directory in `tmp/`, removed on drop unless published.
struct Building {
    dir: PathBuf,
    lock: Option<Lock>,
}

impl Drop for Building {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Cache {
    /// The entry for `chain` with a shared lease on it, or `None`.
    pub(super) fn lookup(&self, chain: &str) -> Result<Option<Hit>, CacheError> {
        let cache_lock = self.cache_lock()?;
        cache_lock.shared().map_err(io_err("locking the cache"))?;
        let dir = self.entry_dir(chain);
        match fs::symlink_metadata(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(dir.display().to_string())(e)),
            Ok(_) => {}
        }
        let lease = Lock::open(&dir.join(LOCK), false)
            .map_err(io_err(format!("opening {}", dir.join(LOCK).display())))?
            .ok_or_else(|| CacheError::Corrupt {
                path: dir.clone(),
                why: format!("no {LOCK} file"),
            })?;
        lease.shared().map_err(io_err("locking the cache entry"))?;
        let info = EntryInfo::read(&dir, chain)?;
        lease
            .touch()
            .map_err(io_err("marking the cache entry used"))?;
        Ok(Some(Hit { dir, info, lease }))
    }

    /// Unpacks `image` into a new entry for `chain` and leases it. When
    /// another process published the same entry meanwhile, its entry is
    /// used and this copy discarded.
    pub(super) fn insert(&self, chain: &str, image: &Image) -> Result<Lower, CacheError> {
        let cache_lock = self.cache_lock()?;
        cache_lock.shared().map_err(io_err("locking the cache"))?;
        let dir = self.tmp_dir().join(leftovers::unique_name("rootfs-"));
        fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let mut building = Building { dir, lock: None };
        let lock = Lock::open(&building.dir.join(LOCK), true)
            .map_err(io_err("creating the build's lock"))?
            .ok_or_else(|| io_err("creating the build's lock")(io::ErrorKind::NotFound.into()))?;
        lock.exclusive().map_err(io_err("locking the build"))?;
        building.lock = Some(lock);
        cache_lock.unlock().map_err(io_err("unlocking the cache"))?;

        let tree = building.dir.join(TREE);
        fs::create_dir(&tree).map_err(io_err(format!("creating {}", tree.display())))?;
        let bar = crate::progress::bytes("unpacking the image", Some(image.total_bytes));
        unpack::unpack(
            &crate::progress::Counted::new(image.rootfs.as_ref(), bar),
            &tree,
        )?;
        let info = EntryInfo {
            chain_id: format!("sha256:{chain}"),
            disk_bytes: disk_usage(&tree)
                .map_err(io_err(format!("measuring {}", tree.display())))?,
            total_bytes: image.total_bytes,
            total_entries: image.total_entries,
        };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| io_err(INFO)(e.into()))?;
        fs::write(building.dir.join(INFO), json).map_err(io_err(format!("writing {INFO}")))?;
        // On disk before it is published: after a crash, an entry that has
        // its entry.json has its whole tree.
        let root = fs::File::open(&building.dir).map_err(io_err("opening the build"))?;
        rustix::fs::syncfs(&root).map_err(|e| io_err("syncing the build")(e.into()))?;

        let dest = self.entry_dir(chain);
        cache_lock.shared().map_err(io_err("locking the cache"))?;
        match fs::rename(&building.dir, &dest) {
            Ok(()) => {
                let lease = building
                    .lock
                    .take()
                    .ok_or_else(|| io_err("the build's lock")(io::ErrorKind::NotFound.into()))?;
                lease.shared().map_err(io_err("locking the cache entry"))?;
                lease
                    .touch()
                    .map_err(io_err("marking the cache entry used"))?;
                Ok(Lower {
                    path: dest.join(TREE),
                    _lease: lease,
                })
            }
            // Someone else's copy won: use it, drop ours.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                cache_lock.unlock().map_err(io_err("unlocking the cache"))?;
                drop(building);
                let hit = self.lookup(chain)?.ok_or_else(|| CacheError::Corrupt {
                    path: dest.clone(),
                    why: "removed while it was being published".into(),
                })?;
                Ok(Lower {
                    path: hit.dir.join(TREE),
                    _lease: hit.lease,
                })
            }
            Err(e) => Err(io_err(format!("publishing {}", dest.display()))(e)),
        }
    }
}

/// Allocated bytes below `root`, each inode once (as `du` counts).
pub(super) fn disk_usage(root: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p)?;
        if seen.insert((m.dev(), m.ino())) {
            total = total.saturating_add(m.blocks().saturating_mul(512));
        }
        if m.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(total)
}
