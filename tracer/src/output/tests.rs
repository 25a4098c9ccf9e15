//! Writes a small tree with every kind of entry in all three formats and
//! checks the result with the tar crate, skopeo and umoci.
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::CString,
    fs,
    io::Read,
    os::unix::{
        ffi::OsStrExt,
        fs::{FileTypeExt, MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, UNIX_EPOCH},
};

use sha2::{Digest as _, Sha256};

use super::*;
use crate::source::dir::DirRootfs;

const TAG: &str = "trace-test";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const MTIME: u64 = 1_600_000_000;

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    paths: BTreeSet<PathBuf>,
    /// The xattr name the filesystem accepted.
    xattr: String,
    long: String,
    long_target: String,
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) -> bool {
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the stated length.
    unsafe {
        libc::setxattr(
            cstr(p).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let w = |rel: &str, data: &str| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        p
    };
    let suid = w("bin/suid", "#!/bin/sh\necho suid\n");
    std::os::unix::fs::chown(&suid, Some(1000), Some(1000)).unwrap();
    // chown clears setuid, so the mode comes after.
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
    fs::File::options()
        .write(true)
        .open(&suid)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(MTIME))
        .unwrap();
    let a = w("bin/hl-a", "hard data\n");
    fs::hard_link(&a, root.join("bin/hl-b")).unwrap();
    std::os::unix::fs::symlink("suid", root.join("bin/link")).unwrap();
    let long_target = format!("/{}", "t".repeat(150));
    std::os::unix::fs::symlink(&long_target, root.join("bin/longlink")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    let x = w("etc/attr", "with xattr\n");
    let xattr = if set_xattr(&x, "user.test", b"hello") {
        "user.test"
    } else {
        assert!(set_xattr(&x, "trusted.test", b"hello"), "no xattrs here");
        "trusted.test"
    }
    .to_string();
    fs::create_dir_all(root.join("run")).unwrap();
    let fifo = root.join("run/fifo");
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(cstr(&fifo).as_ptr(), 0o600) }, 0);
    fs::create_dir_all(root.join("dev")).unwrap();
    // SAFETY: a valid C string; as root mknod of a char device works.
    let r = unsafe {
        libc::mknod(
            cstr(&root.join("dev/null")).as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        )
    };
    assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
    fs::set_permissions(root.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    // A 300-byte path: deep/ + 9 dirs of 29 chars + a file name.
    let mut long = String::from("deep");
    for i in 0..9 {
        long.push_str(&format!("/{i}{}", "d".repeat(28)));
    }
    let file_len = 300 - 1 - long.len() - 1;
    long.push('/');
    long.push_str(&"f".repeat(file_len));
    assert_eq!(long.len() + 1, 300);
    w(&long, "deep file\n");

    let mut paths = BTreeSet::new();
    paths.insert(PathBuf::from("/"));
    for rel in [
        "bin",
        "bin/suid",
        "bin/hl-a",
        "bin/hl-b",
        "bin/link",
        "bin/longlink",
        "empty",
        "etc",
        "etc/attr",
        "run",
        "run/fifo",
        "dev",
        "dev/null",
    ] {
        paths.insert(Path::new("/").join(rel));
    }
    let mut p = PathBuf::from("/");
    for c in Path::new(&long).components() {
        p.push(c);
        paths.insert(p.clone());
    }
    Tree {
        _dir: dir,
        root,
        paths,
        xattr,
        long,
        long_target,
    }
}

/// xattrs of a host path, read directly (an independent check of what
/// umoci unpacked).
fn host_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = cstr(p);
    let mut names = vec![0u8; 4096];
    // SAFETY: buffer of the stated size.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    names.truncate(usize::try_from(n).unwrap_or(0));
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        // SAFETY: buffer of the stated size.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        value.truncate(usize::try_from(len).unwrap());
        out.push((String::from_utf8(name.to_vec()).unwrap(), value));
    }
    out.sort();
    out
}

fn open(t: &Tree) -> DirRootfs {
    DirRootfs::open(&t.root).unwrap()
}

fn spec<'a>(fs: &'a DirRootfs, paths: &'a BTreeSet<PathBuf>, format: Format) -> Spec<'a> {
    let config: oci_spec::image::ImageConfiguration = serde_json::from_value(serde_json::json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/suid"],
            "Env": ["PATH=/bin"],
            "WorkingDir": "/",
            "Labels": {"a": "1", "b": "2", "c": "3"},
            "ExposedPorts": {"80/tcp": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},
        "history": [{"created_by": "old step 1"}, {"created_by": "old step 2", "empty_layer": true}]
    }))
    .unwrap();
    Spec {
        rootfs: fs,
        paths,
        config: Some(config),
        source_digest: Some(DIGEST.into()),
        tag: Some(TAG.into()),
        format,
    }
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", layer::hex(&Sha256::digest(bytes)))
}

