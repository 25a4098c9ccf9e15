//! Opening a source image, whatever form it comes in: a root filesystem
//! directory, an OCI image layout (directory or tar), or a `docker save`
//! archive. Layered images are merged in memory ([`LayeredRootfs`]); their
//! blobs are verified against their digests as they are read.
use std::{
    collections::HashSet,
    fs::{self, File},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::{
    archive::{Region, Store},
    decompress::{self, Compression},
    dir::DirRootfs,
    error::SourceError,
    formats::{self, Parts},
    layered::{LayeredRootfs, Merger},
    rootfs::Rootfs,
};

pub struct Image {
    pub rootfs: Box<dyn Rootfs>,
    /// The image config (OCI or docker, as oci_spec::image::ImageConfiguration); None for a plain directory.
    pub config: Option<oci_spec::image::ImageConfiguration>,
    /// sha256 digest of the manifest (OCI) or of the config (docker archive), "sha256:<hex>"; None for a directory.
    pub digest: Option<String>,
    /// Total size of regular files and number of entries in the merged filesystem (for the report: "before").
    /// Hardlinked files count once in `total_bytes`; the root itself is not an entry.
    pub total_bytes: u64,
    pub total_entries: u64,
}

/// Which form an image must have (from a transport prefix such as
/// `oci:`), or any form, detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Any,
    OciLayout,
    OciArchive,
    DockerArchive,
}

/// Opens `src`: a directory holding `oci-layout` and `index.json` is an
/// OCI layout, any other directory a root filesystem; a file must be a tar
/// (optionally gzip-compressed) holding an OCI layout or a `docker save`
/// image.
pub fn open(src: &Path) -> Result<Image, SourceError> {
    open_as(src, Form::Any, None)
}

/// An image opened as far as its config and its list of layers, whose
/// layers are not read yet: merging them is the slow part, which a
/// cached copy of the merged tree makes unnecessary.
pub enum Unmerged {
    /// A root filesystem directory: nothing to merge.
    Dir(Image),
    Layered {
        parts: Parts,
        label: String,
    },
}

impl Unmerged {
    /// Reads, verifies and merges the layers.
    pub fn merge(self) -> Result<Image, SourceError> {
        match self {
            Unmerged::Dir(image) => Ok(image),
            Unmerged::Layered { parts, label } => layered(parts, label),
        }
    }

    /// The sha256 (hex) each layer's uncompressed tar must have, bottom
    /// layer first; `None` for a directory. Merging checks every layer
    /// against these, so they name the merged tree.
    pub fn diff_ids(&self) -> Option<Vec<String>> {
        match self {
            Unmerged::Dir(_) => None,
            Unmerged::Layered { parts, .. } => {
                parts.layers.iter().map(|l| l.diff_sha.clone()).collect()
            }
        }
    }

    /// What `describe()` of the merged filesystem says.
    pub fn label(&self) -> Option<&str> {
        match self {
            Unmerged::Dir(_) => None,
            Unmerged::Layered { label, .. } => Some(label),
        }
    }

    /// The config and digest, as the merged image will have them.
    pub fn into_parts(self) -> Option<(oci_spec::image::ImageConfiguration, String)> {
        match self {
            Unmerged::Dir(_) => None,
            Unmerged::Layered { parts, .. } => Some((parts.config, parts.digest)),
        }
    }
}

/// Opens `src`, which must have `form`; `select` names the image in it
/// (an OCI `ref.name` tag, or a docker archive's RepoTag).
pub fn open_as(src: &Path, form: Form, select: Option<&str>) -> Result<Image, SourceError> {
    open_as_unmerged(src, form, select)?.merge()
}

/// [`open_as`] up to the layers, which are left unread.
pub fn open_as_unmerged(
    src: &Path,
    form: Form,
    select: Option<&str>,
) -> Result<Unmerged, SourceError> {
    let md = fs::metadata(src).map_err(SourceError::io(src))?;
    let wrong = |why: &str| SourceError::NotAnImage {
        path: src.to_path_buf(),
        why: why.to_string(),
    };
    if md.is_dir() {
        if src.join("oci-layout").is_file() && src.join("index.json").is_file() {
            if !matches!(form, Form::Any | Form::OciLayout) {
                return Err(wrong("a directory (an OCI layout), not an archive"));
            }
            let store = Store::Dir(src.to_path_buf());
            let parts = formats::oci(&store, select)?;
            let label = format!("oci-layout {}", src.display());
            return Ok(Unmerged::Layered { parts, label });
        }
        if form != Form::Any {
            return Err(wrong("a directory without oci-layout and index.json"));
        }
        return rootfs_dir(src).map(Unmerged::Dir);
    }
    if !md.is_file() {
        return Err(wrong("neither a directory nor a regular file"));
    }
    if form == Form::OciLayout {
        return Err(wrong("a file, not an OCI layout directory"));
    }
    let file = File::open(src).map_err(SourceError::io(src))?;
    open_file_unmerged(file, src, &src.display().to_string(), form, select)
}

