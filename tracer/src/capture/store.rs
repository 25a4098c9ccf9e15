//! Where the collector keeps the accesses of a run: each one encoded in a
//! few dozen bytes, sorted runs spilled to a temporary directory when the
//! buffer fills, merged back path by path at the end. Memory stays bounded
//! whatever the number of files a run touches; a run of ordinary size
//! never touches the disk.
use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    fs::File,
    io::{self, BufReader, BufWriter, Read, Seek, Write},
};

use crate::model::trace::{Access, Mount, Op, OpenMode, Role};

/// Spill a sorted run once the buffer holds this many bytes.
const BUDGET: usize = 16 << 20;

/// One access of one path, encoded so that byte order is path order: the
/// path, a NUL (paths hold none), then the access.
#[derive(Default)]
pub struct AccessStore {
    buf: Vec<u8>,
    /// (start, len) of each record in `buf`.
    recs: Vec<(usize, usize)>,
    runs: Vec<File>,
    /// A spill failed (no temporary space): keep everything in memory
    /// from then on rather than lose anything.
    in_memory: bool,
}

impl AccessStore {
    pub fn add(&mut self, path: &[u8], truncated: bool, a: &Access) {
        let start = self.buf.len();
        self.buf.extend_from_slice(path);
        self.buf.push(0);
        self.buf.push(truncated as u8);
        encode(a, &mut self.buf);
        let len = self.buf.len() - start;
        self.recs.push((start, len));
        if self.buf.len() >= BUDGET && !self.in_memory && self.spill().is_err() {
            self.in_memory = true;
        }
    }

    /// Sorts and dedups the records in `recs`.
    fn sort(&mut self) {
        let buf = &self.buf;
        let rec = |&(s, l): &(usize, usize)| &buf[s..s + l];
        self.recs.sort_unstable_by(|a, b| rec(a).cmp(rec(b)));
        self.recs.dedup_by(|a, b| rec(a) == rec(b));
    }

    fn spill(&mut self) -> io::Result<()> {
        // An unnamed file: nothing is left behind however `trace` ends.
        let file = tempfile::tempfile()?;
        let mut w = BufWriter::new(file);
        self.sort();
        for &(s, l) in &self.recs {
            w.write_all(&(l as u32).to_le_bytes())?;
            w.write_all(&self.buf[s..s + l])?;
        }
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.seek(io::SeekFrom::Start(0))?;
        self.runs.push(file);
        self.buf.clear();
        self.recs.clear();
        Ok(())
    }

    /// Every path with its accesses, in path order, accesses sorted and
    /// distinct; an error if a spilled run could not be read back.
    pub fn into_entries(mut self) -> io::Result<Entries> {
        let mut sources: Vec<Source> = Vec::new();
        for f in std::mem::take(&mut self.runs) {
            sources.push(Source::Run(BufReader::with_capacity(64 << 10, f)));
        }
        self.sort();
        sources.push(Source::Mem {
            buf: std::mem::take(&mut self.buf),
            recs: std::mem::take(&mut self.recs).into_iter(),
        });
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(rec) = s.next()? {
                heap.push(Head { rec, source: i });
            }
        }
        Ok(Entries { sources, heap })
    }
}

enum Source {
    Run(BufReader<File>),
    Mem {
        buf: Vec<u8>,
        recs: std::vec::IntoIter<(usize, usize)>,
    },
}

impl Source {
    fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        match self {
            Source::Mem { buf, recs } => Ok(recs.next().map(|(s, l)| buf[s..s + l].to_vec())),
            Source::Run(r) => {
                let mut len = [0u8; 4];
                match r.read_exact(&mut len) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e),
                }
                let mut rec = vec![0u8; u32::from_le_bytes(len) as usize];
                r.read_exact(&mut rec)?;
                Ok(Some(rec))
            }
        }
    }
}

