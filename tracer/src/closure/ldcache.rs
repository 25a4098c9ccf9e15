//! glibc's `/etc/ld.so.cache` and `/etc/ld.so.conf`, read from the image.
//!
//! The dynamic loader consults the cache before its default directories,
//! so a library found only through the cache (say in
//! `/usr/lib/x86_64-linux-gnu/libfakeroot`) is found the same way here.
//! The cache is untrusted image data: every offset is bounds-checked and
//! a malformed file is an error, never a panic.
use std::{
    collections::{BTreeMap, HashSet},
    ffi::OsStr,
    io,
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use super::resolve::{ResolveError, resolve};
use crate::source::rootfs::{Kind, Rootfs};

/// Where glibc keeps the cache.
pub const LD_SO_CACHE: &str = "/etc/ld.so.cache";
/// Where glibc's ldconfig reads its directory list.
pub const LD_SO_CONF: &str = "/etc/ld.so.conf";

// Entry flags, from glibc's sysdeps/generic/ldconfig.h.
pub const FLAG_TYPE_MASK: u32 = 0x00ff;
pub const FLAG_ELF_LIBC6: u32 = 0x0003;
pub const FLAG_REQUIRED_MASK: u32 = 0xff00;
pub const FLAG_SPARC_LIB64: u32 = 0x0100;
pub const FLAG_IA64_LIB64: u32 = 0x0200;
pub const FLAG_X8664_LIB64: u32 = 0x0300;
pub const FLAG_S390_LIB64: u32 = 0x0400;
pub const FLAG_POWERPC_LIB64: u32 = 0x0500;
pub const FLAG_MIPS64_LIBN32: u32 = 0x0600;
pub const FLAG_MIPS64_LIBN64: u32 = 0x0700;
pub const FLAG_X8664_LIBX32: u32 = 0x0800;
pub const FLAG_ARM_LIBHF: u32 = 0x0900;
pub const FLAG_AARCH64_LIB64: u32 = 0x0a00;
pub const FLAG_ARM_LIBSF: u32 = 0x0b00;
pub const FLAG_MIPS_LIB32_NAN2008: u32 = 0x0c00;
pub const FLAG_MIPS64_LIBN32_NAN2008: u32 = 0x0d00;
pub const FLAG_MIPS64_LIBN64_NAN2008: u32 = 0x0e00;
pub const FLAG_RISCV_FLOAT_ABI_SOFT: u32 = 0x0f00;
pub const FLAG_RISCV_FLOAT_ABI_DOUBLE: u32 = 0x1000;
pub const FLAG_LARCH_FLOAT_ABI_SOFT: u32 = 0x1100;
pub const FLAG_LARCH_FLOAT_ABI_DOUBLE: u32 = 0x1200;

// ELF machines the flags distinguish (elf.h `EM_*`).
const EM_SPARC: u16 = 2;
const EM_386: u16 = 3;
const EM_MIPS: u16 = 8;
const EM_S390: u16 = 22;
const EM_PPC64: u16 = 21;
const EM_ARM: u16 = 40;
const EM_SPARCV9: u16 = 43;
const EM_IA64: u16 = 50;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
const EM_LOONGARCH: u16 = 258;

/// Old (libc5, glibc < 2.2) header; since glibc 2.2 it may precede the
/// new format ("compat" caches), and we only read the new part.
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
/// `CACHEMAGIC_NEW` followed by `CACHE_VERSION`.
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// `struct cache_file`: 11 magic bytes, padding, `nlibs`.
const OLD_HEADER: usize = 16;
/// `struct file_entry`: flags, key, value.
const OLD_ENTRY: usize = 12;
/// `struct cache_file_new` (static-asserted to 48 bytes in glibc).
const NEW_HEADER: usize = 48;
/// `struct file_entry_new`: flags, key, value, osversion, hwcap.
const NEW_ENTRY: usize = 24;
/// `DL_CACHE_HWCAP_ISA_LEVEL_MASK`: ISA-level bits, above bit 32.
const HWCAP_ISA_LEVEL_MASK: u64 = (1 << 10) - 1;
/// Caches larger than this are not read (real ones are tens of KiB).
const MAX_CACHE: u64 = 64 << 20;
/// Configuration files larger than this are skipped.
const MAX_CONF: u64 = 1 << 20;
/// `include` nesting limit, against include loops.
const MAX_INCLUDE_DEPTH: usize = 16;

/// One cache entry for a soname.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// `FLAG_*` bits: library type and the ABI it is for.
    pub flags: u32,
    /// Marks entries that apply only on some CPUs (legacy hwcap
    /// subdirectories, or glibc-hwcaps with bit 62); bits 32..41 hold an
    /// x86 ISA level.
    pub hwcap: u64,
    /// The library's path in the image, as ldconfig recorded it.
    pub path: String,
}

