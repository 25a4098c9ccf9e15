//! Entry points of the fuzz targets (`fuzz/`) and of the test that replays
//! their seeds and past crashes: each feeds arbitrary bytes to one reader
//! of untrusted input and then uses what it read. Errors are expected;
//! only a panic, a hang or unbounded memory is a bug.
use std::{
    fs::File,
    io::{Seek, Write},
    path::{Path, PathBuf},
};

use crate::{
    capture::{btf::Btf, offsets},
    closure::{elf, ldcache::LdCache},
    model::write,
    source::{
        archive::Region,
        image::{self, Form},
        layered::{LayerBlob, Merger},
        rootfs::{Kind, Rootfs},
    },
};

/// A fuzz entry point: any bytes at all.
pub type Entry = fn(&[u8]);

/// Every entry point, by the name of its fuzz target.
pub const TARGETS: &[(&str, Entry)] = &[
    ("layer_tar", layer_tar),
    ("oci_archive", oci_archive),
    ("docker_archive", docker_archive),
    ("trace_json", trace_json),
    ("elf", elf),
    ("ldcache", ldcache),
    ("btf", btf),
];

/// The readers of image files take a file (they read it in place), so the
/// bytes go to an anonymous temporary file first.
fn temp_file(data: &[u8]) -> Option<File> {
    let mut f = tempfile::tempfile().ok()?;
    f.write_all(data).ok()?;
    f.rewind().ok()?;
    Some(f)
}

/// Walks a merged filesystem the way the closure does: metadata, listings
/// and the first bytes of each file, to depth 64.
fn walk(fs: &dyn Rootfs, dir: &Path, depth: usize) {
    let Ok(names) = fs.list(dir) else { return };
    for name in names {
        let path = dir.join(name);
        match fs.meta(&path) {
            Ok(Some(m)) if m.kind == Kind::Dir && depth < 64 => walk(fs, &path, depth + 1),
            Ok(Some(m)) if m.kind == Kind::Regular => {
                let _ = fs.read_head(&path, 4096);
            }
            _ => {}
        }
    }
}

/// A layer tar (plain or gzip), applied twice over an empty tree, so that
/// its whiteouts and replacements also meet entries of a layer below.
pub fn layer_tar(data: &[u8]) {
    let Some(region) = temp_file(data).and_then(|f| Region::whole(f).ok()) else {
        return;
    };
    let mut merger = Merger::new();
    for n in 1..=2 {
        let layer = LayerBlob {
            label: format!("layer {n}/2"),
            origin: PathBuf::from("<fuzz>"),
            region: region.clone(),
            blob_sha: None,
            diff_sha: None,
        };
        if merger.apply(&layer).is_err() {
            return;
        }
    }
    let fs = merger.finish("fuzz".into());
    let _ = fs.totals();
    walk(&fs, Path::new("/"), 0);
}

fn image_archive(data: &[u8], form: Form) {
    let Some(file) = temp_file(data) else { return };
    if let Ok(img) = image::open_file(file, Path::new("<fuzz>"), "fuzz", form, None) {
        walk(img.rootfs.as_ref(), Path::new("/"), 0);
    }
}

/// An OCI image layout in a tar (`oci-archive`), layers and all.
pub fn oci_archive(data: &[u8]) {
    image_archive(data, Form::OciArchive);
}

/// A `docker save` archive, layers and all.
pub fn docker_archive(data: &[u8]) {
    image_archive(data, Form::DockerArchive);
}

/// A trace file, as `trace build` and `trace merge` read it.
pub fn trace_json(data: &[u8]) {
    if let Ok(t) = write::from_slice(data) {
        for f in &t.files {
            let _ = (f.os_path(), f.used(), f.written(), f.looked_up_missing());
        }
        let _ = write::to_json(&t);
    }
}

/// An ELF object, as the library closure reads it.
pub fn elf(data: &[u8]) {
    let _ = elf::parse(data);
}

/// An `/etc/ld.so.cache`, and a few look-ups in it.
pub fn ldcache(data: &[u8]) {
    if let Ok(c) = LdCache::parse(data) {
        for name in ["libc.so.6", "libm.so.6", "libz.so.1"] {
            let _ = c.lookup(name, true, 62);
            let _ = c.entries(name);
        }
    }
}

/// BTF type information, and the look-ups `trace` makes in it.
pub fn btf(data: &[u8]) {
    if let Ok(b) = Btf::from_bytes(data) {
        let _ = offsets::from_btf(&b);
        let _ = offsets::uring_specs(&b);
        let _ = b.member_offset("a", "b.c");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fuzz_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    /// Every committed seed and every past crash (`fuzz/regressions/`) goes
    /// through its entry point again: a fixed crash stays fixed.
    #[test]
    fn seeds_and_regressions_do_not_panic() {
        let mut seen = 0;
        for (name, entry) in TARGETS {
            let seeds = files(&fuzz_dir().join("seeds").join(name));
            assert!(!seeds.is_empty(), "no seeds for {name}");
            for f in seeds
                .iter()
                .chain(&files(&fuzz_dir().join("regressions").join(name)))
            {
                entry(&std::fs::read(f).unwrap());
                seen += 1;
            }
        }
        assert!(seen >= TARGETS.len());
    }

    /// The seeds are valid inputs, so the fuzzer starts from the readers'
    /// success paths and not only from their first error.
    #[test]
    fn seeds_are_accepted() {
        let seeds = |t: &str| files(&fuzz_dir().join("seeds").join(t));
        for f in seeds("layer_tar") {
            let region = Region::whole(File::open(&f).unwrap()).unwrap();
            let mut m = Merger::new();
            m.apply(&LayerBlob {
                label: "seed".into(),
                origin: f.clone(),
                region,
                blob_sha: None,
                diff_sha: None,
            })
            .unwrap();
            let fs = m.finish("seed".into());
            assert!(
                fs.meta(Path::new("/usr/bin/sh")).unwrap().is_some(),
                "{f:?}"
            );
        }
        for (t, form) in [
            ("oci_archive", Form::OciArchive),
            ("docker_archive", Form::DockerArchive),
        ] {
            for f in seeds(t) {
                let img = image::open_as(&f, form, None).unwrap();
                let meta = img.rootfs.meta(Path::new("/etc/hostname")).unwrap();
                assert!(meta.is_some(), "{f:?}");
            }
        }
        for f in seeds("trace_json") {
            assert!(!write::read(&f).unwrap().files.is_empty(), "{f:?}");
        }
        for f in seeds("elf") {
            let info = elf::parse(&std::fs::read(&f).unwrap()).unwrap();
            assert!(info.needed.iter().any(|n| n == "libc.so.6"), "{f:?}");
        }
        for f in seeds("ldcache") {
            let c = LdCache::parse(&std::fs::read(&f).unwrap()).unwrap();
            assert_eq!(c.lookup("libm.so.6", true, 62), Some("/lib/libm.so.6"));
        }
        for f in seeds("btf") {
            let b = Btf::from_bytes(&std::fs::read(&f).unwrap()).unwrap();
            assert_eq!(b.member_offset("task_struct", "pid").unwrap(), 8);
            assert_eq!(b.member_offset("file", "f_path.dentry").unwrap(), 16);
        }
    }
}
