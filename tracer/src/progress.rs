//! Progress of long steps (reading an image out of an engine, unpacking
//! layers, building, loading the result) on the terminal; nothing at all
//! when stderr is not a terminal, so logs and tests see no extra output.
use std::io::{self, IsTerminal, Read, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ),
        None => ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}"),
    };
    if let Ok(style) = style {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.into());
    bar
}

/// A bar counting items (layers, files).
pub fn items(message: impl Into<String>, total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target());
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit} eta {{eta}}"
    )) {
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