/// A parsed `ld.so.cache`: soname to its entries, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LdCache {
    entries: BTreeMap<String, Vec<CacheEntry>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LdCacheError {
    #[error("not an ld.so.cache (unknown magic)")]
    BadMagic,
    #[error("old-format ld.so.cache without the glibc 2.2+ part")]
    OldFormatOnly,
    #[error("ld.so.cache is marked invalid by ldconfig")]
    MarkedInvalid,
    #[error("ld.so.cache is truncated ({0})")]
    Truncated(&'static str),
    #[error("ld.so.cache entry {index}: string offset {offset} is out of range")]
    BadString { index: usize, offset: u32 },
    #[error("ld.so.cache is implausibly large ({0} bytes)")]
    TooLarge(u64),
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

fn read_u32(b: &[u8], off: usize, big: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

fn read_u64(b: &[u8], off: usize, big: bool) -> Option<u64> {
    let s: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(if big {
        u64::from_be_bytes(s)
    } else {
        u64::from_le_bytes(s)
    })
}

/// The NUL-terminated string at `off`, if it lies entirely in `b`.
fn c_str(b: &[u8], off: u32) -> Option<&[u8]> {
    let s = b.get(usize::try_from(off).ok()?..)?;
    let end = s.iter().position(|&c| c == 0)?;
    Some(&s[..end])
}

fn align_up(n: usize, to: usize) -> Option<usize> {
    Some(n.checked_add(to - 1)? / to * to)
}

/// Offset of the new-format part in a compat cache. The old table's
/// count is in the writer's byte order and the new part is aligned to 4
/// or 8 depending on the writer's ABI, so every combination is tried and
/// the new magic decides.
fn new_part_offset(bytes: &[u8]) -> Result<usize, LdCacheError> {
    let mut old_table_fits = false;
    for big in [false, true] {
        let Some(nlibs) = read_u32(bytes, OLD_MAGIC.len() + 1, big) else {
            return Err(LdCacheError::Truncated("old-format header"));
        };
        let Some(end) = (nlibs as usize)
            .checked_mul(OLD_ENTRY)
            .and_then(|n| n.checked_add(OLD_HEADER))
        else {
            continue;
        };
        old_table_fits |= end <= bytes.len();
        for align in [4, 8] {
            let Some(off) = align_up(end, align) else {
                continue;
            };
            if bytes.get(off..).is_some_and(|r| r.starts_with(NEW_MAGIC)) {
                return Ok(off);
            }
        }
    }
    if old_table_fits {
        Err(LdCacheError::OldFormatOnly)
    } else {
        Err(LdCacheError::Truncated("old-format table"))
    }
}

/// Whether the entries of a new-format part with this byte order fit.
fn table_fits(new: &[u8], big: bool) -> bool {
    read_u32(new, 20, big)
        .and_then(|n| (n as usize).checked_mul(NEW_ENTRY))
        .and_then(|n| n.checked_add(NEW_HEADER))
        .is_some_and(|end| end <= new.len())
}

impl LdCache {
    /// Parses a cache file: new format, or old format followed by new.
    /// String offsets are relative to the new-format header, as in
    /// glibc's dl-cache.c.
    pub fn parse(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
        let start = if bytes.starts_with(NEW_MAGIC) {
            0
        } else if bytes.starts_with(OLD_MAGIC) {
            new_part_offset(bytes)?
        } else {
            return Err(LdCacheError::BadMagic);
        };
        let new = bytes
            .get(start..)
            .filter(|n| n.len() >= NEW_HEADER)
            .ok_or(LdCacheError::Truncated("header"))?;
        let big = match new[28] & 3 {
            2 => false,
            3 => true,
            1 => return Err(LdCacheError::MarkedInvalid),
            // Written by an ldconfig too old to record its byte order:
            // take whichever order makes the table fit, little first.
            _ => !table_fits(new, false) && table_fits(new, true),
        };
        if !table_fits(new, big) {
            return Err(LdCacheError::Truncated("entry table"));
        }
        let nlibs = read_u32(new, 20, big).ok_or(LdCacheError::Truncated("header"))? as usize;
        let mut entries: BTreeMap<String, Vec<CacheEntry>> = BTreeMap::new();
        for index in 0..nlibs {
            let at = NEW_HEADER + index * NEW_ENTRY;
            let field = |off: usize| read_u32(new, at + off, big);
            let (Some(flags), Some(key), Some(value), Some(hwcap)) =
                (field(0), field(4), field(8), read_u64(new, at + 16, big))
            else {
                return Err(LdCacheError::Truncated("entry table"));
            };
            let string =
                |offset: u32| c_str(new, offset).ok_or(LdCacheError::BadString { index, offset });
            let (key, value) = (string(key)?, string(value)?);
            // Names and paths are bytes; one that is not UTF-8 cannot be a
            // `&str` soname we are asked about, so it is skipped.
            let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value))
            else {
                continue;
            };
            entries.entry(key.to_owned()).or_default().push(CacheEntry {
                flags,
                hwcap,
                path: value.to_owned(),
            });
        }
        Ok(LdCache { entries })
    }

    /// Reads and parses the image's `/etc/ld.so.cache`; `Ok(None)` when
    /// the image has none (the loader then uses its default directories).
    pub fn load(fs: &dyn Rootfs) -> Result<Option<LdCache>, LdCacheError> {
        let path = Path::new(LD_SO_CACHE);
        let Some(r) = resolve(fs, path, true)? else {
            return Ok(None);
        };
        let io_err = |source| LdCacheError::Io {
            path: r.path.clone(),
            source,
        };
        let Some(meta) = fs.meta(&r.path).map_err(io_err)? else {
            return Ok(None);
        };
        if meta.kind != Kind::Regular {
            return Ok(None);
        }
        if meta.size > MAX_CACHE {
            return Err(LdCacheError::TooLarge(meta.size));
        }
        let bytes = fs.read_all(&r.path).map_err(io_err)?;
        LdCache::parse(&bytes).map(Some)
    }

    /// The path the loader would take for `soname` in an object of this
    /// class and machine. A baseline entry (no hwcap) is preferred: it
    /// loads on any CPU, and a trace records the variant a run used.
    pub fn lookup(&self, soname: &str, want64: bool, machine: u16) -> Option<&str> {
        let entries = self.entries.get(soname)?;
        let fits = |e: &&CacheEntry| flags_match(e.flags, want64, machine);
        entries
            .iter()
            .filter(fits)
            .find(|e| is_baseline(e.hwcap))
            .or_else(|| entries.iter().find(fits))
            .map(|e| e.path.as_str())
    }

    /// All entries for `soname`, in file order.
    pub fn entries(&self, soname: &str) -> &[CacheEntry] {
        self.entries.get(soname).map_or(&[], Vec::as_slice)
    }

    /// Number of distinct sonames.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether an entry loads on any CPU: no legacy hwcap bits and no
/// glibc-hwcaps subdirectory. The x86 ISA-level bits (32..41), which
/// ldconfig also records for plain entries, do not count.
fn is_baseline(hwcap: u64) -> bool {
    hwcap & !(HWCAP_ISA_LEVEL_MASK << 32) == 0
}

/// Whether an entry's flags suit an object of this class and machine, as
/// the loader's `_dl_cache_check_flags` decides per architecture. Where
/// the choice hangs on `e_flags` (ARM float ABI, RISC-V, LoongArch), any
/// variant is accepted: the caller checks the file found.
pub fn flags_match(flags: u32, want64: bool, machine: u16) -> bool {
    if flags & FLAG_TYPE_MASK != FLAG_ELF_LIBC6 {
        return false;
    }
    let req = flags & FLAG_REQUIRED_MASK;
    match (machine, want64) {
        (EM_X86_64, true) => req == FLAG_X8664_LIB64,
        (EM_X86_64, false) => req == FLAG_X8664_LIBX32,
        (EM_AARCH64, true) => req == FLAG_AARCH64_LIB64,
        (EM_ARM, false) => matches!(req, 0 | FLAG_ARM_LIBHF | FLAG_ARM_LIBSF),
        (EM_PPC64, true) => req == FLAG_POWERPC_LIB64,
        (EM_S390, true) => req == FLAG_S390_LIB64,
        (EM_SPARC | EM_SPARCV9, true) => req == FLAG_SPARC_LIB64,
        (EM_IA64, true) => req == FLAG_IA64_LIB64,
        (EM_MIPS, true) => matches!(req, FLAG_MIPS64_LIBN64 | FLAG_MIPS64_LIBN64_NAN2008),
        (EM_MIPS, false) => matches!(
            req,
            0 | FLAG_MIPS_LIB32_NAN2008 | FLAG_MIPS64_LIBN32 | FLAG_MIPS64_LIBN32_NAN2008
        ),
        (EM_RISCV, _) => matches!(req, FLAG_RISCV_FLOAT_ABI_SOFT | FLAG_RISCV_FLOAT_ABI_DOUBLE),
        (EM_LOONGARCH, _) => matches!(req, FLAG_LARCH_FLOAT_ABI_SOFT | FLAG_LARCH_FLOAT_ABI_DOUBLE),
        (EM_386, false) => req == 0,
        // Other 32-bit machines: plain libc6 entries.
        (_, false) => req == 0,
        // An unknown 64-bit machine: any entry marked for a 64-bit ABI.
        (_, true) => req != 0,
    }
}

/// Directories listed in the image's `/etc/ld.so.conf`, following
/// `include` lines (with `*`/`?` globs) in order, without duplicates.
/// `hwcap` lines and comments are ignored; a `dir=type` suffix (libc5
/// era) is dropped. These are the directories ldconfig put in the cache,
/// so they are a fallback when the cache is stale or missing.
pub fn conf_dirs(fs: &dyn Rootfs) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut seen_files = HashSet::new();
    read_conf(fs, Path::new(LD_SO_CONF), 0, &mut seen_files, &mut out);
    let mut seen = HashSet::new();
    out.retain(|d| seen.insert(d.clone()));
    out
}

/// Contents of a regular file in the image (through symlinks), if small.
fn read_text(fs: &dyn Rootfs, path: &Path) -> Option<(PathBuf, String)> {
    let r = resolve(fs, path, true).ok()??;
    let meta = fs.meta(&r.path).ok()??;
    if meta.kind != Kind::Regular || meta.size > MAX_CONF {
        return None;
    }
    let bytes = fs.read_all(&r.path).ok()?;
    Some((r.path, String::from_utf8_lossy(&bytes).into_owned()))
}

/// `word` followed by a blank at the start of `line`: what follows.
fn keyword<'a>(line: &'a str, word: &str, case_insensitive: bool) -> Option<&'a str> {
    let head = line.get(..word.len())?;
    let matches = if case_insensitive {
        head.eq_ignore_ascii_case(word)
    } else {
        head == word
    };
    let rest = &line[word.len()..];
    (matches && rest.starts_with([' ', '\t'])).then_some(rest)
}

