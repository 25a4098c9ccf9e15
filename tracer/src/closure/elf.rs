//! ELF dependencies: the interpreter and the shared libraries a program
//! needs, found in the image the way glibc's ld.so would find them.
//!
//! A trace only sees the libraries one run loaded; this closure adds the
//! ones any run would load (all of `DT_NEEDED`, transitively), so a
//! minimal image never lacks a library for a code path the trace missed.
//! Everything read comes from the image and is untrusted: offsets are
//! checked, and malformed objects are skipped, not trusted.
use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    io,
    path::{Component, Path, PathBuf},
    rc::Rc,
};

use goblin::{
    container::{Container, Ctx},
    elf::{
        Dynamic, Elf, ProgramHeader,
        dynamic::{DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB},
        header::{EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB},
        program_header::{PT_DYNAMIC, PT_INTERP, PT_LOAD},
    },
};

use super::{
    ldcache::{LdCache, LdCacheError, conf_dirs},
    resolve::{ResolveError, resolve},
};
use crate::source::rootfs::{Kind, Rootfs};

const EM_386: u16 = 3;
const EM_PPC: u16 = 20;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
const EM_LOONGARCH: u16 = 258;

/// How much of a file is read first: headers, and for most objects the
/// dynamic section and its strings too. Larger objects whose dynamic
/// section lies further in are then read whole.
const HEAD: usize = 2 << 20;

/// What the loader needs to know about one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfInfo {
    /// `PT_INTERP`, as written (e.g. `/lib64/ld-linux-x86-64.so.2`).
    pub interp: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_RPATH`, split on `:` (the loader ignores it when there is a
    /// `DT_RUNPATH`; it is kept here as written).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH`, split on `:`.
    pub runpath: Vec<String>,
    /// `ELFCLASS64`.
    pub is_64: bool,
    /// `e_machine` (62 for x86-64, 183 for aarch64).
    pub machine: u16,
}

/// Why an object could not be parsed from the bytes at hand.
#[derive(Debug, PartialEq, Eq)]
enum Unparsed {
    /// Not ELF, or malformed.
    Invalid,
    /// Something lies past the end of the bytes: more of the file may help.
    Short,
}

/// An object as the closure keeps it.
#[derive(Debug)]
struct Object {
    info: ElfInfo,
    soname: Option<String>,
}

/// Parses the ELF header, program headers and dynamic section. `None`
/// when `bytes` is not ELF or is malformed (or cut short).
pub fn parse(bytes: &[u8]) -> Option<ElfInfo> {
    parse_object(bytes).ok().map(|o| o.info)
}

/// `bytes[off..off+len]`, or why not.
fn range(bytes: &[u8], off: u64, len: u64) -> Result<&[u8], Unparsed> {
    let start = usize::try_from(off).map_err(|_| Unparsed::Invalid)?;
    let len = usize::try_from(len).map_err(|_| Unparsed::Invalid)?;
    let end = start.checked_add(len).ok_or(Unparsed::Invalid)?;
    bytes.get(start..end).ok_or(Unparsed::Short)
}

/// The file offset of a virtual address, through the `PT_LOAD` segments.
fn vaddr_to_offset(phdrs: &[ProgramHeader], addr: u64) -> Option<u64> {
    phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .find(|p| addr >= p.p_vaddr && addr - p.p_vaddr < p.p_filesz)
        .and_then(|p| p.p_offset.checked_add(addr - p.p_vaddr))
}

/// The NUL-terminated string at `off` in a string table.
fn strtab_str(strtab: &[u8], off: u64) -> Option<String> {
    let s = strtab.get(usize::try_from(off).ok()?..)?;
    let end = s.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// Only program headers and the dynamic section are read (what the
/// loader uses); section headers and symbols are not needed and are
/// often stripped or mangled.
fn parse_object(bytes: &[u8]) -> Result<Object, Unparsed> {
    if !bytes.starts_with(b"\x7fELF") {
        return Err(Unparsed::Invalid);
    }
    let (is_64, ehsize) = match bytes.get(EI_CLASS) {
        Some(&ELFCLASS64) => (true, 64),
        Some(&ELFCLASS32) => (false, 52),
        Some(_) => return Err(Unparsed::Invalid),
        None => return Err(Unparsed::Short),
    };
    if bytes.len() < ehsize {
        return Err(Unparsed::Short);
    }
    let header = Elf::parse_header(bytes).map_err(|_| Unparsed::Invalid)?;
    let container = if is_64 {
        Container::Big
    } else {
        Container::Little
    };
    let endian = header.endianness().map_err(|_| Unparsed::Invalid)?;
    let ctx = Ctx::new(container, endian);
    let phnum = usize::from(header.e_phnum);
    let phentsize = ProgramHeader::size(ctx);
    if phnum > 0 && usize::from(header.e_phentsize) != phentsize {
        return Err(Unparsed::Invalid);
    }
    range(bytes, header.e_phoff, (phnum * phentsize) as u64)?;
    let phoff = usize::try_from(header.e_phoff).map_err(|_| Unparsed::Invalid)?;
    let phdrs = ProgramHeader::parse(bytes, phoff, phnum, ctx).map_err(|_| Unparsed::Invalid)?;

    let mut info = ElfInfo {
        is_64,
        machine: header.e_machine,
        ..ElfInfo::default()
    };
    if let Some(p) = phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        let raw = range(bytes, p.p_offset, p.p_filesz)?;
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        info.interp = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
    }
    let mut soname = None;
    if let Some(p) = phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) {
        range(bytes, p.p_offset, p.p_filesz)?;
        let dynamic = Dynamic::parse(bytes, &phdrs, ctx)
            .map_err(|_| Unparsed::Invalid)?
            .ok_or(Unparsed::Invalid)?;
        let tag = |t: u64| dynamic.dyns.iter().find(|d| d.d_tag == t).map(|d| d.d_val);
        let (Some(addr), Some(size)) = (tag(DT_STRTAB), tag(DT_STRSZ)) else {
            return Err(Unparsed::Invalid);
        };
        let off = vaddr_to_offset(&phdrs, addr).ok_or(Unparsed::Invalid)?;
        let strtab = range(bytes, off, size)?;
        for d in &dynamic.dyns {
            let Some(s) = [DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH]
                .contains(&d.d_tag)
                .then(|| strtab_str(strtab, d.d_val))
                .flatten()
            else {
                continue;
            };
            let split = |s: &str| s.split(':').map(str::to_owned).collect::<Vec<_>>();
            match d.d_tag {
                DT_NEEDED => info.needed.push(s),
                DT_SONAME => soname = Some(s),
                DT_RPATH => info.rpath.extend(split(&s)),
                _ => info.runpath.extend(split(&s)),
            }
        }
    }
    Ok(Object { info, soname })
}

