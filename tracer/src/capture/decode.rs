//! Decoding ring-buffer records into [`Event`]s.
use thiserror::Error;
use tracer_common::{EventHeader, HEADER_SIZE, Section, flags, kind, section, walk_end};

/// A record's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Syscall,
    Exec,
    UringSubmit,
    UringComplete,
}

/// A directory walk as the kernel emitted it, turned into a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// Absolute (relative to the scope's root, or to the top the walk
    /// reached when `end` is `Outside`).
    pub path: Vec<u8>,
    pub end: WalkEnd,
    /// Not on the scope's root filesystem: where the mount that holds the
    /// file is attached, and its superblock's magic.
    pub mount: Option<(Vec<u8>, u32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    Root,
    Outside,
    Truncated,
    /// The directory saved at syscall entry was freed before its exit.
    Stale,
    /// A file with no path: a pipe, socket, memfd, or a dentry
    /// disconnected from its parents (`walk_end::UNNAMED`).
    Unnamed,
}

/// One record as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub abi: u8,
    /// `syscalls::TABLE` id (index + 1), or the io_uring opcode.
    pub syscall: u16,
    pub flags: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: Vec<u8>,
    pub dirfd1: i32,
    pub dirfd2: i32,
    /// >= 0 success, -errno failure.
    pub ret: i64,
    pub arg_flags: u64,
    pub arg_flags2: u64,
    pub cookie: u64,
    /// The path arguments as passed (None when absent or unreadable).
    pub raw1: Option<Vec<u8>>,
    pub raw2: Option<Vec<u8>>,
    pub base1: Option<Walk>,
    pub obs: Option<Walk>,
    pub base2: Option<Walk>,
    pub exe: Option<Walk>,
    pub argv: Option<Vec<Vec<u8>>>,
    pub interp: Option<Vec<u8>>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("record declares {declared} bytes of data but carries {actual}")]
    Length { declared: usize, actual: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("walk section claims a mount crossing at byte {cross} of {len}")]
    Cross { cross: usize, len: usize },
}

