//! Minimal reader for kernel BTF: struct member offsets only.
//!
//! Used where CO-RE is not available: user space looks the offsets up here and
//! hands them to the eBPF programs. Only little-endian base BTF (such as
//! `/sys/kernel/btf/vmlinux`) is supported.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read BTF file {}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("malformed BTF: {0}")]
    Malformed(String),
    #[error("no struct or union named `{0}` in BTF")]
    NoSuchType(String),
    #[error("struct `{ty}` has no member `{member}`")]
    NoSuchMember { ty: String, member: String },
    /// The member is a bitfield or not byte-aligned, so it has no byte offset.
    #[error("member `{member}` of `{ty}` is a bitfield or not byte-aligned (bit {bits})")]
    Bitfield {
        ty: String,
        member: String,
        bits: u32,
    },
}

// BTF_KIND_* numbers from include/uapi/linux/btf.h that the lookups need.
const INT: u32 = 1;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
/// Bounds typedef chains and anonymous-member nesting so that cyclic hostile
/// input cannot overflow the stack.
const MAX_DEPTH: usize = 64;
/// Bounds the members visited by one lookup, so that self-referencing
/// anonymous members cannot make it take exponential time.
const MAX_VISITS: usize = 1 << 20;

/// The BTF blob: read into memory, or mapped (`/sys/kernel/btf/vmlinux`
/// can be mmapped on recent kernels, which spares copying its 5 MB).
enum Blob {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl Blob {
    fn bytes(&self) -> &[u8] {
        match self {
            Blob::Owned(v) => v,
            Blob::Mapped(m) => m,
        }
    }
}

/// Parsed BTF: the raw type and string sections plus an index of type starts.
pub struct Btf {
    blob: Blob,
    types: std::ops::Range<usize>,
    strs: std::ops::Range<usize>,
    /// Byte offset in `types` of the `btf_type` record for id `i + 1`.
    offs: Vec<u32>,
    /// First sized STRUCT/UNION with each name (of the names asked for,
    /// when a list was given); the only names ever looked up.
    by_name: HashMap<Box<str>, u32>,
}

/// (bit offset, member type id, is bitfield) of a member found by name.
type Found = Result<Option<(u32, u32, bool)>, BtfError>;

fn malformed(msg: impl Into<String>) -> BtfError {
    BtfError::Malformed(msg.into())
}

fn add(a: u32, b: u32) -> Result<u32, BtfError> {
    a.checked_add(b)
        .ok_or_else(|| malformed("member offset overflows"))
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// The range `base + off .. + len` of `data`, if it fits.
fn section(
    data: &[u8],
    base: usize,
    off: u32,
    len: u32,
    what: &str,
) -> Result<std::ops::Range<usize>, BtfError> {
    let start = base.checked_add(off as usize);
    let range = start.and_then(|s| Some(s..s.checked_add(len as usize)?));
    range
        .filter(|r| r.end <= data.len())
        .ok_or_else(|| malformed(format!("{what} section out of bounds")))
}

fn raw_as_str(raw: &[u8]) -> Result<&str, BtfError> {
    std::str::from_utf8(raw).map_err(|_| malformed("a name is not UTF-8"))
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Btf, BtfError> {
        Self::from_file_for(path, &[])
    }

    /// Like [`from_file`](Btf::from_file), indexing only the struct and
    /// union names in `names` (all when empty): what a lookup of a few
    /// kernel structs needs, without an allocation per kernel type.
    pub fn from_file_for(path: &Path, names: &[&str]) -> Result<Btf, BtfError> {
        let io = |source| BtfError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private; the kernel's BTF does
        // not change under it, and a file changing under a mapping only
        // changes the bytes read, which are bounds-checked like any input.
        let blob = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(m) if !m.is_empty() => Blob::Mapped(m),
            _ => Blob::Owned(std::fs::read(path).map_err(io)?),
        };
        Self::parse(blob, names)
    }

    pub fn from_bytes(data: &[u8]) -> Result<Btf, BtfError> {
        Self::parse(Blob::Owned(data.to_vec()), &[])
    }

    fn parse(blob: Blob, names: &[&str]) -> Result<Btf, BtfError> {
        let data = blob.bytes();
        match data.get(0..2) {
            Some([0x9f, 0xeb]) => {}
            Some([0xeb, 0x9f]) => return Err(malformed("big-endian BTF is not supported")),
            _ => return Err(malformed("bad magic (not a BTF blob)")),
        }
        let hdr = |i: usize| u32_at(data, 4 + 4 * i).ok_or_else(|| malformed("truncated header"));
        let hdr_len = hdr(0)?;
        let (type_off, type_len, str_off, str_len) = (hdr(1)?, hdr(2)?, hdr(3)?, hdr(4)?);
        if hdr_len < 24 {
            return Err(malformed(format!("header length {hdr_len} < 24")));
        }
        let types = section(data, hdr_len as usize, type_off, type_len, "type")?;
        let strs = section(data, hdr_len as usize, str_off, str_len, "string")?;
        let mut btf = Btf {
            blob,
            types,
            strs,
            offs: Vec::new(),
            by_name: HashMap::new(),
        };
        btf.index(names)?;
        Ok(btf)
    }

    fn type_bytes(&self) -> &[u8] {
        &self.blob.bytes()[self.types.clone()]
    }

    fn str_bytes(&self) -> &[u8] {
        &self.blob.bytes()[self.strs.clone()]
    }

    /// Walks the type section once, recording where each type starts and
    /// naming the sized structs/unions (FWDs and zero-size duplicates skipped).
    fn index(&mut self, names: &[&str]) -> Result<(), BtfError> {
        let mut pos = 0usize;
        let len = self.types.len();
        let wanted: std::collections::HashSet<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        // About 16 bytes a type in vmlinux.
        self.offs.reserve(len / 16);
        while pos < len {
            let (name_off, info, size) = self.record(pos)?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            // Kind-specific data after the common record; unknown kinds can't be skipped.
            let extra = match kind {
                INT | 14 | 17 => 4,                    // VAR, DECL_TAG
                3 => 12,                               // ARRAY
                STRUCT | UNION | 15 | 19 => 12 * vlen, // DATASEC, ENUM64
                6 | 13 => 8 * vlen,                    // ENUM, FUNC_PROTO
                2 | 7..=12 | 16 | 18 => 0,             // PTR, FWD, TYPEDEF..FUNC, FLOAT, TYPE_TAG
                _ => return Err(malformed(format!("unknown kind {kind} at offset {pos}"))),
            };
            let offset = u32::try_from(pos).map_err(|_| malformed("type section too large"))?;
            self.offs.push(offset);
            let id = self.offs.len() as u32;
            if matches!(kind, STRUCT | UNION) && size != 0 && name_off != 0 {
                let raw = self.raw_str_at(name_off)?;
                if (wanted.is_empty() || wanted.contains(raw))
                    && !self.by_name.contains_key(raw_as_str(raw)?)
                {
                    let name: Box<str> = raw_as_str(raw)?.into();
                    self.by_name.insert(name, id);
                }
            }
            pos = pos + 12 + extra;
            if pos > len {
                return Err(malformed(format!("type {id} runs past the type section")));
            }
        }
        Ok(())
    }

    /// Reads the common `btf_type` header (name_off, info, size_or_type) at `pos`.
    fn record(&self, pos: usize) -> Result<(u32, u32, u32), BtfError> {
        let bad = || malformed(format!("truncated type record at offset {pos}"));
        let types = self.type_bytes();
        let get = |i: usize| u32_at(types, pos + 4 * i).ok_or_else(bad);
        Ok((get(0)?, get(1)?, get(2)?))
    }

    fn raw_str_at(&self, off: u32) -> Result<&[u8], BtfError> {
        let bad = || malformed(format!("bad string offset {off}"));
        let tail = self.str_bytes().get(off as usize..).ok_or_else(bad)?;
        let end = tail.iter().position(|&b| b == 0).ok_or_else(bad)?;
        Ok(&tail[..end])
    }

    fn str_at(&self, off: u32) -> Result<&str, BtfError> {
        raw_as_str(self.raw_str_at(off)?)
    }

    /// Offset of the record for type `id` (id 0 is void: no record, and no
    /// valid member or typedef target).
    fn pos_of(&self, id: u32) -> Result<usize, BtfError> {
        let idx = (id as usize).checked_sub(1);
        let off = idx.and_then(|i| self.offs.get(i));
        off.map(|&o| o as usize)
            .ok_or_else(|| malformed(format!("bad type id {id}")))
    }

    /// Follows typedef/const/volatile/restrict/type_tag to the underlying type.
    fn strip(&self, mut id: u32) -> Result<(u32, u32, usize), BtfError> {
        for _ in 0..MAX_DEPTH {
            let pos = self.pos_of(id)?;
            let (_, info, next) = self.record(pos)?;
            let kind = (info >> 24) & 0x1f;
            match kind {
                8..=11 | 18 => id = next, // TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
                _ => return Ok((id, kind, pos)),
            }
        }
        Err(malformed(format!("type chain too long at id {id}")))
    }

    /// True if `id` is an INT narrower than its storage (a bitfield in BTF
    /// without kind_flag).
    fn is_int_bitfield(&self, id: u32) -> Result<bool, BtfError> {
        let (_, kind, pos) = self.strip(id)?;
        if kind != INT {
            return Ok(false);
        }
        let (_, _, size) = self.record(pos)?;
        let enc = u32_at(self.type_bytes(), pos + 12).ok_or_else(|| malformed("truncated INT"))?;
        Ok(enc & 0xff != size.wrapping_mul(8) || (enc >> 16) & 0xff != 0)
    }

    /// Finds `name` among the members of struct/union `id`, descending into
    /// anonymous struct/union members and adding up their offsets. Returns
    /// (bit offset, member type, is bitfield).
    fn find(&self, id: u32, name: &str, depth: usize, budget: &mut usize) -> Found {
        let (_, kind, pos) = self.strip(id)?;
        if !matches!(kind, STRUCT | UNION) {
            return Ok(None);
        }
        let (_, info, _) = self.record(pos)?;
        let kind_flag = info >> 31 == 1;
        for i in 0..(info & 0xffff) as usize {
            *budget = budget
                .checked_sub(1)
                .filter(|_| depth < MAX_DEPTH)
                .ok_or_else(|| malformed("members nested too deeply or cyclically"))?;
            let (m_name, m_ty, m_off) = self.record(pos + 12 + 12 * i)?;
            let (bits, bf_size) = match kind_flag {
                true => (m_off & 0xff_ffff, m_off >> 24),
                false => (m_off, 0),
            };
            let found = if m_name == 0 {
                self.find(m_ty, name, depth + 1, budget)?
            } else if self.str_at(m_name)? == name {
                let bitfield = bf_size != 0 || (!kind_flag && self.is_int_bitfield(m_ty)?);
                Some((0, m_ty, bitfield))
            } else {
                None
            };
            if let Some((inner, ty, bitfield)) = found {
                return Ok(Some((add(inner, bits)?, ty, bitfield)));
            }
        }
        Ok(None)
    }

    /// Byte offset of `member` inside the struct or union named `ty`. Members of
    /// anonymous struct/union members are searched too (mm_struct wraps all its
    /// fields in an anonymous struct), with the offsets added up. A dotted path
    /// "a.b" descends into named members (e.g. ("fs_struct", "pwd.dentry") ).
    pub fn member_offset(&self, ty: &str, member: &str) -> Result<u32, BtfError> {
        let no_type = || BtfError::NoSuchType(ty.into());
        let mut id = *self.by_name.get(ty).ok_or_else(no_type)?;
        let (mut bits, mut path, mut budget) = (0u32, ty.to_string(), MAX_VISITS);
        for part in member.split('.') {
            let (ty, member) = (path.clone(), part.to_string());
            let Some((off, next, bitfield)) = self.find(id, part, 0, &mut budget)? else {
                return Err(BtfError::NoSuchMember { ty, member });
            };
            bits = add(bits, off)?;
            if bitfield || !bits.is_multiple_of(8) {
                return Err(BtfError::Bitfield { ty, member, bits });
            }
            (id, path) = (next, format!("{path}.{part}"));
        }
        Ok(bits / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny BTF writer (type section, strings after the leading NUL); ids count from 1.
    #[derive(Default)]
    struct Builder(Vec<u8>, Vec<u8>);

    impl Builder {
        fn s(&mut self, name: &str) -> u32 {
            let off = self.1.len() as u32 + 1;
            self.1.extend(name.bytes().chain([0]));
            if name.is_empty() { 0 } else { off }
        }
        fn raw(&mut self, words: &[u32]) {
            self.0.extend(words.iter().flat_map(|w| w.to_le_bytes()));
        }
        fn ty(&mut self, name: &str, kind: u32, kflag: bool, vlen: u32, size: u32, extra: &[u32]) {
            let n = self.s(name);
            self.raw(&[n, (kflag as u32) << 31 | kind << 24 | vlen, size]);
            self.raw(extra);
        }
        fn comp(&mut self, name: &str, kind: u32, kflag: bool, size: u32, m: &[(&str, u32, u32)]) {
            let extra: Vec<u32> = m.iter().flat_map(|&(n, t, o)| [self.s(n), t, o]).collect();
            self.ty(name, kind, kflag, m.len() as u32, size, &extra);
        }
        fn blob(&self) -> Vec<u8> {
            let (tl, sl) = (self.0.len() as u32, self.1.len() as u32 + 1);
            // Magic 0xeB9F and version 1 as one little-endian word, then the header.
            let hdr = [0x1_eb9f, 24, 0, tl, tl, sl].map(u32::to_le_bytes);
            [hdr.as_flattened(), &self.0, &[0], &self.1].concat()
        }
    }

    fn synthetic() -> Vec<u8> {
        let mut b = Builder::default();
        b.ty("int", 1, false, 0, 4, &[32]); // 1
        b.ty("u3", 1, false, 0, 1, &[3]); // 2: 3-bit int, a bitfield without kind_flag
        b.comp("inner", 4, false, 8, &[("a", 1, 0), ("b", 1, 32)]); // 3
        b.ty("inner_t", 8, false, 0, 3, &[]); // 4: typedef -> inner
        b.ty("", 10, false, 0, 4, &[]); // 5: const -> inner_t
        b.comp("", 5, false, 8, &[("x", 1, 0), ("", 5, 0)]); // 6: anon union
        // One of every other kind, so a wrong skip length breaks later ids.
        b.ty("", 2, false, 0, 1, &[]); // 7 PTR
        b.ty("", 3, false, 0, 0, &[1, 1, 4]); // 8 ARRAY
        let e = b.s("E0");
        b.ty("e", 6, false, 1, 4, &[e, 0]); // 9 ENUM
        b.ty("outer", 7, false, 0, 0, &[]); // 10 FWD
        b.ty("", 9, false, 0, 1, &[]); // 11 VOLATILE
        b.ty("", 11, false, 0, 7, &[]); // 12 RESTRICT
        b.ty("", 13, false, 1, 1, &[0, 1]); // 13 FUNC_PROTO
        b.ty("f", 12, false, 1, 13, &[]); // 14 FUNC
        b.ty("v", 14, false, 0, 1, &[1]); // 15 VAR
        b.ty(".data", 15, false, 1, 4, &[15, 0, 4]); // 16 DATASEC
        b.ty("double", 16, false, 0, 8, &[]); // 17 FLOAT
        b.ty("tag", 17, false, 0, 1, &[u32::MAX]); // 18 DECL_TAG
        b.ty("user", 18, false, 0, 1, &[]); // 19 TYPE_TAG
        b.ty("e64", 19, false, 1, 8, &[e, 1, 0]); // 20 ENUM64
        b.comp("outer", 4, false, 0, &[]); // 21: zero-size, skipped
        let outer = [("head", 1, 0), ("", 6, 64), ("flags", 1, 3 << 24 | 128)];
        let outer = [
            &outer[..],
            &[("tail", 1, 160), ("named", 4, 192), ("odd", 1, 260)],
        ];
        b.comp("outer", 4, true, 40, &outer.concat()); // 22
        b.comp("outer", 4, false, 8, &[("head", 1, 32)]); // 23: later duplicate
        b.comp("plain", 4, false, 8, &[("bf", 2, 0), ("ok", 1, 32)]); // 24
        b.blob()
    }

    #[test]
    fn synthetic_offsets_and_errors() {
        let btf = Btf::from_bytes(&synthetic()).expect("parse");
        let off = |t, m| btf.member_offset(t, m);
        let err = |t, m| off(t, m).map_err(|e| e.to_string()).unwrap_err();
        let want = [("head", 0), ("x", 8), ("a", 8), ("b", 12), ("tail", 20)];
        for (m, want) in want.into_iter().chain([("named", 24), ("named.b", 28)]) {
            assert_eq!(off("outer", m).expect(m), want, "{m}");
        }
        assert_eq!(off("plain", "ok").expect("ok"), 4);
        assert!(err("outer", "flags").ends_with("bitfield or not byte-aligned (bit 128)"));
        assert!(err("outer", "odd").ends_with("(bit 260)"));
        assert!(err("plain", "bf").contains("`bf` of `plain` is a bitfield"));
        assert_eq!(err("outer", "zzz"), "struct `outer` has no member `zzz`");
        assert_eq!(
            err("outer", "head.x"),
            "struct `outer.head` has no member `x`"
        );
        assert_eq!(err("nope", "a"), "no struct or union named `nope` in BTF");
        assert!(matches!(off("inner_t", "a"), Err(BtfError::NoSuchType(_))));
    }

    fn is_malformed(data: &[u8]) -> bool {
        matches!(Btf::from_bytes(data), Err(BtfError::Malformed(_)))
    }

    #[test]
    fn malformed_inputs() {
        let good = synthetic();
        assert!(is_malformed(&[]));
        assert!(is_malformed(&[0, 0, 1, 0]));
        assert!(is_malformed(&[0xeb, 0x9f, 1, 0, 0, 0, 0, 24]));
        // Every truncation fails cleanly (the string section goes out of bounds).
        assert!((0..good.len()).all(|n| is_malformed(&good[..n])));
        for words in [&[0, 1 << 24, 4][..], &[0, 1 << 24]] {
            let mut b = Builder::default(); // INT without its extra word; half a record
            b.raw(words);
            assert!(is_malformed(&b.blob()));
        }
        let mut b = Builder::default();
        b.raw(&[9999, 4 << 24, 4]); // struct name out of the string section
        assert!(is_malformed(&b.blob()));
        let mut b = Builder::default();
        b.raw(&[0, 25 << 24, 0]); // unknown kind
        assert!(is_malformed(&b.blob()));
        // Corrupting any byte must not panic or hang, whatever the result.
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            if let Ok(btf) = Btf::from_bytes(&bad) {
                let _ = btf.member_offset("outer", "named.b");
                let _ = btf.member_offset("plain", "bf");
            }
        }
        let mut b = Builder::default(); // typedef and anonymous member loops
        b.ty("t", 8, false, 0, 1, &[]);
        b.comp("loop", 4, false, 8, &[("", 2, 0), ("", 2, 0), ("", 1, 0)]);
        let btf = Btf::from_bytes(&b.blob()).expect("parse");
        let res = btf.member_offset("loop", "x");
        assert!(matches!(res, Err(BtfError::Malformed(_))), "{res:?}");
    }

    #[test]
    fn vmlinux_offsets() {
        let btf = Btf::from_file(Path::new("/sys/kernel/btf/vmlinux")).expect("vmlinux BTF");
        let wanted = "task_struct.fs task_struct.files task_struct.mm mm_struct.exe_file
            mm_struct.arg_start mm_struct.arg_end fs_struct.root fs_struct.pwd path.mnt
            path.dentry dentry.d_parent dentry.d_name qstr.name vfsmount.mnt_root mount.mnt
            mount.mnt_parent mount.mnt_mountpoint file.f_path files_struct.fdt fdtable.fd
            fdtable.max_fds";
        for (t, m) in wanted.split_whitespace().filter_map(|w| w.split_once('.')) {
            let off = btf.member_offset(t, m);
            println!("{t}.{m} = {}", off.unwrap_or_else(|e| panic!("{e}")));
        }
        let off = |t, m| btf.member_offset(t, m).expect(m);
        assert_eq!(off("path", "mnt"), 0);
        assert_eq!(off("path", "dentry"), 8);
        assert_eq!(off("qstr", "name"), 8);
        assert_eq!(off("fs_struct", "pwd.dentry"), off("fs_struct", "pwd") + 8);
        assert!(off("mm_struct", "arg_end") > off("mm_struct", "arg_start"));
    }
}