fn blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    fs::read(dir.join("blobs/sha256").join(hex)).unwrap()
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Every file under `dir`, by relative path, with its contents.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

struct Seen {
    ty: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<PathBuf>,
    dev_major: u32,
    dev_minor: u32,
    xattrs: BTreeMap<String, Vec<u8>>,
    data: Vec<u8>,
}

/// Reads a layer tar into a map by entry name (as written, e.g. `bin/`).
fn read_layer(tar_bytes: &[u8]) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for r in pax {
                let r = r.unwrap();
                if let Some(k) = r.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(k.to_string(), r.value_bytes().to_vec());
                }
            }
        }
        let h = e.header();
        let seen = Seen {
            ty: h.entry_type(),
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link: e.link_name().unwrap().map(|l| l.into_owned()),
            dev_major: h.device_major().unwrap().unwrap_or(0),
            dev_minor: h.device_minor().unwrap().unwrap_or(0),
            xattrs,
            data: {
                let mut d = Vec::new();
                e.read_to_end(&mut d).unwrap();
                d
            },
        };
        assert!(out.insert(name.clone(), seen).is_none(), "duplicate {name}");
    }
    out
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn oci_layer_keeps_every_kind_of_entry() {
    let t = tree();
    let rootfs = open(&t);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("img");
    let w = write(&out, &spec(&rootfs, &t.paths, Format::Oci)).unwrap();

    // index -> manifest -> config/layer, all content-addressed.
    let layout = json(&fs::read(out.join("oci-layout")).unwrap());
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index = json(&fs::read(out.join("index.json")).unwrap());
    assert_eq!(index["schemaVersion"], 2);
    let m = &index["manifests"][0];
    assert_eq!(m["digest"], w.manifest_digest.as_str());
    assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], TAG);
    assert_eq!(m["platform"]["architecture"], "amd64");
    let manifest_bytes = blob(&out, &w.manifest_digest);
    assert_eq!(sha(&manifest_bytes), w.manifest_digest);
    let manifest = json(&manifest_bytes);
    assert_eq!(manifest["annotations"]["org.trace.source.digest"], DIGEST);
    assert_eq!(manifest["config"]["digest"], w.config_digest.as_str());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(layers[0]["digest"], w.layer_digest.as_str());
    assert_eq!(layers[0]["size"], w.layer_bytes);
    let config_bytes = blob(&out, &w.config_digest);
    assert_eq!(sha(&config_bytes), w.config_digest);
    let config = json(&config_bytes);
    assert_eq!(config["created"], "2024-01-02T03:04:05Z");
    assert_eq!(config["config"]["Entrypoint"][0], "/bin/suid");
    assert_eq!(
        config["config"]["Labels"]["org.trace.source.digest"],
        DIGEST
    );
    assert_eq!(config["config"]["Labels"]["b"], "2");
    assert_eq!(config["history"].as_array().unwrap().len(), 1);
    assert_eq!(config["history"][0]["created_by"], "trace build");

    let gz = blob(&out, &w.layer_digest);
    assert_eq!(sha(&gz), w.layer_digest);
    assert_eq!(gz.len() as u64, w.layer_bytes);
    // gzip header: no mtime, no file name.
    assert_eq!(&gz[3..8], &[0, 0, 0, 0, 0]);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        sha(&tar_bytes).as_str(),
        "diff_id is the uncompressed tar's digest"
    );

    let seen = read_layer(&tar_bytes);
    assert_eq!(seen.len(), w.entries);
    // Root not emitted; every other path exactly once, relative.
    assert_eq!(seen.len(), t.paths.len() - 1);
    for name in seen.keys() {
        assert!(!name.starts_with('/') && !name.starts_with("./"), "{name}");
    }

    let suid = &seen["bin/suid"];
    assert_eq!(suid.ty, tar::EntryType::Regular);
    assert_eq!(suid.mode, 0o4755);
    assert_eq!((suid.uid, suid.gid), (1000, 1000));
    assert_eq!(suid.mtime, MTIME);
    assert_eq!(suid.data, b"#!/bin/sh\necho suid\n");

    let (a, b) = (&seen["bin/hl-a"], &seen["bin/hl-b"]);
    assert_eq!(a.ty, tar::EntryType::Regular);
    assert_eq!(a.data, b"hard data\n");
    assert_eq!(b.ty, tar::EntryType::Link);
    assert_eq!(b.link.as_deref(), Some(Path::new("bin/hl-a")));
    assert!(b.data.is_empty(), "hardlink data is not duplicated");

    let link = &seen["bin/link"];
    assert_eq!(link.ty, tar::EntryType::Symlink);
    assert_eq!(link.link.as_deref(), Some(Path::new("suid")));
    let long_link = &seen["bin/longlink"];
    assert_eq!(long_link.ty, tar::EntryType::Symlink);
    assert_eq!(long_link.link.as_deref(), Some(Path::new(&t.long_target)));

    for dir in ["bin/", "etc/", "run/", "deep/"] {
        assert_eq!(seen[dir].ty, tar::EntryType::Directory, "{dir}");
    }
    assert_eq!(seen["empty/"].mode, 0o1777);

    let attr = &seen["etc/attr"];
    assert_eq!(
        attr.xattrs.get(&t.xattr).map(Vec::as_slice),
        Some(&b"hello"[..])
    );
    assert!(suid.xattrs.is_empty());

    assert_eq!(seen["run/fifo"].ty, tar::EntryType::Fifo);
    assert_eq!(seen["run/fifo"].mode, 0o600);

    let null = &seen["dev/null"];
    assert_eq!(null.ty, tar::EntryType::Char);
    assert_eq!(null.mode, 0o666);
    assert_eq!((null.dev_major, null.dev_minor), (1, 3));

    let long = &seen[t.long.as_str()];
    assert_eq!(long.ty, tar::EntryType::Regular);
    assert_eq!(long.data, b"deep file\n");
}

