//! `#!` lines: the interpreter a script needs at run time.
use std::path::PathBuf;

/// How much of a file to read to find its `#!` line (the kernel reads 256
/// bytes on current kernels).
pub const HEAD: usize = 256;

/// The interpreter named by a `#!` line, if `head` starts with one, as
/// the kernel reads it: the name ends at a space, a tab or a NUL. It may
/// be relative (to the working directory of whoever runs the script).
pub fn interpreter(head: &[u8]) -> Option<PathBuf> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let token: Vec<u8> = line[start..]
        .iter()
        .take_while(|&&b| b != b' ' && b != b'\t' && b != 0)
        .copied()
        .collect();
    if token.is_empty() {
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
        assert_eq!(
            interpreter(b"#!./relative\n"),
            Some(PathBuf::from("./relative"))
        );
        // The kernel ends the name at a NUL too.
        assert_eq!(
            interpreter(b"#!/w/mid\0 junk\n"),
            Some(PathBuf::from("/w/mid"))
        );
        assert_eq!(interpreter(b"#!\0/bin/sh\n"), None);
        assert_eq!(interpreter(b"\x7fELF"), None);
        assert_eq!(interpreter(b"#!"), None);
    }
}