/// Whether `path` leads to a regular ELF file of this class and machine:
/// the loader skips other candidates and goes on searching.
fn usable(fs: &dyn Rootfs, path: &Path, is_64: bool, machine: u16) -> bool {
    let Ok(Some(r)) = resolve(fs, path, true) else {
        return false;
    };
    if !matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Regular) {
        return false;
    }
    let Ok(head) = fs.read_head(&r.path, 20) else {
        return false;
    };
    if head.len() < 20 || !head.starts_with(b"\x7fELF") {
        return false;
    }
    let class = if is_64 { ELFCLASS64 } else { ELFCLASS32 };
    let m = [head[18], head[19]];
    let em = match head[EI_DATA] {
        ELFDATA2LSB => u16::from_le_bytes(m),
        ELFDATA2MSB => u16::from_be_bytes(m),
        _ => return false,
    };
    head[EI_CLASS] == class && em == machine
}

/// Multiarch triplets (Debian layout) for a class and machine.
fn triplets(machine: u16, is_64: bool) -> &'static [&'static str] {
    match (machine, is_64) {
        (EM_X86_64, true) => &["x86_64-linux-gnu"],
        (EM_X86_64, false) => &["x86_64-linux-gnux32"],
        (EM_386, false) => &["i386-linux-gnu"],
        (EM_AARCH64, true) => &["aarch64-linux-gnu"],
        (EM_ARM, false) => &["arm-linux-gnueabihf", "arm-linux-gnueabi"],
        (EM_PPC64, true) => &["powerpc64le-linux-gnu", "powerpc64-linux-gnu"],
        (EM_PPC, false) => &["powerpc-linux-gnu"],
        (EM_S390, true) => &["s390x-linux-gnu"],
        (EM_RISCV, true) => &["riscv64-linux-gnu"],
        (EM_LOONGARCH, true) => &["loongarch64-linux-gnu"],
        _ => &[],
    }
}

/// The loader's built-in directories for objects of this class and
/// machine: the multiarch ones (Debian, Ubuntu), then `lib64` (Fedora,
/// SUSE) or `lib32`, then plain `lib`. Candidates of another class are
/// rejected anyway, so covering every layout costs only a lookup.
fn default_dirs(machine: u16, is_64: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for t in triplets(machine, is_64) {
        out.push(PathBuf::from(format!("/lib/{t}")));
        out.push(PathBuf::from(format!("/usr/lib/{t}")));
    }
    let wide = if is_64 { "64" } else { "32" };
    out.push(PathBuf::from(format!("/lib{wide}")));
    out.push(PathBuf::from(format!("/usr/lib{wide}")));
    out.push(PathBuf::from("/lib"));
    out.push(PathBuf::from("/usr/lib"));
    out
}

/// What `$LIB` may stand for: distributions build glibc with different
/// values (`lib64`, `lib/x86_64-linux-gnu`, `lib`), so each is tried.
fn lib_values(machine: u16, is_64: bool) -> Vec<String> {
    let mut out = Vec::new();
    if is_64 {
        out.push("lib64".to_owned());
    }
    out.extend(triplets(machine, is_64).iter().map(|t| format!("lib/{t}")));
    out.push("lib".to_owned());
    out
}

/// What `$PLATFORM` (the kernel's `AT_PLATFORM`) is for a machine.
fn platform_values(machine: u16, is_64: bool) -> Vec<String> {
    let p = match (machine, is_64) {
        (EM_X86_64, true) => "x86_64",
        (EM_386, false) => "i686",
        (EM_AARCH64, true) => "aarch64",
        _ => return Vec::new(),
    };
    vec![p.to_owned()]
}

