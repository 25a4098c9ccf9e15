//! The record reader's scheduling priority while the command runs.
//!
//! On a machine whose cores are all busy with the command, the thread
//! that empties the ring buffer gets no more CPU than any one of the
//! command's threads, and a command that makes file syscalls as fast as
//! it can fills the buffer faster than it is emptied: records are lost.
//! Raised for the reading only (set after the command is spawned, so the
//! command does not inherit it; put back before anything else is
//! spawned), the reader runs as soon as it has work; the command's own
//! CPU time is unchanged.
use rustix::{
    process::{getpriority_process, setpriority_process},
    thread::gettid,
};

/// The nice value the reader runs at (needs CAP_SYS_NICE, which root has).
const READER_NICE: i32 = -10;

/// The calling thread's nice value, raised until dropped.
pub struct Raised {
    before: i32,
}

/// Raises the calling thread's priority; `None` where that is refused
/// (then nothing changed).
pub fn raise() -> Option<Raised> {
    let tid = gettid();
    let before = getpriority_process(Some(tid)).ok()?;
    if before <= READER_NICE {
        return None;
    }
    setpriority_process(Some(tid), READER_NICE).ok()?;
    Some(Raised { before })
}

impl Drop for Raised {
    fn drop(&mut self) {
        let _ = setpriority_process(Some(gettid()), self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_then_restored() {
        // On a thread of its own: the test harness's threads keep theirs.
        std::thread::spawn(|| {
            let before = getpriority_process(Some(gettid())).unwrap();
            // Where raising is refused (not root), nothing changed either.
            if let Some(r) = raise() {
                assert_eq!(getpriority_process(Some(gettid())).unwrap(), READER_NICE);
                drop(r);
            }
            assert_eq!(getpriority_process(Some(gettid())).unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