/// A record at the head of a source; the heap yields the smallest first.
#[derive(PartialEq, Eq)]
struct Head {
    rec: Vec<u8>,
    source: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rec
            .cmp(&self.rec)
            .then(other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A path's bytes, whether any access of it was cut, and its accesses.
pub type PathAccesses = (Vec<u8>, bool, Vec<Access>);

/// The merged entries, one path at a time.
pub struct Entries {
    sources: Vec<Source>,
    heap: BinaryHeap<Head>,
}

fn path_of(rec: &[u8]) -> &[u8] {
    let nul = rec.iter().position(|&b| b == 0).unwrap_or(rec.len());
    &rec[..nul]
}

impl Entries {
    fn pop(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(Head { rec, source }) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(next) = self.sources[source].next()? {
            self.heap.push(Head { rec: next, source });
        }
        Ok(Some(rec))
    }

    /// The next path: its bytes, whether any access was cut, and its
    /// accesses (sorted, distinct).
    pub fn next_entry(&mut self) -> io::Result<Option<PathAccesses>> {
        let Some(first) = self.pop()? else {
            return Ok(None);
        };
        let path = path_of(&first).to_vec();
        let mut truncated = false;
        let mut accesses = Vec::new();
        let mut rec = Some(first);
        while let Some(r) = rec {
            let body = &r[path.len() + 1..];
            truncated |= body.first() == Some(&1);
            accesses.push(decode(body.get(1..).unwrap_or_default())?);
            let same = self
                .heap
                .peek()
                .is_some_and(|h| path_of(&h.rec) == path.as_slice());
            rec = if same { self.pop()? } else { None };
        }
        accesses.sort();
        accesses.dedup();
        Ok(Some((path, truncated, accesses)))
    }
}

// The encoding: fixed fields, then optional strings each behind a bit of
// `present`. Any change here is internal to one run of `trace`.

const OPS: &[Op] = &[
    Op::Open,
    Op::Stat,
    Op::Access,
    Op::Readlink,
    Op::Chdir,
    Op::Exec,
    Op::List,
    Op::Xattr,
    Op::Setxattr,
    Op::Statfs,
    Op::Watch,
    Op::Connect,
    Op::Bind,
    Op::Link,
    Op::Rename,
    Op::Mkdir,
    Op::Rmdir,
    Op::Unlink,
    Op::Symlink,
    Op::Mknod,
    Op::Truncate,
    Op::Utime,
    Op::Chmod,
    Op::Chown,
    Op::Chroot,
    Op::Mount,
    Op::Umount,
    Op::PivotRoot,
    Op::MoveMount,
    Op::Lookup,
    Op::Preexisting,
];
const ROLES: &[Role] = &[Role::Source, Role::Target, Role::NewRoot, Role::PutOld];
const MODES: &[OpenMode] = &[OpenMode::Read, OpenMode::Write, OpenMode::ReadWrite];

fn index_of<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|x| x == v).map_or(u8::MAX, |i| i as u8)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode(a: &Access, out: &mut Vec<u8>) {
    out.push(index_of(OPS, &a.op));
    out.push(a.mode.as_ref().map_or(u8::MAX, |m| index_of(MODES, m)));
    out.push(a.role.as_ref().map_or(u8::MAX, |r| index_of(ROLES, r)));
    let flags = a.create as u8
        | (a.nofollow as u8) << 1
        | (a.exe as u8) << 2
        | (a.outside_root as u8) << 3
        | (a.observed as u8) << 4
        | (a.errno.is_some() as u8) << 5;
    out.push(flags);
    out.extend_from_slice(&a.errno.unwrap_or(0).to_le_bytes());
    put_str(out, &a.syscall);
    put_str(out, &a.result);
    let opts = [
        &a.raw,
        &a.requested,
        &a.requested_hex,
        &a.channel,
        &a.abi,
        &a.content,
    ];
    let mut present = 0u8;
    for (i, o) in opts.iter().enumerate() {
        present |= (o.is_some() as u8) << i;
    }
    present |= (a.mount.is_some() as u8) << 6;
    out.push(present);
    for o in opts.into_iter().flatten() {
        put_str(out, o);
    }
    if let Some(m) = &a.mount {
        put_str(out, &m.fs);
        put_str(out, &m.at);
    }
}

fn bad() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "corrupt access record")
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> io::Result<u8> {
        let (&b, rest) = self.0.split_first().ok_or_else(bad)?;
        self.0 = rest;
        Ok(b)
    }
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(bad());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> io::Result<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| bad())
    }
}

