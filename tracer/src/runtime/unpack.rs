//! Writing an image's merged filesystem out as a directory, to serve as
//! the read-only lower layer of a container's overlay. Used for OCI and
//! docker-archive sources; a directory source is used as it is.
//!
//! The merged tree never has an entry below a symlink (the reader refuses
//! such images), and entries are created parents first, so no path here
//! is ever resolved through a symlink the image supplied.
use std::{
    collections::HashMap,
    fs, io,
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::{Path, PathBuf},
};

use rustix::fs::{self as rfs, FileType, Gid, Uid};

use crate::source::rootfs::{DataBytes, Kind, Meta, Rootfs};

#[derive(Debug, thiserror::Error)]
#[error("unpacking {path}")]
pub struct UnpackError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// The bytes of the regular files below `/` (hardlinks once), from the
/// metadata alone.
fn data_bytes(fs: &dyn Rootfs) -> io::Result<u64> {
    let mut stack = vec![PathBuf::from("/")];
    let mut total = DataBytes::default();
    while let Some(p) = stack.pop() {
        let Some(meta) = fs.meta(&p)? else { continue };
        if meta.kind == Kind::Dir {
            stack.extend(fs.list(&p)?.into_iter().map(|n| p.join(n)));
        }
        total.add(&meta);
    }
    Ok(total.total)
}

/// Refuses to start an unpack that cannot fit: better one line now than
/// a full disk and a half-written tree.
fn check_space(fs: &dyn Rootfs, dest: &Path) -> Result<(), UnpackError> {
    let err = |source| UnpackError {
        path: dest.to_path_buf(),
        source,
    };
    let need = data_bytes(fs).map_err(err)?;
    let free = crate::source::decompress::free_bytes(dest).map_err(err)?;
    if need > free {
        return Err(err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("the image needs {need} bytes, the filesystem has {free} free"),
        )));
    }
    Ok(())
}

/// Copies every entry of `fs` below `dest` (which must exist and be empty),
/// with owners, modes, xattrs, hardlinks and mtimes.
pub fn unpack(fs: &dyn Rootfs, dest: &Path) -> Result<(), UnpackError> {
    check_space(fs, dest)?;
    let mut stack = vec![PathBuf::from("/")];
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    let mut links: HashMap<u64, PathBuf> = HashMap::new();
    while let Some(p) = stack.pop() {
        let err = |source| UnpackError {
            path: p.clone(),
            source,
        };
        let Some(meta) = fs.meta(&p).map_err(err)? else {
            continue;
        };
        let rel = p.strip_prefix("/").unwrap_or(&p);
        let target = dest.join(rel);
        match &meta.kind {
            Kind::Dir => {
                if p != Path::new("/") {
                    fs::create_dir(&target).map_err(err)?;
                }
                let mut names = fs.list(&p).map_err(err)?;
                names.reverse();
                stack.extend(names.into_iter().map(|n| p.join(n)));
                // Modes and times of directories are set last: writing
                // into them changes their mtime, a 0555 dir refuses it.
                dirs.push((target, meta));
                continue;
            }
            Kind::Regular => {
                if let Some(first) = meta.link_id.and_then(|id| links.get(&id)) {
                    fs::hard_link(first, &target).map_err(err)?;
                    continue;
                }
                let mut out = fs::File::create(&target).map_err(err)?;
                io::copy(&mut fs.open(&p).map_err(err)?, &mut out).map_err(err)?;
                if let Some(id) = meta.link_id {
                    links.insert(id, target.clone());
                }
            }
            Kind::Symlink(to) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(to), &target)
                    .map_err(err)?;
            }
            Kind::Char { major, minor } | Kind::Block { major, minor } => {
                let kind = if matches!(meta.kind, Kind::Char { .. }) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                rfs::mknodat(
                    rfs::CWD,
                    &target,
                    kind,
                    rfs::Mode::from_raw_mode(0o600),
                    rfs::makedev(*major, *minor),
                )
                .map_err(|e| err(e.into()))?;
            }
            Kind::Fifo => {
                rfs::mkfifoat(rfs::CWD, &target, rfs::Mode::from_raw_mode(0o600))
                    .map_err(|e| err(e.into()))?;
            }
            // A socket in an image is a leftover of whoever built it.
            Kind::Socket => continue,
        }
        apply(&target, &meta).map_err(err)?;
    }
    for (target, meta) in dirs.iter().rev() {
        apply(target, meta).map_err(|source| UnpackError {
            path: target.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Owner, mode, xattrs and mtime, without following a symlink.
fn apply(target: &Path, meta: &Meta) -> io::Result<()> {
    // An id of -1 means "unchanged" to the kernel, as it did to lchown.
    let uid = (meta.uid != u32::MAX).then(|| Uid::from_raw(meta.uid));
    let gid = (meta.gid != u32::MAX).then(|| Gid::from_raw(meta.gid));
    rfs::chownat(rfs::CWD, target, uid, gid, rfs::AtFlags::SYMLINK_NOFOLLOW)?;
    for (name, value) in &meta.xattrs {
        rfs::lsetxattr(target, name.as_str(), value, rfs::XattrFlags::empty())?;
    }
    if !matches!(meta.kind, Kind::Symlink(_)) {
        // After chown, which clears setuid/setgid.
        fs::set_permissions(target, fs::Permissions::from_mode(meta.mode))?;
    }
    let t = rfs::Timespec {
        tv_sec: meta.mtime,
        tv_nsec: 0,
    };
    let times = rfs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rfs::utimensat(rfs::CWD, target, &times, rfs::AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::dir::DirRootfs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_a_tree_with_its_metadata() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        fs::create_dir_all(s.join("usr/bin")).unwrap();
        fs::write(s.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(s.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(s.join("usr/bin/tool"), s.join("usr/bin/tool2")).unwrap();
        std::os::unix::fs::symlink("usr/bin", s.join("bin")).unwrap();
        fs::create_dir(s.join("ro")).unwrap();
        fs::write(s.join("ro/f"), "x").unwrap();
        fs::set_permissions(s.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack(&DirRootfs::open(s).unwrap(), dst.path()).unwrap();
        let d = dst.path();
        let tool = fs::metadata(d.join("usr/bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!(
            tool.ino(),
            fs::metadata(d.join("usr/bin/tool2")).unwrap().ino()
        );
        assert_eq!(
            fs::read_link(d.join("bin")).unwrap(),
            PathBuf::from("usr/bin")
        );
        assert_eq!(fs::read(d.join("ro/f")).unwrap(), b"x");
        assert_eq!(fs::metadata(d.join("ro")).unwrap().mode() & 0o7777, 0o555);
        assert_eq!(
            fs::metadata(d.join("ro")).unwrap().mtime(),
            fs::metadata(s.join("ro")).unwrap().mtime()
        );
    }

    /// An image larger than the free space is refused before anything is
    /// written (a sparse file stands for a large one).
    #[test]
    fn refuses_an_image_larger_than_the_free_space() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let free = crate::source::decompress::free_bytes(dst.path()).unwrap();
        let size = free + (1 << 30);
        fs::File::create(src.path().join("big"))
            .unwrap()
            .set_len(size)
            .unwrap();
        let err = unpack(&DirRootfs::open(src.path()).unwrap(), dst.path()).unwrap_err();
        let err = format!("{:#}", anyhow::Error::from(err));
        let want = format!(
            "unpacking {}: the image needs {size} bytes, the filesystem has ",
            dst.path().display()
        );
        assert!(err.starts_with(&want) && err.ends_with(" free"), "{err}");
        assert_eq!(fs::read_dir(dst.path()).unwrap().count(), 0);
    }
}
