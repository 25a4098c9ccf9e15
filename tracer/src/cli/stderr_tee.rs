//! Reads what the command writes to stderr while still passing it on:
//! `verify --full` looks in it for the names a failing program asked for
//! (`No module named 'x'`). Our fd 2 becomes a pipe for the run; a
//! thread copies it to the real stderr and keeps the last part.
use std::{
    fs::File,
    io::{self, Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

/// How much of the end of the output is kept.
const KEEP: usize = 256 * 1024;

pub struct Tee {
    saved: OwnedFd,
    kept: Arc<Mutex<Vec<u8>>>,
    thread: JoinHandle<()>,
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Tee {
    pub fn start() -> io::Result<Tee> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: both descriptors are new and owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on fd 2 with F_DUPFD_CLOEXEC returns a new fd.
        let saved = check(unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) })?;
        // SAFETY: `saved` is a new descriptor owned here.
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        let mut out = File::from(saved.try_clone()?);
        // SAFETY: dup2 onto fd 2; children inherit the pipe as stderr.
        check(unsafe { libc::dup2(write.as_raw_fd(), 2) })?;
        drop(write);
        let kept = Arc::new(Mutex::new(Vec::new()));
        let k = kept.clone();
        let thread = std::thread::spawn(move || {
            let mut input = File::from(read);
            let mut buf = [0u8; 8192];
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = out.write_all(&buf[..n]);
                if let Ok(mut v) = k.lock() {
                    v.extend_from_slice(&buf[..n]);
                    if v.len() > 2 * KEEP {
                        let cut = v.len() - KEEP;
                        v.drain(..cut);
                    }
                }
            }
        });
        Ok(Tee {
            saved,
            kept,
            thread,
        })
    }

    /// Puts stderr back and returns what went through it.
    pub fn finish(self) -> String {
        // SAFETY: restores the saved descriptor onto fd 2, closing the
        // pipe's last write end we hold.
        unsafe { libc::dup2(self.saved.as_raw_fd(), 2) };
        // A leftover process may still hold the pipe open: wait a little.
        for _ in 0..50 {
            if self.thread.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let v = self.kept.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8_lossy(&v).into_owned()
    }
}