/// Opens an image archive from an open file (which may be unlinked, such
/// as an export from an engine); `origin` names it in errors and `label`
/// after the archive's kind in `describe()`.
pub fn open_file(
    file: File,
    origin: &Path,
    label: &str,
    form: Form,
    select: Option<&str>,
) -> Result<Image, SourceError> {
    open_file_unmerged(file, origin, label, form, select)?.merge()
}

/// [`open_file`] up to the layers, which are left unread.
pub fn open_file_unmerged(
    file: File,
    origin: &Path,
    label: &str,
    form: Form,
    select: Option<&str>,
) -> Result<Unmerged, SourceError> {
    let src = origin;
    let mut region = Region::whole(file).map_err(SourceError::io(src))?;
    let head = region
        .read_exact_at(0, 512.min(region.len() as usize))
        .map_err(SourceError::io(src))?;
    // `docker save | gzip` (or zstd, xz, bzip2): decompressed once, then
    // read in place.
    let how = Compression::detect(&head);
    if how != Compression::None {
        region = decompress::to_temp(&region, how, &src.display().to_string())?.0;
    }
    // Every tar header (ustar, GNU, PAX) carries "ustar" at offset 257.
    let head = region
        .read_exact_at(0, 512.min(region.len() as usize))
        .map_err(SourceError::io(src))?;
    if head.get(257..262) != Some(b"ustar".as_slice()) {
        return Err(SourceError::NotAnImage {
            path: src.to_path_buf(),
            why: "not a directory and not a tar archive".into(),
        });
    }
    let store = Store::archive(src, region)?;
    let is_oci = store.has("oci-layout") && store.has("index.json");
    let is_docker = store.has("manifest.json");
    match form {
        Form::OciArchive if !is_oci => {
            return Err(SourceError::NotAnImage {
                path: src.to_path_buf(),
                why: "not an OCI archive (no oci-layout and index.json)".into(),
            });
        }
        Form::DockerArchive if !is_docker => {
            return Err(SourceError::NotAnImage {
                path: src.to_path_buf(),
                why: "not a docker archive (no manifest.json)".into(),
            });
        }
        _ => {}
    }
    if is_oci && form != Form::DockerArchive {
        let parts = formats::oci(&store, select)?;
        let label = format!("oci-archive {label}");
        Ok(Unmerged::Layered { parts, label })
    } else if is_docker {
        let parts = formats::docker(&store, select)?;
        let label = format!("docker-archive {label}");
        Ok(Unmerged::Layered { parts, label })
    } else {
        Err(SourceError::NotAnImage {
            path: src.to_path_buf(),
            why: "a tar archive with neither oci-layout and index.json nor manifest.json".into(),
        })
    }
}

fn layered(parts: Parts, label: String) -> Result<Image, SourceError> {
    let mut merger = Merger::new();
    for layer in &parts.layers {
        merger.apply(layer)?;
    }
    let rootfs: LayeredRootfs = merger.finish(label);
    let (total_bytes, total_entries) = rootfs.totals();
    Ok(Image {
        rootfs: Box::new(rootfs),
        config: Some(parts.config),
        digest: Some(parts.digest),
        total_bytes,
        total_entries,
    })
}

