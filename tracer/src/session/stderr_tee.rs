//! Reads what the command writes to stderr while still passing it on:
//! `verify --full` looks in it for the names a failing program asked for
//! (`No module named 'x'`). Our fd 2 becomes a pipe for the run; a
//! thread copies it to the real stderr and keeps the last part.
use std::{
    fs::File,
    io::{self, Read, Write},
    os::fd::OwnedFd,
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

impl Tee {
    pub fn start() -> io::Result<Tee> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let saved = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stderr(), 3)?;
        let mut out = File::from(saved.try_clone()?);
        // Children inherit the pipe as stderr (dup2 clears CLOEXEC on 2).
        rustix::stdio::dup2_stderr(&write)?;
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
        // Closes the pipe's last write end we hold.
        let _ = rustix::stdio::dup2_stderr(&self.saved);
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
