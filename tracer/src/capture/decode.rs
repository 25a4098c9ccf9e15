//! Decoding ring-buffer records into [`Event`]s.
use thiserror::Error;
use tracer_common::{EventHeader, HEADER_SIZE, Syscall, flags};

use crate::model::path::from_leaf_first;

/// One access as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub syscall: Syscall,
    pub pid: u32,
    pub tid: u32,
    pub comm: Vec<u8>,
    pub dirfd: i32,
    /// >= 0 success, -errno failure.
    pub ret: i64,
    pub arg_flags: u64,
    /// The path argument as passed (None when unreadable or for fchdir).
    pub raw: Option<Vec<u8>>,
    /// Absolute directory a relative `raw` was resolved against.
    pub base: Option<Vec<u8>>,
    /// For execs: the file the new image runs.
    pub exe: Option<Vec<u8>>,
    /// For execs: the new program's argv.
    pub argv: Option<Vec<Vec<u8>>>,
    pub flags: u16,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("record declares {declared} bytes of data but carries {actual}")]
    Length { declared: usize, actual: usize },
    #[error("unknown syscall id {0}")]
    UnknownSyscall(u8),
}

impl Event {
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() < HEADER_SIZE {
            return Err(DecodeError::Short(bytes.len()));
        }
        // SAFETY: `EventHeader` is plain `repr(C)` integers, any bit pattern
        // is valid, and the length was checked above.
        let h: EventHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let data = &bytes[HEADER_SIZE..];
        let lens = [h.raw_len, h.base_len, h.exe_len, h.argv_len].map(usize::from);
        let declared: usize = lens.iter().sum();
        if declared > data.len() {
            return Err(DecodeError::Length {
                declared,
                actual: data.len(),
            });
        }
        let syscall = Syscall::from_u8(h.syscall).ok_or(DecodeError::UnknownSyscall(h.syscall))?;
        let (raw, rest) = data.split_at(lens[0]);
        let (base, rest) = rest.split_at(lens[1]);
        let (exe, rest) = rest.split_at(lens[2]);
        let argv = &rest[..lens[3]];
        let has = |bit| h.flags & bit != 0;
        let raw_present = syscall != Syscall::Fchdir && !has(flags::RAW_UNREADABLE);
        let comm_len = h.comm.iter().position(|&b| b == 0).unwrap_or(h.comm.len());
        Ok(Event {
            syscall,
            pid: h.pid,
            tid: h.tid,
            comm: h.comm[..comm_len].to_vec(),
            dirfd: h.dirfd,
            ret: h.ret,
            arg_flags: h.arg_flags,
            raw: raw_present.then(|| raw.to_vec()),
            base: has(flags::HAS_BASE).then(|| from_leaf_first(base)),
            exe: has(flags::HAS_EXE).then(|| from_leaf_first(exe)),
            argv: (h.argv_len > 0 || syscall_is_exec(syscall) && h.ret == 0)
                .then(|| {
                    argv.split(|&b| b == 0)
                        .map(<[u8]>::to_vec)
                        .collect::<Vec<_>>()
                })
                .map(|mut v| {
                    // A trailing NUL leaves one empty element behind.
                    if v.last().is_some_and(Vec::is_empty) {
                        v.pop();
                    }
                    v
                }),
            flags: h.flags,
        })
    }

    pub fn has(&self, bit: u16) -> bool {
        self.flags & bit != 0
    }

    /// The path could not be recorded whole.
    pub fn truncated(&self) -> bool {
        self.has(flags::RAW_TRUNCATED) || self.has(flags::BASE_TRUNCATED)
    }
}

pub fn syscall_is_exec(s: Syscall) -> bool {
    matches!(s, Syscall::Execve | Syscall::Execveat)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a record the way the kernel side does.
    pub fn record(h: EventHeader, parts: [&[u8]; 4]) -> Vec<u8> {
        let mut h = h;
        h.raw_len = parts[0].len() as u16;
        h.base_len = parts[1].len() as u16;
        h.exe_len = parts[2].len() as u16;
        h.argv_len = parts[3].len() as u16;
        let mut out = vec![0u8; HEADER_SIZE];
        // SAFETY: the buffer holds exactly one header.
        unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast(), h) };
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    }

    pub fn header(syscall: Syscall, ret: i64, flags: u16) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        EventHeader {
            syscall: syscall as u8,
            _pad: 0,
            flags,
            pid: 10,
            tid: 11,
            dirfd: tracer_common::AT_FDCWD,
            ret,
            arg_flags: 0,
            raw_len: 0,
            base_len: 0,
            exe_len: 0,
            argv_len: 0,
            comm,
        }
    }

    #[test]
    fn decodes_relative_open() {
        let bytes = record(
            header(Syscall::Openat, 3, flags::HAS_BASE),
            [b"hostname", b"etc\0", b"", b""],
        );
        let e = Event::decode(&bytes).unwrap();
        assert_eq!(e.syscall, Syscall::Openat);
        assert_eq!(e.raw.as_deref(), Some(&b"hostname"[..]));
        assert_eq!(e.base.as_deref(), Some(&b"/etc"[..]));
        assert_eq!(e.comm, b"test");
        assert_eq!(e.argv, None);
    }

    #[test]
    fn decodes_exec_with_argv() {
        let bytes = record(
            header(Syscall::Execve, 0, flags::HAS_EXE),
            [
                b"/bin/cat",
                b"",
                b"cat\0bin\0usr\0",
                b"cat\0/etc/hostname\0",
            ],
        );
        let e = Event::decode(&bytes).unwrap();
        assert_eq!(e.exe.as_deref(), Some(&b"/usr/bin/cat"[..]));
        assert_eq!(
            e.argv,
            Some(vec![b"cat".to_vec(), b"/etc/hostname".to_vec()])
        );
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(Event::decode(&[0; 4]), Err(DecodeError::Short(4)));
        let mut bytes = record(header(Syscall::Open, 0, 0), [b"/x", b"", b"", b""]);
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(
            Event::decode(&bytes),
            Err(DecodeError::Length { .. })
        ));
        let mut h = header(Syscall::Open, 0, 0);
        h.syscall = 200;
        assert_eq!(
            Event::decode(&record(h, [b"", b"", b"", b""])),
            Err(DecodeError::UnknownSyscall(200))
        );
    }
}