/// Expands the dynamic string tokens of one search-path entry:
/// `$ORIGIN` (the directory of the object that carries the entry),
/// `$LIB` and `$PLATFORM`, bare or in braces. An entry may expand to
/// several directories; an entry with a token that cannot be expanded is
/// dropped, as ld.so drops it; unknown `$NAME`s stay as written.
fn expand(entry: &str, origin: &Path, machine: u16, is_64: bool) -> Vec<String> {
    let mut outs = vec![String::new()];
    let mut rest = entry;
    while let Some(i) = rest.find('$') {
        for o in &mut outs {
            o.push_str(&rest[..i]);
        }
        let after = &rest[i + 1..];
        let (name, used) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(j) => (&braced[..j], j + 2),
                None => ("", 0),
            },
            None => {
                let n = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..n], n)
            }
        };
        let values = match name {
            "ORIGIN" => match origin.to_str() {
                Some(o) => vec![o.to_owned()],
                None => Vec::new(),
            },
            "LIB" => lib_values(machine, is_64),
            "PLATFORM" => platform_values(machine, is_64),
            _ => {
                for o in &mut outs {
                    o.push('$');
                }
                rest = after;
                continue;
            }
        };
        if values.is_empty() {
            return Vec::new();
        }
        outs = outs
            .iter()
            .flat_map(|o| values.iter().map(move |v| format!("{o}{v}")))
            .collect();
        rest = &after[used..];
    }
    for o in &mut outs {
        o.push_str(rest);
    }
    outs
}

