use goblin::elf::{
    dynamic::{DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB},
    program_header::{PT_DYNAMIC, PT_INTERP, PT_LOAD},
};

use super::{
    object::{EM_386, EM_S390, EM_X86_64},
    search::expand,
    *,
};
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