/// Builds an absolute path from names listed leaf first, as the kernel's
/// directory walk emits them (each ends with a NUL).
pub fn from_leaf_first(components: &[u8]) -> Vec<u8> {
    let names: Vec<&[u8]> = components
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .collect();
    let mut out = Vec::with_capacity(components.len() + 1);
    for name in names.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(name);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

fn walk(bytes: &[u8], s: &Section) -> Result<Walk, DecodeError> {
    let end = match s.end {
        walk_end::ROOT => WalkEnd::Root,
        walk_end::OUTSIDE => WalkEnd::Outside,
        walk_end::STALE => WalkEnd::Stale,
        walk_end::UNNAMED => WalkEnd::Unnamed,
        _ => WalkEnd::Truncated,
    };
    let mount = if s.cross == Section::NO_CROSS {
        None
    } else {
        let cross = usize::from(s.cross);
        let above = bytes.get(cross..).ok_or(DecodeError::Cross {
            cross,
            len: bytes.len(),
        })?;
        Some((from_leaf_first(above), s.magic))
    };
    Ok(Walk {
        path: from_leaf_first(bytes),
        end,
        mount,
    })
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
        let declared: usize = h.sections.iter().map(|s| usize::from(s.len)).sum();
        if declared > data.len() {
            return Err(DecodeError::Length {
                declared,
                actual: data.len(),
            });
        }
        let kind = match h.kind {
            kind::SYSCALL => Kind::Syscall,
            kind::EXEC => Kind::Exec,
            kind::URING_SUBMIT => Kind::UringSubmit,
            kind::URING_COMPLETE => Kind::UringComplete,
            other => return Err(DecodeError::UnknownKind(other)),
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(section::COUNT);
        let mut rest = data;
        for s in &h.sections {
            let (part, tail) = rest.split_at(usize::from(s.len));
            parts.push(part);
            rest = tail;
        }
        let has = |bit| h.flags & bit != 0;
        let walked = |i: usize, present: bool| -> Result<Option<Walk>, DecodeError> {
            let s = &h.sections[i];
            if !present {
                return Ok(None);
            }
            walk(parts[i], s).map(Some)
        };
        let raw = |i: usize, unreadable: u32| -> Option<Vec<u8>> {
            (!has(unreadable) && !parts[i].is_empty()).then(|| parts[i].to_vec())
        };
        // A stale base has no names, only its end.
        let base1 = if has(flags::HAS_BASE1) && !has(flags::BASE1_IS_OBS_PARENT) {
            walked(section::BASE1, true)?
        } else {
            None
        };
        let base2 = if has(flags::HAS_BASE2) && !has(flags::BASE2_IS_OBS_PARENT) {
            walked(section::BASE2, true)?
        } else {
            None
        };
        let argv = (has(flags::HAS_EXE) || !parts[section::ARGV].is_empty()).then(|| {
            let mut v: Vec<Vec<u8>> = parts[section::ARGV]
                .split(|&b| b == 0)
                .map(<[u8]>::to_vec)
                .collect();
            // A trailing NUL leaves one empty element behind.
            if v.last().is_some_and(Vec::is_empty) {
                v.pop();
            }
            v
        });
        let comm_len = h.comm.iter().position(|&b| b == 0).unwrap_or(h.comm.len());
        Ok(Event {
            kind,
            abi: h.abi,
            syscall: h.syscall,
            flags: h.flags,
            pid: h.pid,
            tid: h.tid,
            comm: h.comm[..comm_len].to_vec(),
            dirfd1: h.dirfd1,
            dirfd2: h.dirfd2,
            ret: h.ret,
            arg_flags: h.arg_flags,
            arg_flags2: h.arg_flags2,
            cookie: h.cookie,
            raw1: raw(section::RAW1, flags::RAW1_UNREADABLE),
            raw2: raw(section::RAW2, flags::RAW2_UNREADABLE),
            base1,
            obs: walked(section::OBS, has(flags::HAS_OBS))?,
            base2,
            exe: walked(section::EXE, has(flags::HAS_EXE))?,
            argv: if kind == Kind::Exec { argv } else { None },
            interp: has(flags::HAS_INTERP).then(|| parts[section::INTERP].to_vec()),
        })
    }

    pub fn has(&self, bit: u32) -> bool {
        self.flags & bit != 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tracer_common::{AT_FDCWD, section::COUNT};

    /// Builds a record the way the kernel side does: `parts` in section
    /// order, walk ends `ROOT` unless set in `ends`.
    pub fn record(h: EventHeader, parts: [&[u8]; COUNT]) -> Vec<u8> {
        let mut h = h;
        for (i, p) in parts.iter().enumerate() {
            h.sections[i].len = p.len() as u16;
            if h.sections[i].end == walk_end::NONE {
                h.sections[i].end = walk_end::ROOT;
            }
            if h.sections[i].cross == 0 {
                h.sections[i].cross = Section::NO_CROSS;
            }
        }
        let mut out = vec![0u8; HEADER_SIZE];
        // SAFETY: the buffer holds exactly one header.
        unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast(), h) };
        for p in parts {
            out.extend_from_slice(p);
        }
        out
    }

    pub fn header(kind: u8, syscall: u16, ret: i64, flags: u32) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        EventHeader {
            kind,
            abi: 0,
            syscall,
            flags,
            pid: 10,
            tid: 11,
            dirfd1: AT_FDCWD,
            dirfd2: AT_FDCWD,
            ret,
            arg_flags: 0,
            arg_flags2: 0,
            cookie: 0,
            sections: [Section::default(); COUNT],
            comm,
        }
    }

    #[test]
    fn decodes_relative_open_with_observed_file() {
        let bytes = record(
            header(kind::SYSCALL, 2, 3, flags::HAS_BASE1 | flags::HAS_OBS),
            [
                b"hostname",
                b"",
                b"etc\0",
                b"hostname\0etc\0",
                b"",
                b"",
                b"",
                b"",
            ],
        );
        let e = Event::decode(&bytes).unwrap();
        assert_eq!(e.kind, Kind::Syscall);
        assert_eq!(e.raw1.as_deref(), Some(&b"hostname"[..]));
        assert_eq!(e.base1.unwrap().path, b"/etc");
        let obs = e.obs.unwrap();
        assert_eq!(obs.path, b"/etc/hostname");
        assert_eq!(obs.end, WalkEnd::Root);
        assert_eq!(obs.mount, None);
        assert_eq!(e.comm, b"test");
        assert_eq!(e.argv, None);
    }

    #[test]
    fn decodes_a_mount_crossing() {
        let mut h = header(kind::SYSCALL, 2, 3, flags::HAS_OBS);
        // x on a tmpfs mounted at /tmp: "x\0" inside, "tmp\0" above.
        h.sections[section::OBS].cross = 2;
        h.sections[section::OBS].magic = 0x0102_1994;
        let bytes = record(h, [b"/tmp/x", b"", b"", b"x\0tmp\0", b"", b"", b"", b""]);
        let obs = Event::decode(&bytes).unwrap().obs.unwrap();
        assert_eq!(obs.path, b"/tmp/x");
        assert_eq!(obs.mount, Some((b"/tmp".to_vec(), 0x0102_1994)));
    }

    #[test]
    fn decodes_exec_with_argv_and_interpreter() {
        let bytes = record(
            header(kind::EXEC, 28, 0, flags::HAS_EXE | flags::HAS_INTERP),
            [
                b"/tmp/s.sh",
                b"",
                b"",
                b"",
                b"",
                b"dash\0bin\0usr\0",
                b"/tmp/s.sh\0a\0",
                b"/bin/sh",
            ],
        );
        let e = Event::decode(&bytes).unwrap();
        assert_eq!(e.exe.unwrap().path, b"/usr/bin/dash");
        assert_eq!(e.argv, Some(vec![b"/tmp/s.sh".to_vec(), b"a".to_vec()]));
        assert_eq!(e.interp.as_deref(), Some(&b"/bin/sh"[..]));
    }

    #[test]
    fn rejects_bad_records() {
        assert_eq!(Event::decode(&[0; 4]), Err(DecodeError::Short(4)));
        let mut bytes = record(
            header(kind::SYSCALL, 1, 0, 0),
            [b"/x", b"", b"", b"", b"", b"", b"", b""],
        );
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(
            Event::decode(&bytes),
            Err(DecodeError::Length { .. })
        ));
        let h = header(99, 1, 0, 0);
        assert_eq!(
            Event::decode(&record(h, [b""; COUNT])),
            Err(DecodeError::UnknownKind(99))
        );
        let mut h = header(kind::SYSCALL, 2, 3, flags::HAS_OBS);
        h.sections[section::OBS].cross = 40;
        let bytes = record(h, [b"", b"", b"", b"x\0", b"", b"", b"", b""]);
        assert!(matches!(
            Event::decode(&bytes),
            Err(DecodeError::Cross { .. })
        ));
    }
}