/// A search path as searched: lexically cleaned (`//`, `.`), and with
/// `..` resolved in the image (after a symlink, `..` is the parent of its
/// target, so it cannot be done lexically). Only the part up to the last
/// `..` is resolved, so symlinks after it stay visible to the caller.
fn clean(fs: &dyn Rootfs, path: &Path) -> Option<PathBuf> {
    let comps: Vec<Component> = path.components().collect();
    let last_up = comps
        .iter()
        .rposition(|c| matches!(c, Component::ParentDir));
    let (mut out, rest) = match last_up {
        Some(i) => {
            let prefix: PathBuf = comps[..=i].iter().collect();
            let r = resolve(fs, &Path::new("/").join(prefix), true).ok()??;
            (r.path, &comps[i + 1..])
        }
        None => (PathBuf::from("/"), &comps[..]),
    };
    for c in rest {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    Some(out)
}

fn origin(object: &Path) -> &Path {
    object.parent().unwrap_or(Path::new("/"))
}

/// The library search of one image: its ld.so.cache, its ld.so.conf
/// directories and (optionally) an `LD_LIBRARY_PATH` from its
/// environment. Built once per image and reused for every lookup.
#[derive(Debug, Default)]
pub struct LibSearch {
    cache: Option<LdCache>,
    cache_error: Option<LdCacheError>,
    conf: Vec<PathBuf>,
    library_path: Vec<String>,
}

impl LibSearch {
    /// Loads the image's ld.so.cache (if it has a readable one) and its
    /// ld.so.conf directories. The default directories depend on the
    /// class and machine of the object searched for, so they are chosen
    /// per lookup.
    pub fn new(fs: &dyn Rootfs) -> LibSearch {
        let (cache, cache_error) = match LdCache::load(fs) {
            Ok(c) => (c, None),
            Err(e) => (None, Some(e)),
        };
        LibSearch {
            cache,
            cache_error,
            conf: conf_dirs(fs),
            library_path: Vec::new(),
        }
    }

    /// Adds an `LD_LIBRARY_PATH` (from the image's configured
    /// environment), searched after `DT_RPATH` and before `DT_RUNPATH`.
    pub fn with_library_path(mut self, spec: &str) -> LibSearch {
        self.library_path = spec
            .split([':', ';'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        self
    }

    /// The parsed ld.so.cache, if the image has one.
    pub fn cache(&self) -> Option<&LdCache> {
        self.cache.as_ref()
    }

    /// Why the image's ld.so.cache could not be used, if it exists but
    /// is broken (worth a warning: lookups then rely on directories).
    pub fn cache_error(&self) -> Option<&LdCacheError> {
        self.cache_error.as_ref()
    }

    /// Every path the loader would try for `name` needed by `needed_by`,
    /// in order, before checking any of them.
    pub fn candidates(
        &self,
        fs: &dyn Rootfs,
        name: &str,
        needed_by: &Path,
        info: &ElfInfo,
    ) -> Vec<PathBuf> {
        self.candidates_in(fs, name, needed_by, info, &[], needed_by)
    }

    /// Resolves a `DT_NEEDED` name as ld.so does: a name with `/` is a
    /// path; otherwise `DT_RPATH` (only without `DT_RUNPATH`),
    /// `LD_LIBRARY_PATH`, `DT_RUNPATH`, ld.so.cache, the default
    /// directories, and last the ld.so.conf directories (for a stale or
    /// missing cache). The first candidate that is a regular ELF file of
    /// the same class and machine wins; it is returned as searched, so
    /// symlinks on the way stay visible to the caller.
    pub fn find(
        &self,
        fs: &dyn Rootfs,
        name: &str,
        needed_by: &Path,
        info: &ElfInfo,
    ) -> Option<PathBuf> {
        self.find_in(fs, name, needed_by, info, &[], needed_by)
    }

    fn find_in(
        &self,
        fs: &dyn Rootfs,
        name: &str,
        needed_by: &Path,
        info: &ElfInfo,
        inherited: &[(&Path, &[String])],
        exe: &Path,
    ) -> Option<PathBuf> {
        self.candidates_in(fs, name, needed_by, info, inherited, exe)
            .into_iter()
            .find(|c| usable(fs, c, info.is_64, info.machine))
    }

    /// `inherited`: the `DT_RPATH`s of the objects that loaded
    /// `needed_by`, nearest first, each with the object it came from (its
    /// `$ORIGIN`); `exe` is the program, the `$ORIGIN` of
    /// `LD_LIBRARY_PATH`.
    fn candidates_in(
        &self,
        fs: &dyn Rootfs,
        name: &str,
        needed_by: &Path,
        info: &ElfInfo,
        inherited: &[(&Path, &[String])],
        exe: &Path,
    ) -> Vec<PathBuf> {
        if name.is_empty() {
            return Vec::new();
        }
        if name.contains('/') {
            // Used as is. A relative one is relative to the process's
            // working directory, unknown here: taken from the root.
            return clean(fs, &Path::new("/").join(name)).into_iter().collect();
        }
        let (machine, is_64) = (info.machine, info.is_64);
        let mut out = Vec::new();
        let search = |entries: &[String], origin: &Path, out: &mut Vec<PathBuf>| {
            for e in entries {
                for dir in expand(e, origin, machine, is_64) {
                    // Relative entries are relative to the working
                    // directory: unknown, so skipped.
                    if dir.starts_with('/')
                        && let Some(p) = clean(fs, &Path::new(&dir).join(name))
                    {
                        out.push(p);
                    }
                }
            }
        };
        if info.runpath.is_empty() {
            search(&info.rpath, origin(needed_by), &mut out);
            for (owner, rpath) in inherited {
                search(rpath, origin(owner), &mut out);
            }
        }
        search(&self.library_path, origin(exe), &mut out);
        search(&info.runpath, origin(needed_by), &mut out);
        if let Some(p) = self
            .cache
            .as_ref()
            .and_then(|c| c.lookup(name, is_64, machine))
            .filter(|p| p.starts_with('/'))
            .and_then(|p| clean(fs, Path::new(p)))
        {
            out.push(p);
        }
        for dir in default_dirs(machine, is_64).iter().chain(&self.conf) {
            if let Some(p) = clean(fs, &dir.join(name)) {
                out.push(p);
            }
        }
        let mut seen = HashSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }
}

/// The interpreters and libraries the roots need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfClosure {
    /// Each object found, by the path it was found under (symlinks on
    /// the way kept), with the object that first needed it.
    pub found: BTreeMap<PathBuf, PathBuf>,
    /// Needed names (or interpreters) not found in the image, with the
    /// object that needed them: the program would fail to start.
    pub missing: Vec<(String, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// One loaded object's place in the loader chain, for `DT_RPATH`
/// inheritance: glibc searches the `DT_RPATH` of the object needing a
/// name, then of the object that loaded that one, and so on up to the
/// program.
struct Loader {
    path: PathBuf,
    /// Empty when the object has a `DT_RUNPATH` (glibc then drops its
    /// `DT_RPATH` altogether).
    rpath: Vec<String>,
    parent: Option<Rc<Loader>>,
}

struct Node {
    path: PathBuf,
    object: Rc<Object>,
    loader: Rc<Loader>,
}

/// Parsed objects by real path, so each file is read once for all roots.
type Objects = HashMap<PathBuf, Option<Rc<Object>>>;

fn load(
    fs: &dyn Rootfs,
    real: &Path,
    objects: &mut Objects,
) -> Result<Option<Rc<Object>>, ElfError> {
    if let Some(o) = objects.get(real) {
        return Ok(o.clone());
    }
    let io_err = |source| ElfError::Io {
        path: real.to_path_buf(),
        source,
    };
    let object = match fs.meta(real).map_err(io_err)? {
        Some(m) if m.kind == Kind::Regular => {
            let head = fs.read_head(real, HEAD).map_err(io_err)?;
            match parse_object(&head) {
                Ok(o) => Some(Rc::new(o)),
                Err(Unparsed::Short) if (head.len() as u64) < m.size => {
                    let all = fs.read_all(real).map_err(io_err)?;
                    parse_object(&all).ok().map(Rc::new)
                }
                Err(_) => None,
            }
        }
        _ => None,
    };
    objects.insert(real.to_path_buf(), object.clone());
    Ok(object)
}

fn effective_rpath(info: &ElfInfo) -> Vec<String> {
    if info.runpath.is_empty() {
        info.rpath.clone()
    } else {
        Vec::new()
    }
}

/// The ELF closure of `roots` with the image's own library search.
pub fn closure(fs: &dyn Rootfs, roots: &[PathBuf]) -> Result<ElfClosure, ElfError> {
    closure_with(fs, &LibSearch::new(fs), roots)
}

/// The ELF closure of `roots` (ELF files, by real path; others are
/// ignored): each root's interpreter and, breadth-first as ld.so loads
/// them, every `DT_NEEDED` library, transitively. Each root is a process
/// of its own: a needed name already loaded in it (by soname or by the
/// name it was loaded under) is not searched again, as in ld.so, which
/// also ends cycles.
pub fn closure_with(
    fs: &dyn Rootfs,
    search: &LibSearch,
    roots: &[PathBuf],
) -> Result<ElfClosure, ElfError> {
    let mut objects = Objects::new();
    let mut out = ElfClosure::default();
    let mut missing_seen = HashSet::new();
    let mut note_missing = |name: &str, by: &Path, out: &mut ElfClosure| {
        if missing_seen.insert((name.to_owned(), by.to_path_buf())) {
            out.missing.push((name.to_owned(), by.to_path_buf()));
        }
    };
    for root in roots {
        let root = Path::new("/").join(root);
        let Some(real) = resolve(fs, &root, true)? else {
            continue;
        };
        let Some(object) = load(fs, &real.path, &mut objects)? else {
            continue;
        };
        // Names this process has loaded, and the files behind them.
        let mut names: HashSet<String> = HashSet::new();
        let mut files: HashSet<PathBuf> = HashSet::from([real.path.clone()]);
        names.extend(object.soname.clone());
        let exe = Rc::new(Loader {
            path: root.clone(),
            rpath: effective_rpath(&object.info),
            parent: None,
        });
        let mut queue = VecDeque::new();
        if let Some(interp) = &object.info.interp {
            let path = clean(fs, &Path::new("/").join(interp));
            let loaded = match &path {
                Some(p) => match resolve(fs, p, true) {
                    Ok(Some(r)) => load(fs, &r.path, &mut objects)?.map(|o| (o, r.path)),
                    _ => None,
                },
                None => None,
            };
            match (path, loaded) {
                (Some(path), Some((o, file))) => {
                    out.found.entry(path.clone()).or_insert(root.clone());
                    names.extend(o.soname.clone());
                    names.insert(interp.clone());
                    names.insert(path.to_string_lossy().into_owned());
                    files.insert(file);
                    let loader = Rc::new(Loader {
                        path: path.clone(),
                        rpath: effective_rpath(&o.info),
                        parent: None,
                    });
                    queue.push_back(Node {
                        path,
                        object: o,
                        loader,
                    });
                }
                _ => note_missing(interp, &root, &mut out),
            }
        }
        queue.push_front(Node {
            path: root.clone(),
            object,
            loader: exe.clone(),
        });
        while let Some(node) = queue.pop_front() {
            // RPATHs of the objects above this one, and the program's.
            let mut chain: Vec<(&Path, &[String])> = Vec::new();
            let mut up = node.loader.parent.as_deref();
            let mut saw_exe = Rc::ptr_eq(&node.loader, &exe);
            while let Some(l) = up {
                saw_exe |= std::ptr::eq(l, &*exe);
                chain.push((&l.path, &l.rpath));
                up = l.parent.as_deref();
            }
            if !saw_exe {
                chain.push((&exe.path, &exe.rpath));
            }
            for name in &node.object.info.needed {
                if names.contains(name) {
                    continue;
                }
                let Some(path) =
                    search.find_in(fs, name, &node.path, &node.object.info, &chain, &root)
                else {
                    note_missing(name, &node.path, &mut out);
                    continue;
                };
                names.insert(name.clone());
                names.insert(path.to_string_lossy().into_owned());
                out.found.entry(path.clone()).or_insert(node.path.clone());
                let Some(real) = resolve(fs, &path, true)? else {
                    continue;
                };
                // The same file under another name is the same object.
                if !files.insert(real.path.clone()) {
                    continue;
                }
                let Some(object) = load(fs, &real.path, &mut objects)? else {
                    continue;
                };
                names.extend(object.soname.clone());
                let loader = Rc::new(Loader {
                    path: path.clone(),
                    rpath: effective_rpath(&object.info),
                    parent: Some(node.loader.clone()),
                });
                queue.push_back(Node {
                    path,
                    object,
                    loader,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::dir::DirRootfs;
    use std::os::unix::fs::symlink;

    /// What a synthetic object holds.
    #[derive(Default)]
    pub(crate) struct Spec<'a> {
        pub(crate) class32: bool,
        pub(crate) machine: u16,
        pub(crate) interp: Option<&'a str>,
        pub(crate) needed: &'a [&'a str],
        pub(crate) soname: Option<&'a str>,
        pub(crate) rpath: Option<&'a str>,
        pub(crate) runpath: Option<&'a str>,
    }

    /// A minimal little-endian ELF: header, `PT_LOAD` over the whole
    /// file at address 0, `PT_DYNAMIC`, optional `PT_INTERP`.
    pub(crate) fn synth(s: &Spec) -> Vec<u8> {
        let w64 = !s.class32;
        let machine = if s.machine == 0 { EM_X86_64 } else { s.machine };
        let (ehsize, phentsize, dynent) = if w64 { (64, 56, 16) } else { (52, 32, 8) };
        let nph = 2 + usize::from(s.interp.is_some());
        let mut strtab = vec![0u8];
        let mut dyns: Vec<(u64, u64)> = Vec::new();
        let mut add = |tag: u64, v: &str, dyns: &mut Vec<(u64, u64)>| {
            dyns.push((tag, strtab.len() as u64));
            strtab.extend_from_slice(v.as_bytes());
            strtab.push(0);
        };
        for n in s.needed {
            add(DT_NEEDED, n, &mut dyns);
        }
        if let Some(v) = s.soname {
            add(DT_SONAME, v, &mut dyns);
        }
        if let Some(v) = s.rpath {
            add(DT_RPATH, v, &mut dyns);
        }
        if let Some(v) = s.runpath {
            add(DT_RUNPATH, v, &mut dyns);
        }
        let interp: Vec<u8> = s
            .interp
            .map(|i| [i.as_bytes(), b"\0"].concat())
            .unwrap_or_default();
        let interp_off = ehsize + nph * phentsize;
        let str_off = interp_off + interp.len();
        let dyn_off = (str_off + strtab.len()).next_multiple_of(8);
        dyns.push((DT_STRTAB, str_off as u64));
        dyns.push((DT_STRSZ, strtab.len() as u64));
        dyns.push((0, 0));
        let total = dyn_off + dyns.len() * dynent;

        let mut b = Vec::new();
        let word = |b: &mut Vec<u8>, v: u64| {
            if w64 {
                b.extend(v.to_le_bytes());
            } else {
                b.extend((v as u32).to_le_bytes());
            }
        };
        b.extend(b"\x7fELF");
        b.extend([if w64 { 2 } else { 1 }, 1, 1, 0]);
        b.extend([0; 8]);
        b.extend(3u16.to_le_bytes()); // ET_DYN
        b.extend(machine.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        word(&mut b, 0); // entry
        word(&mut b, ehsize as u64); // phoff
        word(&mut b, 0); // shoff
        b.extend(0u32.to_le_bytes()); // flags
        b.extend((ehsize as u16).to_le_bytes());
        b.extend((phentsize as u16).to_le_bytes());
        b.extend((nph as u16).to_le_bytes());
        b.extend((if w64 { 64u16 } else { 40 }).to_le_bytes());
        b.extend([0; 4]); // shnum, shstrndx
        assert_eq!(b.len(), ehsize);
        let ph = |b: &mut Vec<u8>, ty: u32, off: usize, size: usize| {
            b.extend(ty.to_le_bytes());
            if w64 {
                b.extend(4u32.to_le_bytes()); // flags
            }
            word(b, off as u64);
            word(b, off as u64); // vaddr
            word(b, off as u64); // paddr
            word(b, size as u64);
            word(b, size as u64);
            if !w64 {
                b.extend(4u32.to_le_bytes());
            }
            word(b, 8);
        };
        ph(&mut b, PT_LOAD, 0, total);
        ph(&mut b, PT_DYNAMIC, dyn_off, dyns.len() * dynent);
        if s.interp.is_some() {
            ph(&mut b, PT_INTERP, interp_off, interp.len());
        }
        b.extend(&interp);
        b.extend(&strtab);
        b.resize(dyn_off, 0);
        for (t, v) in dyns {
            word(&mut b, t);
            word(&mut b, v);
        }
        assert_eq!(b.len(), total);
        b
    }

    const LD: &str = "/lib64/ld-linux-x86-64.so.2";

    /// A merged-usr image with programs whose libraries are found through
    /// RUNPATH, inherited RPATH, default directories and ld.so.conf.
    fn image() -> (tempfile::TempDir, DirRootfs) {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let mk = |p: &str, s: &Spec| {
            let p = r.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, synth(s)).unwrap();
        };
        let ln = |target: &str, p: &str| {
            let p = r.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            symlink(target, p).unwrap();
        };
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        ln("usr/lib", "/lib");
        ln("usr/lib64", "/lib64");
        ln(
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/lib64/ld-linux-x86-64.so.2",
        );
        mk(
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            &Spec {
                soname: Some("ld-linux-x86-64.so.2"),
                ..Spec::default()
            },
        );
        mk(
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            &Spec {
                soname: Some("libc.so.6"),
                needed: &["ld-linux-x86-64.so.2"],
                ..Spec::default()
            },
        );
        mk(
            "/app/bin/prog",
            &Spec {
                interp: Some(LD),
                needed: &["libfoo.so.1", "libc.so.6", "libextra.so"],
                runpath: Some("$ORIGIN/../lib"),
                ..Spec::default()
            },
        );
        mk(
            "/app/lib/libfoo.so.1.2",
            &Spec {
                soname: Some("libfoo.so.1"),
                needed: &["libbar.so", "libcyc.so", "libc.so.6"],
                ..Spec::default()
            },
        );
        ln("libfoo.so.1.2", "/app/lib/libfoo.so.1");
        // Not reachable from libfoo: RUNPATH is not inherited.
        mk("/app/lib/libbar.so", &Spec::default());
        // A 32-bit libc in the RUNPATH directory: skipped.
        mk(
            "/app/lib/libc.so.6",
            &Spec {
                class32: true,
                machine: EM_386,
                ..Spec::default()
            },
        );
        // A cycle back to libfoo, ended by its soname.
        mk(
            "/usr/lib/x86_64-linux-gnu/libcyc.so",
            &Spec {
                needed: &["libfoo.so.1"],
                ..Spec::default()
            },
        );
        // Only in a directory from ld.so.conf.d.
        mk("/opt/extra/libextra.so", &Spec::default());
        std::fs::create_dir_all(r.join("etc/ld.so.conf.d")).unwrap();
        std::fs::write(
            r.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n",
        )
        .unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/extra.conf"), "/opt/extra\n").unwrap();
        // RPATH inherited by libbaz from the program; a path name.
        mk(
            "/app/bin/old",
            &Spec {
                interp: Some(LD),
                needed: &["libbaz.so", "/opt/abs/libabs.so"],
                rpath: Some("/nonexistent:$ORIGIN/../lib2"),
                ..Spec::default()
            },
        );
        mk(
            "/app/lib2/libbaz.so",
            &Spec {
                needed: &["libqux.so"],
                ..Spec::default()
            },
        );
        mk("/app/lib2/libqux.so", &Spec::default());
        mk("/opt/abs/libabs.so", &Spec::default());
        // RPATH ignored because of RUNPATH; a missing interpreter.
        mk(
            "/app/bin/both",
            &Spec {
                interp: Some("/lib/ld-musl-x86_64.so.1"),
                needed: &["libqux.so"],
                rpath: Some("$ORIGIN/../lib2"),
                runpath: Some("/nowhere"),
                ..Spec::default()
            },
        );
        std::fs::write(r.join("app/bin/script"), "#!/bin/sh\n").unwrap();
        let fs = DirRootfs::open(r).unwrap();
        (dir, fs)
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn synthetic_image_closure() {
        let (_d, fs) = image();
        let c = closure(&fs, &[p("/app/bin/prog")]).unwrap();
        let want: BTreeMap<PathBuf, PathBuf> = [
            (LD, "/app/bin/prog"),
            ("/app/lib/libfoo.so.1", "/app/bin/prog"),
            ("/lib/x86_64-linux-gnu/libc.so.6", "/app/bin/prog"),
            ("/opt/extra/libextra.so", "/app/bin/prog"),
            ("/lib/x86_64-linux-gnu/libcyc.so", "/app/lib/libfoo.so.1"),
        ]
        .into_iter()
        .map(|(a, b)| (p(a), p(b)))
        .collect();
        assert_eq!(c.found, want);
        assert_eq!(
            c.missing,
            vec![("libbar.so".to_owned(), p("/app/lib/libfoo.so.1"))]
        );

        let c = closure(&fs, &[p("/app/bin/old"), p("/app/bin/script")]).unwrap();
        assert_eq!(
            c.found.get(&p("/app/lib2/libqux.so")),
            Some(&p("/app/lib2/libbaz.so"))
        );
        assert_eq!(
            c.found.get(&p("/app/lib2/libbaz.so")),
            Some(&p("/app/bin/old"))
        );
        assert_eq!(
            c.found.get(&p("/opt/abs/libabs.so")),
            Some(&p("/app/bin/old"))
        );
        assert!(c.missing.is_empty(), "{:?}", c.missing);

        let c = closure(&fs, &[p("/app/bin/both")]).unwrap();
        assert!(c.found.is_empty(), "{:?}", c.found);
        assert_eq!(
            c.missing,
            vec![
                ("/lib/ld-musl-x86_64.so.1".to_owned(), p("/app/bin/both")),
                ("libqux.so".to_owned(), p("/app/bin/both")),
            ]
        );
        // Non-ELF and absent roots are ignored.
        let c = closure(&fs, &[p("/app/bin/script"), p("/nope")]).unwrap();
        assert_eq!(c, ElfClosure::default());
    }

    #[test]
    fn search_order_and_class_check() {
        let (_d, fs) = image();
        let search = LibSearch::new(&fs);
        assert!(search.cache().is_none());
        let prog = p("/app/bin/prog");
        let info = parse(&std::fs::read(_d.path().join("app/bin/prog")).unwrap()).unwrap();
        assert_eq!(info.runpath, vec!["$ORIGIN/../lib"]);
        assert_eq!(info.interp.as_deref(), Some(LD));
        let cands = search.candidates(&fs, "libc.so.6", &prog, &info);
        assert_eq!(
            cands[..4],
            [
                p("/app/lib/libc.so.6"),
                p("/lib/x86_64-linux-gnu/libc.so.6"),
                p("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                p("/lib64/libc.so.6"),
            ]
        );
        assert_eq!(cands.last(), Some(&p("/opt/extra/libc.so.6")));
        // The 32-bit one in RUNPATH is passed over.
        assert_eq!(
            search.find(&fs, "libc.so.6", &prog, &info),
            Some(p("/lib/x86_64-linux-gnu/libc.so.6"))
        );
        let info32 = ElfInfo {
            is_64: false,
            machine: EM_386,
            ..info.clone()
        };
        assert_eq!(
            search.find(&fs, "libc.so.6", &prog, &info32),
            Some(p("/app/lib/libc.so.6"))
        );
        // RPATH comes first when there is no RUNPATH; LD_LIBRARY_PATH
        // between RPATH and RUNPATH.
        let search = LibSearch::new(&fs).with_library_path("/env/$LIB");
        let rinfo = ElfInfo {
            rpath: vec!["/r".into()],
            runpath: vec![],
            ..info.clone()
        };
        let c = search.candidates(&fs, "x.so", &prog, &rinfo);
        assert_eq!(
            c[..3],
            [
                p("/r/x.so"),
                p("/env/lib64/x.so"),
                p("/env/lib/x86_64-linux-gnu/x.so")
            ]
        );
        let both = ElfInfo {
            rpath: vec!["/r".into()],
            runpath: vec!["/rp".into()],
            ..info
        };
        let c = search.candidates(&fs, "x.so", &prog, &both);
        assert!(!c.contains(&p("/r/x.so")));
        assert_eq!(c[3], p("/rp/x.so"));
    }

    #[test]
    fn token_expansion() {
        let o = Path::new("/app/bin");
        assert_eq!(
            expand("$ORIGIN/../lib", o, EM_X86_64, true),
            ["/app/bin/../lib"]
        );
        assert_eq!(expand("${ORIGIN}/x", o, EM_X86_64, true), ["/app/bin/x"]);
        assert_eq!(expand("$ORIGINAL/x", o, EM_X86_64, true), ["$ORIGINAL/x"]);
        assert_eq!(expand("/a/${FOO}/b", o, EM_X86_64, true), ["/a/${FOO}/b"]);
        assert_eq!(
            expand("/opt/$LIB/$PLATFORM", o, EM_X86_64, true),
            [
                "/opt/lib64/x86_64",
                "/opt/lib/x86_64-linux-gnu/x86_64",
                "/opt/lib/x86_64"
            ]
        );
        assert_eq!(
            expand("/opt/${LIB}", o, EM_386, false),
            ["/opt/lib/i386-linux-gnu", "/opt/lib"]
        );
        // No $PLATFORM known for this machine: the entry is dropped.
        assert!(expand("/p/$PLATFORM", o, EM_S390, true).is_empty());
        assert_eq!(expand("/plain", o, EM_X86_64, true), ["/plain"]);
        assert_eq!(expand("/trailing$", o, EM_X86_64, true), ["/trailing$"]);
    }

    #[test]
    fn dotdot_is_resolved_in_the_image() {
        let (_d, fs) = image();
        // /lib64 -> usr/lib64, so /lib64/.. is /usr.
        assert_eq!(
            clean(&fs, Path::new("/lib64/../lib/x")),
            Some(p("/usr/lib/x"))
        );
        assert_eq!(clean(&fs, Path::new("/a//./b")), Some(p("/a/b")));
        assert_eq!(clean(&fs, Path::new("/nope/../x")), None);
    }

    #[test]
    fn garbage_is_not_elf() {
        assert_eq!(parse(b"not elf"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"\x7fELF"), None);
        let good = synth(&Spec {
            interp: Some(LD),
            needed: &["liba.so"],
            ..Spec::default()
        });
        assert!(parse(&good).is_some());
        for n in 0..good.len() {
            let want = if n < 4 {
                Unparsed::Invalid
            } else {
                Unparsed::Short
            };
            assert_eq!(parse_object(&good[..n]).err(), Some(want), "prefix {n}");
        }
    }

    #[test]
    fn mutated_synthetic_objects_never_panic() {
        let good = synth(&Spec {
            interp: Some(LD),
            needed: &["liba.so", "libb.so"],
            soname: Some("libs.so"),
            rpath: Some("$ORIGIN"),
            runpath: Some("/x:/y"),
            ..Spec::default()
        });
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..(1 + next() % 4) {
                let at = (next() % b.len() as u64) as usize;
                let v = next();
                // Extreme values as often as random ones.
                b[at] = match v % 3 {
                    0 => 0xff,
                    1 => 0,
                    _ => (v >> 8) as u8,
                };
            }
            let _ = parse(&b);
        }
    }

    #[test]
    fn mutated_real_binaries_never_panic() {
        let bytes = std::fs::read("/usr/bin/ls").unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let mut b = bytes.clone();
            for _ in 0..8 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly in the headers, where the offsets are.
                let at = (x as usize >> 8) % if x & 1 == 0 { 256 } else { b.len() };
                b[at] = (x >> 32) as u8;
            }
            let _ = parse(&b);
        }
    }

    #[test]
    fn this_hosts_binaries() {
        let fs = DirRootfs::open(Path::new("/")).unwrap();
        let ls = parse(&std::fs::read("/usr/bin/ls").unwrap()).unwrap();
        assert!(ls.needed.iter().any(|n| n == "libselinux.so.1"));
        assert!(ls.interp.is_some());
        assert!(ls.is_64 && ls.machine == EM_X86_64);

        let py = resolve(&fs, Path::new("/usr/bin/python3.11"), true)
            .unwrap()
            .unwrap()
            .path;
        let c = closure(&fs, std::slice::from_ref(&py)).unwrap();
        assert!(c.missing.is_empty(), "{:?}", c.missing);
        assert_eq!(c.found.get(&p(LD)), Some(&py));
        assert!(
            c.found
                .keys()
                .any(|k| k.file_name() == Some("libc.so.6".as_ref())),
            "{:?}",
            c.found
        );
        for k in c.found.keys() {
            assert!(k.exists(), "{}", k.display());
        }

        let c = closure(&fs, &[p("/usr/bin/ls")]).unwrap();
        assert!(c.missing.is_empty(), "{:?}", c.missing);
        let selinux = c
            .found
            .keys()
            .find(|k| k.file_name() == Some("libselinux.so.1".as_ref()))
            .expect("libselinux.so.1");
        assert_eq!(c.found[selinux], p("/usr/bin/ls"));
    }

    #[test]
    fn large_objects_are_read_whole() {
        // libc's dynamic section lies far from the start: a short head
        // asks for more rather than failing.
        let fs = DirRootfs::open(Path::new("/")).unwrap();
        let search = LibSearch::new(&fs);
        let libc = search
            .cache()
            .unwrap()
            .lookup("libc.so.6", true, EM_X86_64)
            .unwrap();
        let bytes = std::fs::read(libc).unwrap();
        assert_eq!(
            parse_object(&bytes[..4096]).map(|_| ()),
            Err(Unparsed::Short)
        );
        let full = parse_object(&bytes).unwrap();
        assert_eq!(full.soname.as_deref(), Some("libc.so.6"));
    }
}
