//! `#!` lines: the interpreter a script needs at run time.
use std::path::PathBuf;

/// How much of a file to read to find its `#!` line (the kernel reads 256
/// bytes on current kernels).
pub const HEAD: usize = 256;

/// The interpreter named by a `#!` line, if `head` starts with one and it
/// is an absolute path.
pub fn interpreter(head: &[u8]) -> Option<PathBuf> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let token: Vec<u8> = line[start..]
        .iter()
        .take_while(|&&b| b != b' ' && b != b'\t')
        .copied()
        .collect();
    if token.first() != Some(&b'/') {
        return None;
    }
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_interpreter_lines() {
        assert_eq!(
            interpreter(b"#!/bin/sh\necho"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            interpreter(b"#! /usr/bin/env python3 -u\n"),
            Some(PathBuf::from("/usr/bin/env"))
        );
        assert_eq!(
            interpreter(b"#!/bin/bash\r\n"),
            Some(PathBuf::from("/bin/bash"))
        );
        assert_eq!(interpreter(b"#!relative\n"), None);
        assert_eq!(interpreter(b"\x7fELF"), None);
        assert_eq!(interpreter(b"#!"), None);
    }
}
