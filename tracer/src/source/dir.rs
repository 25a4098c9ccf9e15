//! A root filesystem that is a directory on this host.
//!
//! Every path is looked up component by component with `openat` and
//! `O_NOFOLLOW` from a descriptor of the root directory, so a symlink in
//! the image can never lead outside it onto the host.
use std::{
    ffi::{CString, OsString},
    fs::File,
    io::{self, Read},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{
            ffi::{OsStrExt, OsStringExt},
            fs::MetadataExt,
        },
    },
    path::{Component, Path, PathBuf},
};

use super::rootfs::{Kind, Meta, Rootfs};

pub struct DirRootfs {
    root: PathBuf,
    root_fd: OwnedFd,
}

fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

impl DirRootfs {
    pub fn open(root: &Path) -> io::Result<DirRootfs> {
        let c = cstr(root.as_os_str().as_bytes())?;
        // SAFETY: plain open of a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirRootfs {
            root: root.to_path_buf(),
            // SAFETY: a descriptor we just opened.
            root_fd: unsafe { OwnedFd::from_raw_fd(fd) },
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
    fn open_at(&self, path: &Path, flags: libc::c_int) -> io::Result<Option<OwnedFd>> {
        let names = Self::components(path)?;
        let mut dir = self.root_fd.as_raw_fd();
        let mut held: Option<OwnedFd> = None;
        for (i, name) in names.iter().enumerate() {
            let last = i + 1 == names.len();
            let f = if last {
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC
            } else {
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
            };
            let c = cstr(name.as_bytes())?;
            // SAFETY: openat relative to a descriptor we hold.
            let fd = unsafe { libc::openat(dir, c.as_ptr(), f) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    // Missing, or a symlink/file where a directory was needed.
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => Ok(None),
                    _ => Err(e),
                };
            }
            // SAFETY: a descriptor we just opened.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            dir = owned.as_raw_fd();
            held = Some(owned);
        }
        match held {
            Some(fd) => Ok(Some(fd)),
            None => {
                // The root itself.
                let c = cstr(b".")?;
                // SAFETY: as above.
                let fd = unsafe {
                    libc::openat(
                        self.root_fd.as_raw_fd(),
                        c.as_ptr(),
                        flags | libc::O_CLOEXEC,
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: a descriptor we just opened.
                Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
            }
        }
    }

    fn file(&self, path: &Path) -> io::Result<File> {
        match self.open_at(path, libc::O_RDONLY)? {
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
    let Ok(p) = cstr(proc.as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: buffer of the stated size.
    let n = unsafe { libc::listxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = cstr(name) else { continue };
        let mut value = vec![0u8; 65536];
        // SAFETY: buffer of the stated size.
        let len = unsafe {
            libc::getxattr(
                p.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((String::from_utf8_lossy(name).into_owned(), value));
        }
    }
    out.sort();
    out
}

impl Rootfs for DirRootfs {
    fn meta(&self, path: &Path) -> io::Result<Option<Meta>> {
        let Some(fd) = self.open_at(path, libc::O_PATH)? else {
            return Ok(None);
        };
        let m = File::from(fd.try_clone()?).metadata()?;
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_symlink() {
            let mut buf = vec![0u8; 4096];
            let empty = cstr(b"")?;
            // SAFETY: readlinkat with an empty name reads the O_PATH link itself.
            let n = unsafe {
                libc::readlinkat(
                    fd.as_raw_fd(),
                    empty.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            buf.truncate(n as usize);
            Kind::Symlink(buf)
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_char_device() {
            Kind::Char {
                major: libc::major(m.rdev()),
                minor: libc::minor(m.rdev()),
            }
        } else if ft.is_block_device() {
            Kind::Block {
                major: libc::major(m.rdev()),
                minor: libc::minor(m.rdev()),
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
        let Some(fd) = self.open_at(dir, libc::O_RDONLY | libc::O_DIRECTORY)? else {
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
        let c = CString::new(f.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid strings and buffer.
        let rc = unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"trusted.test".as_ptr(),
                b"v1".as_ptr().cast(),
                2,
                0,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        let fs = DirRootfs::open(dir.path()).unwrap();
        let m = fs.meta(Path::new("/f")).unwrap().unwrap();
        assert_eq!(m.xattrs, vec![("trusted.test".to_string(), b"v1".to_vec())]);
    }
}