fn decode(bytes: &[u8]) -> io::Result<Access> {
    let mut r = Reader(bytes);
    let op = *OPS.get(r.byte()? as usize).ok_or_else(bad)?;
    let mode = MODES.get(r.byte()? as usize).copied();
    let role = ROLES.get(r.byte()? as usize).copied();
    let flags = r.byte()?;
    let errno = r.u32()? as i32;
    let syscall = r.string()?;
    let result = r.string()?;
    let present = r.byte()?;
    let mut opt = |bit: u8| -> io::Result<Option<String>> {
        if present & (1 << bit) != 0 {
            r.string().map(Some)
        } else {
            Ok(None)
        }
    };
    let (raw, requested, requested_hex, channel, abi, content) =
        (opt(0)?, opt(1)?, opt(2)?, opt(3)?, opt(4)?, opt(5)?);
    let mount = if present & (1 << 6) != 0 {
        Some(Mount {
            fs: r.string()?,
            at: r.string()?,
        })
    } else {
        None
    };
    Ok(Access {
        op,
        syscall: crate::model::trace::name(&syscall),
        mode,
        create: flags & 1 != 0,
        nofollow: flags & 2 != 0,
        exe: flags & 4 != 0,
        result: crate::model::trace::name(&result),
        errno: (flags & 32 != 0).then_some(errno),
        raw: raw.map(Into::into),
        requested: requested.map(Into::into),
        requested_hex: requested_hex.map(Into::into),
        role,
        mount: mount.map(Box::new),
        outside_root: flags & 8 != 0,
        observed: flags & 16 != 0,
        channel: channel.map(Into::into),
        abi: abi.map(Into::into),
        content: content.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Access {
        Access {
            mode: Some(OpenMode::ReadWrite),
            create: true,
            nofollow: true,
            exe: true,
            result: "ENOENT".into(),
            errno: Some(2),
            raw: Some("r".into()),
            requested: Some("/q/../r".into()),
            requested_hex: Some("2f".into()),
            role: Some(Role::PutOld),
            mount: Some(Box::new(Mount {
                fs: "tmpfs".into(),
                at: "/tmp".into(),
            })),
            outside_root: true,
            observed: true,
            channel: Some("io_uring".into()),
            abi: Some("x86".into()),
            content: Some("target".into()),
            ..Access::new(Op::MoveMount, "move_mount")
        }
    }

    #[test]
    fn every_field_round_trips() {
        for a in [full(), Access::new(Op::Open, "openat")] {
            let mut v = Vec::new();
            encode(&a, &mut v);
            assert_eq!(decode(&v).unwrap(), a);
        }
    }

    #[test]
    fn spilled_runs_merge_back_in_order_and_distinct() {
        let mut s = AccessStore::default();
        let names: Vec<String> = (0..3000).map(|i| format!("/d/{}", i % 1000)).collect();
        for (i, n) in names.iter().enumerate() {
            let mut a = Access::new(Op::Stat, "stat");
            // Of the three accesses of each path, one has nofollow.
            if i % 3 == 0 {
                a.nofollow = true;
            }
            s.add(n.as_bytes(), false, &a);
            if i % 700 == 0 {
                s.spill().unwrap();
            }
        }
        assert!(s.runs.len() > 2);
        let mut it = s.into_entries().unwrap();
        let mut entries = Vec::new();
        while let Some(e) = it.next_entry().unwrap() {
            entries.push(e);
        }
        assert_eq!(entries.len(), 1000);
        let paths: Vec<&[u8]> = entries.iter().map(|e| e.0.as_slice()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(sorted, paths);
        // Each path: one access with nofollow, two alike without.
        assert!(entries.iter().all(|e| e.2.len() == 2));
    }

    #[test]
    fn order_is_byte_order_of_paths_with_prefixes_first() {
        let paths: [&[u8]; 5] = [b"/a!", b"/a/b", b"/a\xff", b"/a", b"/"];
        let mut s = AccessStore::default();
        for (i, p) in paths.iter().enumerate() {
            s.add(p, i == 2, &Access::new(Op::Open, "openat"));
            s.spill().unwrap();
        }
        let mut it = s.into_entries().unwrap();
        let mut got = Vec::new();
        while let Some((p, truncated, _)) = it.next_entry().unwrap() {
            got.push((p, truncated));
        }
        let mut want: Vec<(Vec<u8>, bool)> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_vec(), i == 2))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }
}