fn read_conf(
    fs: &dyn Rootfs,
    file: &Path,
    depth: usize,
    seen_files: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) {
    if depth > MAX_INCLUDE_DEPTH {
        return;
    }
    let Some((real, text)) = read_text(fs, file) else {
        return;
    };
    if !seen_files.insert(real) {
        return;
    }
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = keyword(line, "include", false) {
            for pattern in rest.split([' ', '\t']).filter(|p| !p.is_empty()) {
                // Relative patterns are relative to the including file's
                // directory, as in ldconfig's parse_conf_include.
                let pattern = match file.parent() {
                    Some(dir) if !pattern.starts_with('/') => dir.join(pattern),
                    _ => PathBuf::from(pattern),
                };
                for inc in glob(fs, &pattern) {
                    read_conf(fs, &inc, depth + 1, seen_files, out);
                }
            }
        } else if keyword(line, "hwcap", true).is_some() {
            continue;
        } else {
            let dir = line.split('=').next().unwrap_or("").trim_end();
            let dir = dir.trim_end_matches('/');
            if dir.starts_with('/') {
                out.push(PathBuf::from(dir));
            } else if line.starts_with('/') {
                // All slashes: the root directory.
                out.push(PathBuf::from("/"));
            }
        }
    }
}

/// Expands `*` and `?` in the components of an absolute pattern against
/// the image, like glob(3): sorted, hidden names only for a pattern
/// starting with `.`, only existing entries. Directories are resolved
/// through symlinks before listing, as the kernel would.
pub fn glob(fs: &dyn Rootfs, pattern: &Path) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from("/")];
    for comp in pattern.components() {
        let name = match comp {
            Component::Normal(n) => n.as_bytes(),
            Component::ParentDir => b"..".as_slice(),
            _ => continue,
        };
        let wild = is_wild(name).then(|| Wildcard::new(name));
        let mut next = Vec::new();
        for base in &current {
            let Some(wild) = &wild else {
                next.push(base.join(OsStr::from_bytes(name)));
                continue;
            };
            let Ok(Some(dir)) = resolve(fs, base, true) else {
                continue;
            };
            let Ok(names) = fs.list(&dir.path) else {
                continue;
            };
            for n in names {
                let nb = n.as_bytes();
                if nb.first() == Some(&b'.') && name.first() != Some(&b'.') {
                    continue;
                }
                if wild.matches(nb) {
                    next.push(base.join(&n));
                }
            }
        }
        current = next;
    }
    current.retain(|p| matches!(resolve(fs, p, true), Ok(Some(_))));
    current
}