/// A root filesystem directory. The totals come from one walk that never
/// follows symlinks; hardlinked files count once.
fn rootfs_dir(src: &Path) -> Result<Image, SourceError> {
    let rootfs = DirRootfs::open(src).map_err(SourceError::io(src))?;
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut seen = HashSet::new();
    let mut stack: Vec<PathBuf> = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).map_err(SourceError::io(&dir))? {
            let e = e.map_err(SourceError::io(&dir))?;
            // DirEntry::metadata does not follow symlinks.
            let m = e.metadata().map_err(SourceError::io(e.path()))?;
            entries += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && (m.nlink() < 2 || seen.insert((m.dev(), m.ino()))) {
                bytes += m.len();
            }
        }
    }
    Ok(Image {
        rootfs: Box::new(rootfs),
        config: None,
        digest: None,
        total_bytes: bytes,
        total_entries: entries,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        ffi::OsString,
        io,
        os::unix::fs::{PermissionsExt, symlink},
        process::Command,
    };

    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::source::{
        error::NameProblem,
        rootfs::{Kind, Meta},
    };

    /// Runs an external tool; a missing tool or a failure fails the test.
    fn run(tool: &str, args: &[&str]) {
        let out = Command::new(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} is required for this test: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    fn meta(fs: &dyn Rootfs, p: &str) -> Meta {
        fs.meta(Path::new(p))
            .unwrap()
            .unwrap_or_else(|| panic!("{p} missing in {}", fs.describe()))
    }

    fn names(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    const TOOL: &[u8] = b"#!/bin/sh\necho hi\n";

    /// A small root filesystem: a file with an xattr, a setuid file with a
    /// second hardlinked name, a relative symlink, a non-root owned file
    /// and a fifo.
    fn make_rootfs(root: &Path) {
        for d in ["etc", "usr/bin", "opt/keep", "run"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("etc/hostname"), "hello\n").unwrap();
        rustix::fs::lsetxattr(
            root.join("etc/hostname"),
            "user.trace",
            b"yes",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        fs::write(root.join("usr/bin/tool"), TOOL).unwrap();
        fs::set_permissions(
            root.join("usr/bin/tool"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
        symlink("../usr/bin/tool", root.join("etc/link")).unwrap();
        fs::write(root.join("opt/keep/a"), "a\n").unwrap();
        std::os::unix::fs::chown(root.join("opt/keep/a"), Some(1000), Some(1001)).unwrap();
        fs::write(root.join("opt/keep/b"), "b\n").unwrap();
        let f = std::ffi::CString::new(root.join("run/fifo").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(f.as_ptr(), 0o600) }, 0);
    }

    /// An OCI layout made by umoci from `rootfs`, plus oci-archive and
    /// docker-archive copies made by skopeo.
    fn make_images(work: &Path, rootfs: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let layout = work.join("L");
        run("umoci", &["init", "--layout", s(&layout)]);
        run("umoci", &["new", "--image", &format!("{}:t", s(&layout))]);
        run(
            "umoci",
            &[
                "insert",
                "--image",
                &format!("{}:t", s(&layout)),
                s(rootfs),
                "/",
            ],
        );
        let (oa, da) = skopeo_copies(work, &layout);
        (layout, oa, da)
    }

    fn skopeo_copies(work: &Path, layout: &Path) -> (PathBuf, PathBuf) {
        let oa = work.join("oci.tar");
        let da = work.join("docker.tar");
        let from = format!("oci:{}:t", s(layout));
        run(
            "skopeo",
            &[
                "--insecure-policy",
                "copy",
                "-q",
                &from,
                &format!("oci-archive:{}:t", s(&oa)),
            ],
        );
        run(
            "skopeo",
            &[
                "--insecure-policy",
                "copy",
                "-q",
                &from,
                &format!("docker-archive:{}:t:latest", s(&da)),
            ],
        );
        (oa, da)
    }

    /// The digests umoci wrote: (manifest, config).
    fn layout_digests(layout: &Path) -> (String, String) {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let m = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&m[7..])).unwrap())
                .unwrap();
        let c = manifest["config"]["digest"].as_str().unwrap().to_string();
        (m, c)
    }

    fn check_tree(image: &Image) {
        let fs = image.rootfs.as_ref();
        let what = fs.describe();
        let host = meta(fs, "/etc/hostname");
        assert_eq!(host.kind, Kind::Regular, "{what}");
        assert_eq!((host.size, host.mode, host.uid), (6, 0o644, 0), "{what}");
        assert_eq!(
            host.xattrs,
            vec![("user.trace".to_string(), b"yes".to_vec())],
            "{what}"
        );
        assert!(host.mtime > 0, "{what}");
        let tool = meta(fs, "/usr/bin/tool");
        let tool2 = meta(fs, "/usr/bin/tool2");
        assert_eq!(tool.mode, 0o4755, "{what}");
        assert_eq!(tool2.mode, 0o4755, "{what}");
        assert!(tool.link_id.is_some(), "{what}");
        assert_eq!(tool.link_id, tool2.link_id, "{what}");
        assert_eq!(host.link_id, None, "{what}");
        assert_eq!(
            meta(fs, "/etc/link").kind,
            Kind::Symlink(b"../usr/bin/tool".to_vec()),
            "{what}"
        );
        let a = meta(fs, "/opt/keep/a");
        assert_eq!((a.uid, a.gid), (1000, 1001), "{what}");
        assert_eq!(meta(fs, "/run/fifo").kind, Kind::Fifo, "{what}");
        assert_eq!(meta(fs, "/usr").kind, Kind::Dir, "{what}");
        assert_eq!(
            fs.read_all(Path::new("/usr/bin/tool2")).unwrap(),
            TOOL,
            "{what}"
        );
        assert_eq!(fs.read_all(Path::new("/etc/hostname")).unwrap(), b"hello\n");
        assert_eq!(fs.read_head(Path::new("/usr/bin/tool"), 2).unwrap(), b"#!");
        assert_eq!(fs.read_head(Path::new("/opt/keep/b"), 100).unwrap(), b"b\n");
        let mut via_open = Vec::new();
        fs.open(Path::new("/opt/keep/a"))
            .unwrap()
            .read_to_end(&mut via_open)
            .unwrap();
        assert_eq!(via_open, b"a\n");
        assert_eq!(
            fs.list(Path::new("/")).unwrap(),
            names(&["etc", "opt", "run", "usr"])
        );
        assert_eq!(
            fs.list(Path::new("/usr/bin")).unwrap(),
            names(&["tool", "tool2"])
        );
        // Never through the symlink, and never a directory's "contents".
        assert!(fs.meta(Path::new("/etc/link/x")).unwrap().is_none());
        assert!(fs.meta(Path::new("/nope")).unwrap().is_none());
        assert!(fs.read_all(Path::new("/etc/link")).is_err());
        assert!(fs.read_all(Path::new("/etc")).is_err());
        assert!(fs.meta(Path::new("/etc/../etc")).is_err());
        // etc, etc/hostname, etc/link, opt, opt/keep, opt/keep/{a,b}, run,
        // run/fifo, usr, usr/bin, usr/bin/tool{,2}; the hardlinked file once.
        assert_eq!(image.total_entries, 13, "{what}");
        assert_eq!(image.total_bytes, 6 + 2 + 2 + TOOL.len() as u64, "{what}");
    }

    #[test]
    fn oci_layout_oci_archive_and_docker_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        make_rootfs(&rootfs);
        let (layout, oa, da) = make_images(tmp.path(), &rootfs);
        let (manifest, config) = layout_digests(&layout);

        let dir = open(&layout).unwrap();
        check_tree(&dir);
        assert_eq!(dir.digest.as_deref(), Some(manifest.as_str()));
        assert!(dir.rootfs.describe().starts_with("oci-layout "));
        let cfg = dir.config.as_ref().unwrap();
        assert_eq!(cfg.os().to_string(), "linux");

        let archive = open(&oa).unwrap();
        check_tree(&archive);
        assert!(archive.rootfs.describe().starts_with("oci-archive "));
        let d = archive.digest.unwrap();
        assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");

        let docker = open(&da).unwrap();
        check_tree(&docker);
        assert!(docker.rootfs.describe().starts_with("docker-archive "));
        assert_eq!(docker.digest.as_deref(), Some(config.as_str()));
        assert_eq!(docker.config.as_ref().unwrap(), cfg);

        // A gzip-compressed oci-archive opens the same way.
        let gz_path = tmp.path().join("oci.tar.gz");
        fs::write(&gz_path, gz(&fs::read(&oa).unwrap())).unwrap();
        check_tree(&open(&gz_path).unwrap());
        // And a zstd-compressed one.
        let zst_path = tmp.path().join("oci.tar.zst");
        let zst = ruzstd::encoding::compress_to_vec(
            fs::read(&oa).unwrap().as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        fs::write(&zst_path, zst).unwrap();
        check_tree(&open(&zst_path).unwrap());
        // Layers skopeo compressed with zstd. (This skopeo, 1.9.3, hangs
        // writing zstd:chunked to an OCI layout; those frames are read in
        // `decompress`'s own tests.)
        {
            let z = tmp.path().join("zstd");
            run(
                "skopeo",
                &[
                    "--insecure-policy",
                    "copy",
                    "-q",
                    "--dest-compress-format",
                    "zstd",
                    &format!("oci:{}:t", s(&layout)),
                    &format!("oci:{}:t", s(&z)),
                ],
            );
            let (m, _) = layout_digests(&z);
            let manifest = fs::read_to_string(z.join("blobs/sha256").join(&m[7..])).unwrap();
            assert!(manifest.contains("tar+zstd"), "{manifest}");
            check_tree(&open(&z).unwrap());
        }

        // skopeo's docker-archive also has legacy `<id>/layer.tar` symlinks
        // to the layers: members reached through them are the same bytes.
        let region = Region::whole(File::open(&da).unwrap()).unwrap();
        let store = Store::archive(&da, region.clone()).unwrap();
        let mut ar = tar::Archive::new(region.reader());
        let mut links = 0;
        for e in ar.entries_with_seek().unwrap() {
            let e = e.unwrap();
            if e.header().entry_type() != tar::EntryType::Symlink {
                continue;
            }
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let target = String::from_utf8(e.link_name_bytes().unwrap().into_owned()).unwrap();
            let target = target.trim_start_matches("../");
            let a = store.get(&name).unwrap().unwrap();
            let b = store.get(target).unwrap().unwrap();
            assert_eq!(
                crate::source::archive::sha256_region(&a).unwrap(),
                crate::source::archive::sha256_region(&b).unwrap()
            );
            links += 1;
        }
        assert!(links > 0);

        // The directory itself: same totals, no config.
        let plain = open(&rootfs).unwrap();
        assert!(plain.config.is_none() && plain.digest.is_none());
        assert_eq!((plain.total_entries, plain.total_bytes), (13, 28));
        assert_eq!(
            plain
                .rootfs
                .meta(Path::new("/usr/bin/tool"))
                .unwrap()
                .unwrap()
                .mode,
            0o4755
        );
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        make_rootfs(&rootfs);
        let layout = tmp.path().join("L");
        let image = format!("{}:t", s(&layout));
        run("umoci", &["init", "--layout", s(&layout)]);
        run("umoci", &["new", "--image", &image]);
        run("umoci", &["insert", "--image", &image, s(&rootfs), "/"]);
        // Layer 2 (umoci repack): deletions become `.wh.` whiteouts.
        let bundle = tmp.path().join("bundle");
        run("umoci", &["unpack", "--image", &image, s(&bundle)]);
        fs::remove_file(bundle.join("rootfs/etc/hostname")).unwrap();
        fs::remove_file(bundle.join("rootfs/usr/bin/tool2")).unwrap();
        fs::write(bundle.join("rootfs/etc/added"), "new\n").unwrap();
        run("umoci", &["repack", "--image", &image, s(&bundle)]);
        // Layer 3 (umoci insert --opaque): `.wh..wh..opq` in /opt/keep.
        let upper = tmp.path().join("upper");
        fs::create_dir(&upper).unwrap();
        fs::write(upper.join("c"), "c\n").unwrap();
        run(
            "umoci",
            &[
                "insert",
                "--image",
                &image,
                "--opaque",
                s(&upper),
                "/opt/keep",
            ],
        );
        let (oa, da) = skopeo_copies(tmp.path(), &layout);
        for src in [layout.clone(), oa, da] {
            let img = open(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            let fs = img.rootfs.as_ref();
            let what = fs.describe();
            assert!(
                fs.meta(Path::new("/etc/hostname")).unwrap().is_none(),
                "{what}"
            );
            assert!(
                fs.meta(Path::new("/usr/bin/tool2")).unwrap().is_none(),
                "{what}"
            );
            assert_eq!(fs.read_all(Path::new("/etc/added")).unwrap(), b"new\n");
            assert_eq!(
                fs.list(Path::new("/etc")).unwrap(),
                names(&["added", "link"])
            );
            assert_eq!(
                fs.list(Path::new("/opt/keep")).unwrap(),
                names(&["c"]),
                "{what}"
            );
            assert!(
                fs.meta(Path::new("/opt/keep/a")).unwrap().is_none(),
                "{what}"
            );
            assert_eq!(fs.read_all(Path::new("/opt/keep/c")).unwrap(), b"c\n");
            // The other name is gone, so the survivor is no longer "linked".
            let tool = meta(fs, "/usr/bin/tool");
            assert_eq!((tool.mode, tool.link_id), (0o4755, None), "{what}");
            assert_eq!(fs.read_all(Path::new("/usr/bin/tool")).unwrap(), TOOL);
            assert_eq!(img.config.as_ref().unwrap().rootfs().diff_ids().len(), 3);
        }
    }

    // ---- Hand-made layouts for hostile input -------------------------

    fn sha(b: &[u8]) -> String {
        crate::source::archive::hex(&Sha256::digest(b))
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut e, b).unwrap();
        e.finish().unwrap()
    }

    /// A tar entry with its name and link written raw into the header, so
    /// names the tar crate's own setters refuse can be tested.
    enum E<'a> {
        File(&'a [u8], &'a [u8]),
        Dir(&'a [u8]),
        Symlink(&'a [u8], &'a [u8]),
        Hardlink(&'a [u8], &'a [u8]),
        /// A PAX `path` record (may hold bytes a header name cannot).
        PaxFile(&'a [u8], &'a [u8]),
    }

    fn header(name: &[u8], ty: tar::EntryType, size: u64, link: &[u8]) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(ty);
        h.set_size(size);
        h.set_mode(if ty == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        h
    }

    fn tar_of(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            match e {
                E::File(n, data) => {
                    let h = header(n, tar::EntryType::Regular, data.len() as u64, b"");
                    b.append(&h, *data).unwrap();
                }
                E::Dir(n) => b
                    .append(&header(n, tar::EntryType::Directory, 0, b""), &[][..])
                    .unwrap(),
                E::Symlink(n, t) => b
                    .append(&header(n, tar::EntryType::Symlink, 0, t), &[][..])
                    .unwrap(),
                E::Hardlink(n, t) => b
                    .append(&header(n, tar::EntryType::Link, 0, t), &[][..])
                    .unwrap(),
                E::PaxFile(n, data) => {
                    let mut rec = b" path=".to_vec();
                    rec.extend_from_slice(n);
                    rec.push(b'\n');
                    // The length prefix counts itself.
                    let mut len = rec.len() + 2;
                    if len.to_string().len() + rec.len() != len {
                        len += 1;
                    }
                    let mut pax = len.to_string().into_bytes();
                    pax.extend_from_slice(&rec);
                    let h = header(b"pax", tar::EntryType::XHeader, pax.len() as u64, b"");
                    b.append(&h, pax.as_slice()).unwrap();
                    let h = header(
                        b"placeholder",
                        tar::EntryType::Regular,
                        data.len() as u64,
                        b"",
                    );
                    b.append(&h, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// A layer: the blob as stored, and the uncompressed tar (for diff_ids).
    struct Layer {
        blob: Vec<u8>,
        tar: Vec<u8>,
    }

    fn plain(tar: Vec<u8>) -> Layer {
        Layer {
            blob: tar.clone(),
            tar,
        }
    }

    fn gzipped(tar: Vec<u8>) -> Layer {
        Layer {
            blob: gz(&tar),
            tar,
        }
    }

    fn put_blob(dir: &Path, b: &[u8]) -> String {
        let h = sha(b);
        fs::write(dir.join("blobs/sha256").join(&h), b).unwrap();
        format!("sha256:{h}")
    }

    /// Writes a minimal, correct OCI layout; returns (dir, layer digests,
    /// config digest).
    fn write_layout(dir: &Path, layers: &[Layer]) -> (Vec<String>, String) {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|l| format!("sha256:{}", sha(&l.tar)))
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string();
        let config_digest = put_blob(dir, config.as_bytes());
        let mut digests = Vec::new();
        let mut descs = Vec::new();
        for l in layers {
            let d = put_blob(dir, &l.blob);
            let mt = match Compression::detect(&l.blob) {
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/vnd.oci.image.layer.v1.tar",
            };
            descs.push(serde_json::json!({"mediaType": mt, "digest": d, "size": l.blob.len()}));
            digests.push(d);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": descs,
        })
        .to_string();
        let md = put_blob(dir, manifest.as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": md, "size": manifest.len()}],
        });
        fs::write(dir.join("index.json"), index.to_string()).unwrap();
        (digests, config_digest)
    }

    fn open_layers(layers: &[Layer]) -> Result<Image, SourceError> {
        let tmp = tempfile::tempdir().unwrap();
        write_layout(tmp.path(), layers);
        open(tmp.path())
    }

    fn blob_path(dir: &Path, digest: &str) -> PathBuf {
        dir.join("blobs/sha256").join(&digest[7..])
    }

    #[test]
    fn hand_made_layout_with_implicit_parents() {
        let img = open_layers(&[
            gzipped(tar_of(&[E::File(b"a/b/c", b"deep")])),
            plain(tar_of(&[E::Dir(b"./"), E::File(b"./a/d", b"x")])),
        ])
        .unwrap();
        let fs = img.rootfs.as_ref();
        let a = meta(fs, "/a");
        assert_eq!((a.kind, a.mode, a.uid, a.gid), (Kind::Dir, 0o755, 0, 0));
        assert_eq!(fs.read_all(Path::new("/a/b/c")).unwrap(), b"deep");
        assert_eq!(fs.list(Path::new("/a")).unwrap(), names(&["b", "d"]));
        assert_eq!((img.total_entries, img.total_bytes), (4, 5));
    }

    #[test]
    fn hostile_names_are_rejected() {
        let cases: Vec<(Vec<Layer>, &str)> = vec![
            (
                vec![plain(tar_of(&[E::File(b"/etc/passwd", b"x")]))],
                "absolute",
            ),
            (vec![plain(tar_of(&[E::File(b"../x", b"x")]))], "dotdot"),
            (
                vec![plain(tar_of(&[E::File(b"a/../../x", b"x")]))],
                "dotdot",
            ),
            (vec![gzipped(tar_of(&[E::PaxFile(b"a\0b", b"x")]))], "nul"),
            (
                vec![plain(tar_of(&[
                    E::Symlink(b"etc", b"/host"),
                    E::File(b"etc/passwd", b"x"),
                ]))],
                "symlink",
            ),
            (
                vec![
                    plain(tar_of(&[E::Symlink(b"etc", b"/host")])),
                    gzipped(tar_of(&[E::File(b"etc/passwd", b"x")])),
                ],
                "symlink",
            ),
            (
                vec![
                    plain(tar_of(&[E::Symlink(b"etc", b"/host")])),
                    plain(tar_of(&[E::File(b"etc/.wh.passwd", b"")])),
                ],
                "symlink",
            ),
            (
                vec![plain(tar_of(&[E::Hardlink(b"x", b"missing")]))],
                "hardlink",
            ),
            (
                vec![plain(tar_of(&[
                    E::Symlink(b"l", b"/etc"),
                    E::Hardlink(b"x", b"l/passwd"),
                ]))],
                "hardlink",
            ),
            (
                vec![plain(tar_of(&[E::Hardlink(b"x", b"/etc/passwd")]))],
                "absolute",
            ),
        ];
        for (i, (layers, want)) in cases.into_iter().enumerate() {
            let err = match open_layers(&layers) {
                Ok(_) => panic!("case {i} ({want}) was accepted"),
                Err(e) => e,
            };
            let ok = match want {
                "absolute" => matches!(
                    err,
                    SourceError::UnsafeName {
                        why: NameProblem::Absolute,
                        ..
                    }
                ),
                "dotdot" => matches!(
                    err,
                    SourceError::UnsafeName {
                        why: NameProblem::DotDot,
                        ..
                    }
                ),
                "nul" => matches!(
                    err,
                    SourceError::UnsafeName {
                        why: NameProblem::Nul,
                        ..
                    }
                ),
                "symlink" => matches!(err, SourceError::SymlinkParent { .. }),
                "hardlink" => matches!(err, SourceError::HardlinkMissing { .. }),
                _ => unreachable!(),
            };
            assert!(ok, "case {i}: wanted {want}, got {err:?}");
        }
    }

    #[test]
    fn a_layer_may_replace_a_symlink_with_a_directory() {
        let img = open_layers(&[
            plain(tar_of(&[E::Symlink(b"etc", b"/host")])),
            plain(tar_of(&[
                E::Dir(b"etc/"),
                E::File(b"etc/passwd", b"root\n"),
            ])),
        ])
        .unwrap();
        assert_eq!(meta(img.rootfs.as_ref(), "/etc").kind, Kind::Dir);
    }

    #[test]
    fn tampered_and_broken_blobs() {
        let good = || tar_of(&[E::Dir(b"etc/"), E::File(b"etc/x", &[7u8; 3000])]);
        // A flipped byte in a layer, and in the config.
        for gzip in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let layer = if gzip { gzipped(good()) } else { plain(good()) };
            let (layers, config) = write_layout(tmp.path(), &[layer]);
            for d in [&layers[0], &config] {
                let p = blob_path(tmp.path(), d);
                let orig = fs::read(&p).unwrap();
                let mut bad = orig.clone();
                let mid = bad.len() / 2;
                bad[mid] ^= 1;
                fs::write(&p, &bad).unwrap();
                match open(tmp.path()) {
                    Err(SourceError::DigestMismatch { name, .. }) => {
                        assert!(name.contains(&d[7..]), "{name}")
                    }
                    other => panic!("wanted a digest mismatch, got {:?}", other.err()),
                }
                fs::write(&p, &orig).unwrap();
            }
            assert!(open(tmp.path()).is_ok());
            // A missing blob.
            fs::remove_file(blob_path(tmp.path(), &layers[0])).unwrap();
            assert!(matches!(open(tmp.path()), Err(SourceError::MissingBlob(d)) if d == layers[0]));
        }
        // Corrupt gzip whose digest matches: the corruption is what is found.
        let mut z = gz(&good());
        let mid = z.len() / 2;
        for b in &mut z[mid..mid + 8] {
            *b ^= 0x55;
        }
        let err = open_layers(&[Layer {
            blob: z,
            tar: good(),
        }])
        .err();
        assert!(
            matches!(err, Some(SourceError::Corrupt { what: "gzip", .. })),
            "{err:?}"
        );
        // A tar cut short in the middle of a file's data.
        let mut cut = good();
        cut.truncate(512 * 3 + 100);
        let err = open_layers(&[plain(cut)]).err();
        assert!(
            matches!(err, Some(SourceError::TruncatedTar { .. })),
            "{err:?}"
        );
        // Cut in the middle of a header.
        let mut cut = good();
        cut.truncate(512 + 100);
        let err = open_layers(&[plain(cut)]).err();
        assert!(matches!(err, Some(SourceError::BadTar { .. })), "{err:?}");
    }

    /// A last header claiming 10 GiB with one block of data and no end
    /// of archive, and data after the end of archive, are refused.
    #[test]
    fn truncated_tars_and_trailing_data() {
        let good = tar_of(&[E::Dir(b"etc/"), E::File(b"etc/x", b"x")]);
        let mut cut = good[..1536].to_vec();
        cut.extend_from_slice(
            header(b"etc/big", tar::EntryType::Regular, 10 << 30, b"").as_bytes(),
        );
        cut.extend_from_slice(&[7u8; 512]);
        for layer in [plain(cut.clone()), gzipped(cut.clone())] {
            let label = layer_label(&layer);
            let err = open_layers(&[layer]).err().unwrap().to_string();
            assert_eq!(
                err,
                format!(
                    "{label}: truncated tar: etc/big needs bytes up to 10737420288, the stream has 2560"
                )
            );
        }
        // Entries complete, but no end blocks (as umoci writes layers).
        assert!(open_layers(&[plain(good[..good.len() - 1024].to_vec())]).is_ok());
        // Garbage after the end of archive.
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0u8; 512]);
        trailing.extend_from_slice(b"#!/bin/sh evil");
        let at = good.len() + 512;
        for layer in [plain(trailing.clone()), gzipped(trailing.clone())] {
            let label = layer_label(&layer);
            assert_eq!(
                open_layers(&[layer]).err().unwrap().to_string(),
                format!("{label}: data after the end of the tar archive, at byte {at}")
            );
        }
        // Zero padding after the end of archive is what tar writes.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0u8; 8192]);
        assert!(open_layers(&[plain(padded)]).is_ok());
    }

    fn layer_label(l: &Layer) -> String {
        format!("layer 1/1 sha256:{}", sha(&l.blob))
    }

    /// A small gzip or zstd stream that expands past the limits is
    /// refused with one line naming the layer, whichever limit it crosses.
    #[test]
    fn decompression_is_bounded() {
        use crate::source::decompress::{Limits, to_temp_with};
        let raw = vec![0u8; 4 << 20];
        let zstd = ruzstd::encoding::compress_to_vec(
            raw.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        for (how, zeros) in [(Compression::Gzip, gz(&raw)), (Compression::Zstd, zstd)] {
            let tmp = tempfile::tempdir().unwrap();
            let p = tmp.path().join("z");
            fs::write(&p, &zeros).unwrap();
            let region = Region::whole(fs::File::open(&p).unwrap()).unwrap();
            let l = Limits {
                max_bytes: 1 << 20,
                max_ratio: u64::MAX,
                ratio_after: 0,
            };
            let err = to_temp_with(&region, how, "layer 1/1 sha256:x", l)
                .err()
                .unwrap();
            assert_eq!(
                err.to_string(),
                "layer 1/1 sha256:x: decompresses to more than 1048576 bytes (--max-layer-bytes); refusing it"
            );
            let l = Limits {
                max_bytes: 1 << 30,
                max_ratio: 10,
                ratio_after: 1 << 20,
            };
            let err = to_temp_with(&region, how, "layer 1/1 sha256:x", l)
                .err()
                .unwrap();
            assert_eq!(
                err.to_string(),
                format!(
                    "layer 1/1 sha256:x: decompresses to more than 10 times its {} compressed bytes (--max-layer-ratio); refusing it",
                    zeros.len()
                )
            );
            // Under the limits (the ratio is not checked before ratio_after).
            let l = Limits {
                max_bytes: 8 << 20,
                max_ratio: 10,
                ratio_after: 8 << 20,
            };
            let (out, _) = to_temp_with(&region, how, "x", l).unwrap();
            assert_eq!(out.len(), 4 << 20, "{how:?}");
        }
    }

    #[test]
    fn malformed_indexes() {
        let tmp = tempfile::tempdir().unwrap();
        write_layout(tmp.path(), &[plain(tar_of(&[E::File(b"x", b"x")]))]);
        let index_path = tmp.path().join("index.json");
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
        fs::write(&index_path, "{\"schemaVersion\": 2, \"manifests\": [").unwrap();
        assert!(matches!(open(tmp.path()), Err(SourceError::Json { .. })));
        let mut none = index.clone();
        none["manifests"] = serde_json::json!([]);
        fs::write(&index_path, none.to_string()).unwrap();
        assert!(matches!(open(tmp.path()), Err(SourceError::NoManifest(_))));
        // Two different manifests (the second one's digest need not exist:
        // the choice fails first).
        let mut two = index.clone();
        let mut other = index["manifests"][0].clone();
        other["digest"] = format!("sha256:{}", "0".repeat(64)).into();
        two["manifests"].as_array_mut().unwrap().push(other);
        fs::write(&index_path, two.to_string()).unwrap();
        match open(tmp.path()) {
            Err(SourceError::AmbiguousManifest { found, .. }) => assert_eq!(found.len(), 2),
            other => panic!("wanted ambiguity, got {:?}", other.err()),
        }
        // The same manifest under two tags is one image.
        let mut tags = index.clone();
        let again = index["manifests"][0].clone();
        tags["manifests"].as_array_mut().unwrap().push(again);
        fs::write(&index_path, tags.to_string()).unwrap();
        assert!(open(tmp.path()).is_ok());
        // A nested index (manifest list): the entry for linux/<host arch>
        // is chosen; without one, the choice is an error naming them all.
        let real = index["manifests"][0].clone();
        let mut mine = real.clone();
        mine["platform"] = serde_json::json!({"os": "linux", "architecture": formats::host_arch()});
        let mut theirs = real.clone();
        theirs["digest"] = format!("sha256:{}", "1".repeat(64)).into();
        theirs["platform"] = serde_json::json!({"os": "linux", "architecture": "s390x-not"});
        let mut other = theirs.clone();
        other["digest"] = format!("sha256:{}", "2".repeat(64)).into();
        for (entries, ok) in [
            (vec![theirs.clone(), mine.clone()], true),
            (vec![theirs.clone(), other, theirs.clone()], false),
        ] {
            let list = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": entries,
            })
            .to_string();
            let d = put_blob(tmp.path(), list.as_bytes());
            let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": d, "size": list.len()}]});
            fs::write(&index_path, top.to_string()).unwrap();
            match open(tmp.path()) {
                Ok(img) => {
                    assert!(ok);
                    assert_eq!(img.digest.as_deref(), real["digest"].as_str());
                }
                Err(SourceError::AmbiguousManifest { found, .. }) => {
                    assert!(!ok);
                    // Duplicates of one digest are listed once.
                    assert_eq!(found.len(), 2, "{found:?}");
                }
                Err(e) => panic!("{e}"),
            }
        }
        // A digest that tries to be a path never becomes one.
        let mut evil = index.clone();
        evil["manifests"][0]["digest"] = "sha256:../../../../etc/passwd".into();
        fs::write(&index_path, evil.to_string()).unwrap();
        assert!(matches!(open(tmp.path()), Err(SourceError::Json { .. })));
    }

    #[test]
    fn other_files_are_not_images() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("junk");
        fs::write(&f, vec![b'x'; 4096]).unwrap();
        assert!(matches!(open(&f), Err(SourceError::NotAnImage { .. })));
        let t = tmp.path().join("plain.tar");
        fs::write(&t, tar_of(&[E::File(b"hello", b"x")])).unwrap();
        assert!(matches!(open(&t), Err(SourceError::NotAnImage { .. })));
        assert!(matches!(
            open(&tmp.path().join("nope")),
            Err(SourceError::Io { .. })
        ));
    }
}