#[test]
fn skopeo_and_umoci_accept_the_output() {
    let t = tree();
    let rootfs = open(&t);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let oci = w.join("oci");
    let oci_tar = w.join("oci.tar");
    let docker_tar = w.join("docker.tar");
    let wo = write(&oci, &spec(&rootfs, &t.paths, Format::Oci)).unwrap();
    let wa = write(&oci_tar, &spec(&rootfs, &t.paths, Format::OciArchive)).unwrap();
    let wd = write(&docker_tar, &spec(&rootfs, &t.paths, Format::DockerArchive)).unwrap();
    assert_eq!(wo, wa, "a directory and its archive hold the same image");
    assert_eq!(wd.config_digest, wo.config_digest, "same config JSON");
    assert_eq!(wd.entries, wo.entries);

    for reference in [
        format!("oci:{}", oci.display()),
        format!("oci:{}:{TAG}", oci.display()),
        format!("oci-archive:{}", oci_tar.display()),
        format!("docker-archive:{}", docker_tar.display()),
    ] {
        let v: serde_json::Value =
            serde_json::from_str(&run(Command::new("skopeo").args(["inspect", &reference])))
                .unwrap();
        assert_eq!(v["Architecture"], "amd64", "{reference}");
        assert_eq!(v["Os"], "linux", "{reference}");
        assert_eq!(v["Layers"].as_array().unwrap().len(), 1, "{reference}");
        assert_eq!(
            v["Labels"]["org.trace.source.digest"], DIGEST,
            "{reference}"
        );
        let cfg: serde_json::Value = serde_json::from_str(&run(
            Command::new("skopeo").args(["inspect", "--config", &reference])
        ))
        .unwrap();
        assert_eq!(cfg["config"]["Entrypoint"][0], "/bin/suid", "{reference}");
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        // A copy re-reads every blob and checks its digest and size.
        let copy = w.join(format!("copy-{}", reference.len()));
        let copy = copy.with_extension(reference.split(':').next().unwrap());
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            &reference,
            &format!("dir:{}", copy.display()),
        ]));
        if reference.starts_with("oci") {
            assert_eq!(v["Digest"], wo.manifest_digest.as_str(), "{reference}");
        }
    }
    // docker-archive: the layer is the plain tar; its digest is the diff_id.
    let cfg = json(
        &run(Command::new("skopeo").args([
            "inspect",
            "--config",
            &format!("docker-archive:{}", docker_tar.display()),
        ]))
        .into_bytes(),
    );
    assert_eq!(cfg["rootfs"]["diff_ids"][0], wd.layer_digest.as_str());

    let bundle = w.join("bundle");
    run(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:{TAG}", oci.display()),
        bundle.to_str().unwrap(),
    ]));
    let r = bundle.join("rootfs");
    let suid = fs::symlink_metadata(r.join("bin/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (1000, 1000));
    let (a, b) = (
        fs::symlink_metadata(r.join("bin/hl-a")).unwrap(),
        fs::symlink_metadata(r.join("bin/hl-b")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hardlink unpacked as one inode");
    assert_eq!(
        fs::read_link(r.join("bin/link")).unwrap(),
        Path::new("suid")
    );
    assert!(
        fs::symlink_metadata(r.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(fs::read(r.join(&t.long)).unwrap(), b"deep file\n");
    let null = fs::symlink_metadata(r.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert_eq!(
        host_xattrs(&r.join("etc/attr")),
        vec![(t.xattr.clone(), b"hello".to_vec())]
    );
    assert_eq!(
        fs::symlink_metadata(r.join("empty")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn same_inputs_give_same_bytes() {
    let t = tree();
    let rootfs = open(&t);
    let work = tempfile::tempdir().unwrap();
    for (i, format) in [Format::Oci, Format::OciArchive, Format::DockerArchive]
        .into_iter()
        .enumerate()
    {
        let one = work.path().join(format!("{i}-one"));
        let two = work.path().join(format!("{i}-two"));
        let w1 = write(&one, &spec(&rootfs, &t.paths, format)).unwrap();
        let w2 = write(&two, &spec(&rootfs, &t.paths, format)).unwrap();
        assert_eq!(w1, w2, "{format:?}");
        if format == Format::Oci {
            assert_eq!(files(&one), files(&two));
        } else {
            assert_eq!(
                fs::read(&one).unwrap(),
                fs::read(&two).unwrap(),
                "{format:?}"
            );
        }
    }
}

#[test]
fn plain_rootfs_gets_a_fixed_created_time_and_host_arch() {
    let t = tree();
    let rootfs = open(&t);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("img");
    let mut s = spec(&rootfs, &t.paths, Format::Oci);
    s.config = None;
    s.source_digest = None;
    s.tag = None;
    let w = write(&out, &s).unwrap();
    let config = json(&blob(&out, &w.config_digest));
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["architecture"],
        serde_json::to_value(oci_spec::image::Arch::default()).unwrap()
    );
    assert!(config.get("config").is_none(), "no entrypoint invented");
    let manifest = json(&blob(&out, &w.manifest_digest));
    assert!(manifest.get("annotations").is_none());
    let index = json(&fs::read(out.join("index.json")).unwrap());
    assert!(index["manifests"][0].get("annotations").is_none());
}

#[test]
fn existing_out_is_refused_and_untouched() {
    let t = tree();
    let rootfs = open(&t);
    let work = tempfile::tempdir().unwrap();
    for format in [Format::Oci, Format::OciArchive, Format::DockerArchive] {
        let out = work.path().join("taken");
        fs::write(&out, b"precious").unwrap();
        let e = write(&out, &spec(&rootfs, &t.paths, format)).unwrap_err();
        assert!(matches!(e, OutputError::Exists(ref p) if p == &out), "{e}");
        assert_eq!(fs::read(&out).unwrap(), b"precious");
        fs::remove_file(&out).unwrap();
        // An empty directory is refused too (a plain rename would replace it).
        fs::create_dir(&out).unwrap();
        assert!(matches!(
            write(&out, &spec(&rootfs, &t.paths, format)),
            Err(OutputError::Exists(_))
        ));
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
        fs::remove_dir(&out).unwrap();
    }
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 0);
}

#[test]
fn a_failure_midway_leaves_nothing() {
    let t = tree();
    let rootfs = open(&t);
    let work = tempfile::tempdir().unwrap();
    let mut paths = t.paths.clone();
    // Sorts after some real entries, so the layer is half written.
    paths.insert(PathBuf::from("/etc/missing"));
    for format in [Format::Oci, Format::OciArchive, Format::DockerArchive] {
        let out = work.path().join("img");
        let e = write(&out, &spec(&rootfs, &paths, format)).unwrap_err();
        assert!(
            matches!(e, OutputError::Missing { ref path, .. } if path == Path::new("/etc/missing")),
            "{e}"
        );
        assert!(e.to_string().contains("/etc/missing"), "{e}");
        assert_eq!(
            fs::read_dir(work.path()).unwrap().count(),
            0,
            "no output and no temporary left"
        );
    }
    // Paths that could escape the image root are refused.
    let mut bad = BTreeSet::new();
    bad.insert(PathBuf::from("/etc/../../x"));
    let out = work.path().join("img");
    assert!(matches!(
        write(&out, &spec(&rootfs, &bad, Format::Oci)),
        Err(OutputError::BadPath { .. })
    ));
    assert_eq!(fs::read_dir(work.path()).unwrap().count(), 0);
}