/// One component of a glob(3) pattern (`*`, `?`, `[...]`, `\` escapes;
/// no `{a,b}`: glibc's ld.so globs without GLOB_BRACE), matched by
/// globset. A pattern globset cannot read (not UTF-8, an unclosed `[`)
/// matches only itself.
struct Wildcard(Option<globset::GlobMatcher>, Vec<u8>);

impl Wildcard {
    fn new(pattern: &[u8]) -> Wildcard {
        let matcher = std::str::from_utf8(pattern).ok().and_then(|p| {
            let p = p.replace('{', "[{]").replace('}', "[}]");
            globset::GlobBuilder::new(&p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .ok()
                .map(|g| g.compile_matcher())
        });
        Wildcard(matcher, pattern.to_vec())
    }

    fn matches(&self, name: &[u8]) -> bool {
        match &self.0 {
            Some(m) => m.is_match(Path::new(OsStr::from_bytes(name))),
            None => self.1 == name,
        }
    }
}

fn is_wild(name: &[u8]) -> bool {
    name.iter().any(|&c| matches!(c, b'*' | b'?' | b'['))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dir::DirRootfs;

    /// Builds a cache in glibc's layout: `compat` puts an old-format
    /// table (with `pad` to 8) in front, as ldconfig's compat mode does.
    fn build(entries: &[(&str, u32, u64, &str)], compat: bool, big: bool) -> Vec<u8> {
        let put32 = |v: &mut Vec<u8>, x: u32| {
            v.extend(if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        let put64 = |v: &mut Vec<u8>, x: u64| {
            v.extend(if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        let mut strings = Vec::new();
        let mut offs = Vec::new();
        let table = NEW_HEADER + entries.len() * NEW_ENTRY;
        for (k, _, _, v) in entries {
            let ko = table + strings.len();
            strings.extend_from_slice(k.as_bytes());
            strings.push(0);
            let vo = table + strings.len();
            strings.extend_from_slice(v.as_bytes());
            strings.push(0);
            offs.push((ko as u32, vo as u32));
        }
        let mut new = Vec::new();
        new.extend_from_slice(NEW_MAGIC);
        put32(&mut new, entries.len() as u32);
        put32(&mut new, strings.len() as u32);
        new.extend([if big { 3 } else { 2 }, 0, 0, 0]);
        put32(&mut new, 0);
        new.extend([0; 12]);
        for ((_, flags, hwcap, _), (ko, vo)) in entries.iter().zip(&offs) {
            put32(&mut new, *flags);
            put32(&mut new, *ko);
            put32(&mut new, *vo);
            put32(&mut new, 0);
            put64(&mut new, *hwcap);
        }
        new.extend(strings);
        if !compat {
            return new;
        }
        let mut out = Vec::new();
        out.extend_from_slice(OLD_MAGIC);
        out.push(0);
        put32(&mut out, 1);
        // One old entry (its strings would follow; contents unused).
        put32(&mut out, 0x0303);
        put32(&mut out, 0);
        put32(&mut out, 0);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        out.extend(new);
        out
    }

    fn sample() -> Vec<(&'static str, u32, u64, &'static str)> {
        vec![
            (
                "libc.so.6",
                0x0303,
                (1 << 62) | 1,
                "/usr/lib/glibc-hwcaps/x86-64-v3/libc.so.6",
            ),
            ("libc.so.6", 0x0303, 0, "/lib/x86_64-linux-gnu/libc.so.6"),
            ("libc.so.6", 0x0003, 0, "/lib/i386-linux-gnu/libc.so.6"),
            ("libc.so.6", 0x0a03, 0, "/lib/aarch64-linux-gnu/libc.so.6"),
            ("libz.so.1", 0x0303, 0, "/usr/lib64/libz.so.1"),
        ]
    }

    #[test]
    fn new_and_compat_formats_in_both_byte_orders() {
        for compat in [false, true] {
            for big in [false, true] {
                let c = LdCache::parse(&build(&sample(), compat, big)).unwrap();
                assert_eq!(c.len(), 2, "compat={compat} big={big}");
                assert_eq!(
                    c.lookup("libc.so.6", true, EM_X86_64),
                    Some("/lib/x86_64-linux-gnu/libc.so.6")
                );
                assert_eq!(
                    c.lookup("libc.so.6", false, EM_386),
                    Some("/lib/i386-linux-gnu/libc.so.6")
                );
                assert_eq!(
                    c.lookup("libc.so.6", true, EM_AARCH64),
                    Some("/lib/aarch64-linux-gnu/libc.so.6")
                );
                // x32 has no entry; neither has an unknown soname.
                assert_eq!(c.lookup("libc.so.6", false, EM_X86_64), None);
                assert_eq!(c.lookup("libnope.so", true, EM_X86_64), None);
                assert_eq!(c.entries("libc.so.6").len(), 4);
            }
        }
    }

    #[test]
    fn isa_level_bits_do_not_make_an_entry_cpu_specific() {
        let c = LdCache::parse(&build(
            &[
                ("libx.so", 0x0303, (1 << 62) | (3 << 32), "/v3/libx.so"),
                ("libx.so", 0x0303, 1 << 32, "/base/libx.so"),
            ],
            false,
            false,
        ))
        .unwrap();
        assert_eq!(c.lookup("libx.so", true, EM_X86_64), Some("/base/libx.so"));
    }

    #[test]
    fn hwcap_only_entry_is_still_found() {
        let c = LdCache::parse(&build(
            &[("libm.so.6", 0x0303, (1 << 62) | 2, "/opt/v3/libm.so.6")],
            false,
            false,
        ))
        .unwrap();
        assert_eq!(
            c.lookup("libm.so.6", true, EM_X86_64),
            Some("/opt/v3/libm.so.6")
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(matches!(
            LdCache::parse(b"garbage"),
            Err(LdCacheError::BadMagic)
        ));
        assert!(matches!(LdCache::parse(b""), Err(LdCacheError::BadMagic)));
        let good = build(&sample(), true, false);
        // Every proper prefix lacks at least the last string's NUL, so
        // each is an error; none panics.
        for n in 0..good.len() {
            let r = LdCache::parse(&good[..n]);
            assert!(r.is_err(), "prefix {n} parsed");
        }
        assert!(LdCache::parse(&good).is_ok());
        let new = build(&sample(), false, false);
        // An entry count far past the end.
        let mut huge = new.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&huge),
            Err(LdCacheError::Truncated(_))
        ));
        // A string offset past the end.
        let mut bad = new.clone();
        bad[NEW_HEADER + 4..NEW_HEADER + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(matches!(
            LdCache::parse(&bad),
            Err(LdCacheError::BadString { index: 0, .. })
        ));
        // Marked invalid by ldconfig.
        let mut inv = new.clone();
        inv[28] = 1;
        assert!(matches!(
            LdCache::parse(&inv),
            Err(LdCacheError::MarkedInvalid)
        ));
        // Old format alone.
        let mut old = OLD_MAGIC.to_vec();
        old.extend([0, 0, 0, 0, 0]);
        assert!(matches!(
            LdCache::parse(&old),
            Err(LdCacheError::OldFormatOnly)
        ));
        // Pseudo-random bytes behind each magic never panic.
        let mut x: u32 = 0x1234_5678;
        for round in 0..2000 {
            let mut b = if round % 2 == 0 {
                NEW_MAGIC.to_vec()
            } else {
                OLD_MAGIC.to_vec()
            };
            for _ in 0..(round % 200) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b.push((x % 7) as u8 * 40);
            }
            let _ = LdCache::parse(&b);
        }
    }

    #[test]
    fn this_hosts_cache() {
        let fs = DirRootfs::open(Path::new("/")).unwrap();
        let Some(cache) = LdCache::load(&fs).unwrap() else {
            panic!("this host has no /etc/ld.so.cache");
        };
        assert!(!cache.is_empty());
        let libc = cache.lookup("libc.so.6", true, EM_X86_64).unwrap();
        assert!(Path::new(libc).exists(), "{libc}");
        assert!(libc.starts_with('/'));
    }

    #[test]
    fn conf_with_includes_globs_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("etc/ld.so.conf.d")).unwrap();
        std::fs::create_dir_all(r.join("etc/more")).unwrap();
        std::fs::write(
            r.join("etc/ld.so.conf"),
            "# top\n/opt/first/lib/  # trailing\n\
             include /etc/ld.so.conf.d/*.conf\n\
             include more/x?.conf\n\
             hwcap 1 nosegneg\n/usr/libc5=libc5\n/opt/first/lib\n\
             include /etc/ld.so.conf\n",
        )
        .unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/b.conf"), "/opt/b\n").unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/a.conf"), "\t/opt/a\n").unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/.hidden.conf"), "/opt/h\n").unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/c.txt"), "/opt/c\n").unwrap();
        std::fs::write(r.join("etc/more/x1.conf"), "/opt/x1\n").unwrap();
        std::fs::write(r.join("etc/more/x12.conf"), "/opt/x12\n").unwrap();
        let fs = DirRootfs::open(r).unwrap();
        assert_eq!(
            conf_dirs(&fs),
            [
                "/opt/first/lib",
                "/opt/a",
                "/opt/b",
                "/opt/x1",
                "/usr/libc5"
            ]
            .map(PathBuf::from)
            .to_vec()
        );
    }

    #[test]
    fn this_hosts_conf() {
        let fs = DirRootfs::open(Path::new("/")).unwrap();
        let dirs = conf_dirs(&fs);
        if Path::new("/etc/ld.so.conf.d/x86_64-linux-gnu.conf").exists() {
            assert!(dirs.contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu")));
        }
    }

    #[test]
    fn wildcards() {
        let wildcard = |p: &[u8], n: &[u8]| Wildcard::new(p).matches(n);
        assert!(wildcard(b"*.conf", b"a.conf"));
        assert!(wildcard(b"*.conf", b".conf"));
        assert!(!wildcard(b"*.conf", b"a.conf.bak"));
        assert!(wildcard(b"a*b*c", b"aXXbYYbc"));
        assert!(wildcard(b"x?", b"x1"));
        assert!(!wildcard(b"x?", b"x12"));
        assert!(wildcard(b"*", b""));
        assert!(!wildcard(b"?", b""));
        // Classes as glob(3) has them; braces and a bad class are literal.
        assert!(wildcard(b"[0-9]*.conf", b"10-x.conf"));
        assert!(!wildcard(b"[0-9]*.conf", b"x.conf"));
        assert!(wildcard(b"{a,b}*", b"{a,b}.conf"));
        assert!(!wildcard(b"{a,b}*", b"a.conf"));
        assert!(wildcard(b"x[", b"x["));
        assert!(wildcard(b"\\*", b"*") && !wildcard(b"\\*", b"a"));
        // A pattern that is not UTF-8 names only itself.
        assert!(wildcard(b"a\xff*", b"a\xff*") && !wildcard(b"a\xff*", b"a\xffb"));
    }
}
