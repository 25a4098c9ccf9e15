//! Progress of long steps (reading an image out of an engine, unpacking
//! layers, building, loading the result) on the terminal; nothing at all
//! when stderr is not a terminal, so logs and tests see no extra output.
use std::io::{self, IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::source::rootfs::{Meta, Rootfs};

fn target() -> ProgressDrawTarget {
    if io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar counting bytes (with rate and time left when the total is known).
pub fn bytes(message: impl Into<String>, total: Option<u64>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, target());
    let style = match total {
        Some(_) => ProgressStyle::with_template(
            "{msg} [{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ),
        None => ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}"),
    };
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.into());
    bar
}

/// Copies `from` into `to`, advancing `bar` by the bytes copied.
pub fn copy(from: &mut dyn Read, to: &mut dyn Write, bar: &ProgressBar) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        done += n as u64;
        bar.inc(n as u64);
    }
}

/// A root filesystem whose file contents, as they are read out (by an
/// unpack or a layer writer), advance a bytes bar.
pub struct Counted<'a> {
    inner: &'a dyn Rootfs,
    bar: ProgressBar,
}

impl<'a> Counted<'a> {
    pub fn new(inner: &'a dyn Rootfs, bar: ProgressBar) -> Counted<'a> {
        Counted { inner, bar }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

struct CountingReader<'b> {
    inner: Box<dyn Read + 'b>,
    bar: ProgressBar,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        // Done: off the screen before whatever comes next draws.
        if self.bar.length().is_some_and(|l| self.bar.position() >= l) {
            self.bar.finish_and_clear();
        }
        Ok(n)
    }
}

impl Rootfs for Counted<'_> {
    fn meta(&self, path: &std::path::Path) -> io::Result<Option<Meta>> {
        self.inner.meta(path)
    }
    fn read_head(&self, path: &std::path::Path, limit: usize) -> io::Result<Vec<u8>> {
        self.inner.read_head(path, limit)
    }
    fn read_all(&self, path: &std::path::Path) -> io::Result<Vec<u8>> {
        let v = self.inner.read_all(path)?;
        self.bar.inc(v.len() as u64);
        Ok(v)
    }
    fn list(&self, dir: &std::path::Path) -> io::Result<Vec<std::ffi::OsString>> {
        self.inner.list(dir)
    }
    fn open(&self, path: &std::path::Path) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(CountingReader {
            inner: self.inner.open(path)?,
            bar: self.bar.clone(),
        }))
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_counts_every_byte() {
        let data = vec![7u8; 600 * 1024];
        let bar = bytes("test", Some(data.len() as u64));
        let mut out = Vec::new();
        let n = copy(&mut data.as_slice(), &mut out, &bar).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(bar.position(), n);
        assert_eq!(out, data);
    }
}
