//! One ELF object as the loader reads it: the header, the program
//! headers and the dynamic section, every offset checked (the bytes come
//! from an image and are untrusted).
use goblin::{
    container::{Container, Ctx},
    elf::{
        Dynamic, Elf, ProgramHeader,
        dynamic::{DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB},
        header::{EI_CLASS, ELFCLASS32, ELFCLASS64},
        program_header::{PT_DYNAMIC, PT_INTERP, PT_LOAD},
    },
};
pub(super) const EM_386: u16 = 3;
pub(super) const EM_PPC: u16 = 20;
pub(super) const EM_PPC64: u16 = 21;
pub(super) const EM_S390: u16 = 22;
pub(super) const EM_ARM: u16 = 40;
pub(super) const EM_X86_64: u16 = 62;
pub(super) const EM_AARCH64: u16 = 183;
pub(super) const EM_RISCV: u16 = 243;
pub(super) const EM_LOONGARCH: u16 = 258;

/// How much of a file is read first: headers, and for most objects the
/// dynamic section and its strings too. Larger objects whose dynamic
/// section lies further in are then read whole.
pub(super) const HEAD: usize = 2 << 20;

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
pub(super) enum Unparsed {
    /// Not ELF, or malformed.
    Invalid,
    /// Something lies past the end of the bytes: more of the file may help.
    Short,
}

/// An object as the closure keeps it.
#[derive(Debug)]
pub(super) struct Object {
    pub(super) info: ElfInfo,
    pub(super) soname: Option<String>,
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
pub(super) fn parse_object(bytes: &[u8]) -> Result<Object, Unparsed> {
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
