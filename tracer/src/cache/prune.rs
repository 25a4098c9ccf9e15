//! Listing the cache and removing entries from it. An entry is removed
//! by renaming it into `tmp/` first (so a kill mid-removal never leaves
//! a half-deleted tree where readers look) and only when nobody holds its
//! lease: an entry in use is kept and reported, never waited for.
use std::{
    fs,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use super::{
    Cache, CacheError,
    entry::{EntryInfo, disk_usage},
    io_err,
    lock::Lock,
};
use crate::runtime::leftovers;

/// One entry as `trace cache` shows it.
#[derive(Debug)]
pub struct Listed {
    /// `sha256:<hex>` (the directory name).
    pub chain_id: String,
    /// `None` when the entry is unusable (the reason).
    pub problem: Option<String>,
    pub disk_bytes: u64,
    pub last_used: Option<SystemTime>,
    path: PathBuf,
}

/// Which entries `prune` removes (besides stale builds, always).
#[derive(Clone, Copy, Debug)]
pub enum Policy {
    All,
    /// Least recently used first, until the rest fit in this many bytes.
    KeepSize(u64),
    /// Those not used for this long.
    OlderThan(Duration),
}

#[derive(Debug, Default)]
pub struct Pruned {
    /// Chain ids removed and their sizes.
    pub removed: Vec<(String, u64)>,
    /// Chain ids that matched but are in use by a running trace.
    pub in_use: Vec<String>,
    /// Stale builds (of killed runs) removed, and their size.
    pub stale_builds: usize,
    pub stale_bytes: u64,
}

impl Pruned {
    pub fn freed(&self) -> u64 {
        self.removed.iter().map(|r| r.1).sum::<u64>() + self.stale_bytes
    }
}

impl Cache {
    /// The entries, most recently used first.
    pub fn list(&self) -> Result<Vec<Listed>, CacheError> {
        let dir = self.entries_dir();
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(dir.display().to_string())(e)),
        };
        let mut out = Vec::new();
        for e in read {
            let e = e.map_err(io_err(dir.display().to_string()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let last_used = fs::metadata(path.join("lock"))
                .and_then(|m| m.modified())
                .ok();
            let (disk_bytes, problem) = match EntryInfo::read(&path, &name) {
                Ok(info) => (info.disk_bytes, None),
                Err(err) => (
                    disk_usage(&path).unwrap_or(0),
                    Some(match err {
                        CacheError::Corrupt { why, .. } => why,
                        other => other.to_string(),
                    }),
                ),
            };
            out.push(Listed {
                chain_id: format!("sha256:{name}"),
                problem,
                disk_bytes,
                last_used,
                path,
            });
        }
        out.sort_by(|a, b| {
            b.last_used
                .cmp(&a.last_used)
                .then(a.chain_id.cmp(&b.chain_id))
        });
        Ok(out)
    }

    /// Removes builds left by killed runs, when nobody holds the cache
    /// exclusively or the build: best effort, before any use.
    pub(super) fn sweep(&self) {
        if let Ok(lock) = self.cache_lock()
            && lock.try_exclusive().unwrap_or(false)
        {
            let _ = self.sweep_locked();
        }
    }

    /// With the cache lock held exclusively: every build in `tmp/` whose
    /// lock nobody holds is stale (builds take theirs under the cache
    /// lock, so none is between creating its directory and locking).
    fn sweep_locked(&self) -> Result<(usize, u64), CacheError> {
        let tmp = self.tmp_dir();
        let mut removed = (0, 0);
        for e in fs::read_dir(&tmp).map_err(io_err(tmp.display().to_string()))? {
            let path = e.map_err(io_err(tmp.display().to_string()))?.path();
            let held = match Lock::open(&path.join("lock"), false) {
                Ok(Some(l)) => !l.try_exclusive().unwrap_or(false),
                Ok(None) => false,
                Err(_) => true,
            };
            if !held {
                let size = disk_usage(&path).unwrap_or(0);
                fs::remove_dir_all(&path)
                    .map_err(io_err(format!("removing {}", path.display())))?;
                removed = (removed.0 + 1, removed.1 + size);
            }
        }
        Ok(removed)
    }

    /// Removes the entries `policy` selects (unusable ones always) that no
    /// running trace uses, and stale builds.
    pub fn prune(&self, policy: Policy) -> Result<Pruned, CacheError> {
        let cache_lock = self.cache_lock()?;
        cache_lock
            .exclusive()
            .map_err(io_err("locking the cache"))?;
        let mut pruned = Pruned::default();
        (pruned.stale_builds, pruned.stale_bytes) = self.sweep_locked()?;
        let now = SystemTime::now();
        let mut kept_bytes = 0u64;
        for entry in self.list()? {
            let selected = entry.problem.is_some()
                || match policy {
                    Policy::All => true,
                    Policy::OlderThan(age) => entry
                        .last_used
                        .is_none_or(|t| now.duration_since(t).is_ok_and(|d| d >= age)),
                    // Most recently used first: keep while they fit.
                    Policy::KeepSize(max) => {
                        kept_bytes = kept_bytes.saturating_add(entry.disk_bytes);
                        kept_bytes > max
                    }
                };
            if !selected {
                continue;
            }
            let lock = Lock::open(&entry.path.join("lock"), false)
                .map_err(io_err(format!("opening {}", entry.path.display())))?;
            if let Some(l) = &lock
                && !l.try_exclusive().map_err(io_err("locking a cache entry"))?
            {
                pruned.in_use.push(entry.chain_id);
                continue;
            }
            // Unpublished first; then removed at leisure (a kill here
            // leaves a stale build, which the next sweep removes).
            let doomed = self.tmp_dir().join(leftovers::unique_name("pruned-"));
            fs::rename(&entry.path, &doomed)
                .map_err(io_err(format!("removing {}", entry.path.display())))?;
            fs::remove_dir_all(&doomed)
                .map_err(io_err(format!("removing {}", doomed.display())))?;
            drop(lock);
            pruned.removed.push((entry.chain_id, entry.disk_bytes));
        }
        Ok(pruned)
    }
}
