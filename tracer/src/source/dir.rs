//! A root filesystem that is a directory on this host.
//!
//! Every path is looked up component by component with `openat` and
//! `O_NOFOLLOW` from a descriptor of the root directory, so a symlink in
//! the image can never lead outside it onto the host.
use std::{
    ffi::OsString,
    fs::File,
    io::{self, Read},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::{ffi::OsStringExt, fs::MetadataExt},
    },
    path::{Component, Path, PathBuf},
};

use rustix::{
    fs::{Mode, OFlags},
    io::Errno,
};

use super::rootfs::{Kind, Meta, Rootfs};

pub struct DirRootfs {
    root: PathBuf,
    root_fd: OwnedFd,
}

impl DirRootfs {
    pub fn open(root: &Path) -> io::Result<DirRootfs> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(DirRootfs {
            root: root.to_path_buf(),
            root_fd,
        })
    }

    /// The names of `path` below the root; `..` and `.` are refused.
    fn components(path: &Path) -> io::Result<Vec<&std::ffi::OsStr>> {
        let mut out = Vec::new();
        for c in path.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(n) => out.push(n),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a normalized absolute path", path.display()),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Opens `path` without following any symlink on the way. `flags` is
    /// applied to the last component.
    fn open_at(&self, path: &Path, flags: OFlags) -> io::Result<Option<OwnedFd>> {
        let names = Self::components(path)?;
        let mut held: Option<OwnedFd> = None;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let f = if last {
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC
            } else {
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
            };
            let dir = held.as_ref().unwrap_or(&self.root_fd);
            match rustix::fs::openat(dir, *name, f, Mode::empty()) {
                Ok(fd) => held = Some(fd),
                // Missing, or a symlink/file where a directory was needed.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        match held {
            Some(fd) => Ok(Some(fd)),
            // The root itself.
            None => Ok(Some(rustix::fs::openat(
                &self.root_fd,
                ".",
                flags | OFlags::CLOEXEC,
                Mode::empty(),
            )?)),
        }
    }

    fn file(&self, path: &Path) -> io::Result<File> {
        match self.open_at(path, OFlags::RDONLY)? {
            Some(fd) => Ok(File::from(fd)),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found in {}", path.display(), self.root.display()),
            )),
        }
    }
}

fn xattrs(fd: &OwnedFd) -> Vec<(String, Vec<u8>)> {
    // Read through /proc/self/fd so O_PATH descriptors (symlinks) work too.
    // The non-`l` calls follow that magic link to the opened inode itself
    // (the `l` variants would stop at the /proc link).
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut names = vec![0u8; 4096];
    let Ok(n) = rustix::fs::listxattr(proc.as_str(), &mut names) else {
        return Vec::new();
    };
    names.truncate(n);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::getxattr(proc.as_str(), name, &mut value) {
            value.truncate(len);
            out.push((String::from_utf8_lossy(name).into_owned(), value));
        }
    }
    out.sort();
    out
}

impl Rootfs for DirRootfs {
    fn meta(&self, path: &Path) -> io::Result<Option<Meta>> {
        let Some(fd) = self.open_at(path, OFlags::PATH)? else {
            return Ok(None);
        };
        let m = File::from(fd.try_clone()?).metadata()?;
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_symlink() {
            // An empty name reads the O_PATH link itself.
            Kind::Symlink(rustix::fs::readlinkat(&fd, "", Vec::new())?.into_bytes())
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_char_device() {
            Kind::Char {
                major: rustix::fs::major(m.rdev()),
                minor: rustix::fs::minor(m.rdev()),
            }
        } else if ft.is_block_device() {
            Kind::Block {
                major: rustix::fs::major(m.rdev()),
                minor: rustix::fs::minor(m.rdev()),
            }
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            Kind::Regular
        };
        let link_id = (kind == Kind::Regular && m.nlink() > 1).then(|| m.ino() ^ (m.dev() << 48));
        Ok(Some(Meta {
            size: if kind == Kind::Regular { m.size() } else { 0 },
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            xattrs: xattrs(&fd),
            link_id,
        }))
    }

    fn read_head(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.file(path)?.take(limit as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.file(path)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let Some(fd) = self.open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY)? else {
            return Ok(Vec::new());
        };
        let proc = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let mut names: Vec<OsString> = std::fs::read_dir(&proc)?
            .filter_map(|e| e.ok())
            .map(|e| OsString::from_vec(e.file_name().into_vec()))
            .collect();
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.file(path)?))
    }

    fn describe(&self) -> String {
        format!("rootfs {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_follows_symlinks_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "inside\n").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("hostetc")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", root.join("up")).unwrap();
        let fs = DirRootfs::open(root).unwrap();
        assert_eq!(
            fs.read_all(Path::new("/etc/hostname")).unwrap(),
            b"inside\n"
        );
        // Through a symlink: refused, not followed to the host's /etc.
        assert!(fs.meta(Path::new("/hostetc/passwd")).unwrap().is_none());
        assert!(fs.read_all(Path::new("/up")).is_err());
        assert_eq!(
            fs.meta(Path::new("/hostetc")).unwrap().unwrap().kind,
            Kind::Symlink(b"/etc".to_vec())
        );
        assert!(fs.meta(Path::new("/etc/../etc")).is_err());
        assert_eq!(
            fs.list(Path::new("/")).unwrap(),
            vec!["etc", "hostetc", "up"]
        );
        assert_eq!(fs.meta(Path::new("/")).unwrap().unwrap().kind, Kind::Dir);
    }

    #[test]
    fn hardlinks_share_an_id_and_setuid_is_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a"), "x").unwrap();
        std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
        std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        let fs = DirRootfs::open(root).unwrap();
        let a = fs.meta(Path::new("/a")).unwrap().unwrap();
        let b = fs.meta(Path::new("/b")).unwrap().unwrap();
        assert!(a.link_id.is_some());
        assert_eq!(a.link_id, b.link_id);
        assert_eq!(a.mode, 0o4755);
    }

    #[test]
    fn xattrs_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        rustix::fs::setxattr(&f, "trusted.test", b"v1", rustix::fs::XattrFlags::empty()).unwrap();
        let fs = DirRootfs::open(dir.path()).unwrap();
        let m = fs.meta(Path::new("/f")).unwrap().unwrap();
        assert_eq!(m.xattrs, vec![("trusted.test".to_string(), b"v1".to_vec())]);
    }
}
