//! Where the loader looks for a needed name: `DT_RPATH` / `DT_RUNPATH`
//! with their `$ORIGIN`, `$LIB` and `$PLATFORM` tokens, `LD_LIBRARY_PATH`,
//! the image's ld.so.cache, its ld.so.conf directories and the default
//! directories of the object's class and machine, as glibc's ld.so does.
use std::{
    collections::HashSet,
    path::{Component, Path, PathBuf},
};

use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB};

use super::object::{
    EM_386, EM_AARCH64, EM_ARM, EM_LOONGARCH, EM_PPC, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64,
    ElfInfo,
};
use crate::{
    closure::{
        ldcache::{LdCache, LdCacheError, conf_dirs},
        resolve::resolve,
    },
    source::rootfs::{Kind, Rootfs},
};

/// Whether `path` leads to a regular ELF file of this class and machine:
/// the loader skips other candidates and goes on searching.
pub(super) fn usable(fs: &dyn Rootfs, path: &Path, is_64: bool, machine: u16) -> bool {
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
pub(super) fn triplets(machine: u16, is_64: bool) -> &'static [&'static str] {
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
pub(super) fn default_dirs(machine: u16, is_64: bool) -> Vec<PathBuf> {
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
pub(super) fn lib_values(machine: u16, is_64: bool) -> Vec<String> {
    let mut out = Vec::new();
    if is_64 {
        out.push("lib64".to_owned());
    }
    out.extend(triplets(machine, is_64).iter().map(|t| format!("lib/{t}")));
    out.push("lib".to_owned());
    out
}

/// What `$PLATFORM` (the kernel's `AT_PLATFORM`) is for a machine.
pub(super) fn platform_values(machine: u16, is_64: bool) -> Vec<String> {
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
pub(super) fn expand(entry: &str, origin: &Path, machine: u16, is_64: bool) -> Vec<String> {
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
pub(super) fn clean(fs: &dyn Rootfs, path: &Path) -> Option<PathBuf> {
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

pub(super) fn origin(object: &Path) -> &Path {
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

    pub(super) fn find_in(
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
