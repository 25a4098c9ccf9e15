//! Advisory locks (`flock`) on lock files. The kernel drops a lock when
//! its holder dies, so a killed `trace` never leaves a lock behind, and
//! no pid file has to be checked for staleness.
use std::{
    fs::{File, OpenOptions},
    io,
    path::Path,
};

use rustix::fs::{FlockOperation, flock};

/// An open lock file; the lock is released when this is dropped.
pub struct Lock(File);

impl Lock {
    /// Opens (creating it if `create`) the lock file at `path`, without
    /// locking it. `Ok(None)` when it does not exist and `create` is false.
    pub fn open(path: &Path, create: bool) -> io::Result<Option<Lock>> {
        // std opens with O_CLOEXEC: a container runtime started later
        // does not inherit (and so does not hold) the lock.
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)
        {
            Ok(f) => Ok(Some(Lock(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for a shared lock (also turns an exclusive one into it).
    pub fn shared(&self) -> io::Result<()> {
        Ok(flock(&self.0, FlockOperation::LockShared)?)
    }

    /// Waits for the exclusive lock.
    pub fn exclusive(&self) -> io::Result<()> {
        Ok(flock(&self.0, FlockOperation::LockExclusive)?)
    }

    /// Takes the exclusive lock if nobody holds any; `false` otherwise.
    pub fn try_exclusive(&self) -> io::Result<bool> {
        match flock(&self.0, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub fn unlock(&self) -> io::Result<()> {
        Ok(flock(&self.0, FlockOperation::Unlock)?)
    }

    /// Sets the file's mtime to now: an entry's "last used" time.
    pub fn touch(&self) -> io::Result<()> {
        let now = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        };
        let times = rustix::fs::Timestamps {
            last_access: now,
            last_modification: now,
        };
        Ok(rustix::fs::futimens(&self.0, &times)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_exclude_an_exclusive_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        assert!(Lock::open(&p, false).unwrap().is_none());
        let a = Lock::open(&p, true).unwrap().unwrap();
        let b = Lock::open(&p, false).unwrap().unwrap();
        let c = Lock::open(&p, false).unwrap().unwrap();
        a.shared().unwrap();
        b.shared().unwrap();
        assert!(!c.try_exclusive().unwrap());
        drop(a);
        assert!(!c.try_exclusive().unwrap());
        b.unlock().unwrap();
        assert!(c.try_exclusive().unwrap());
        assert!(
            !Lock::open(&p, false)
                .unwrap()
                .unwrap()
                .try_exclusive()
                .unwrap()
        );
    }
}
