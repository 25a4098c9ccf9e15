//! The package database, trimmed for scanners. Vulnerability scanners
//! read dpkg's database to know what is installed; a minimal image keeps
//! the records of the packages that still own at least one kept file, as
//! `/var/lib/dpkg/status` (what dpkg-query reads) and one file per
//! package under `/var/lib/dpkg/status.d/` (what distroless images carry
//! and scanners look for), plus those packages' file lists.
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    io::{self, Read},
    path::{Path, PathBuf},
};

use crate::source::rootfs::{Kind, Meta, Rootfs};

pub(crate) const STATUS: &str = "/var/lib/dpkg/status";
const STATUS_D: &str = "/var/lib/dpkg/status.d";
const INFO: &str = "/var/lib/dpkg/info";

/// One installed package's record.
pub(crate) struct Package {
    pub(crate) name: String,
    pub(crate) arch: String,
    pub(crate) paragraph: String,
}

pub(crate) fn field<'a>(paragraph: &'a str, name: &str) -> Option<&'a str> {
    paragraph
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

pub(crate) fn installed(status: &str) -> Vec<Package> {
    status
        .split("\n\n")
        .filter(|p| field(p, "Status").is_some_and(|s| s.ends_with("installed")))
        .filter_map(|p| {
            Some(Package {
                name: field(p, "Package")?.to_string(),
                arch: field(p, "Architecture").unwrap_or("").to_string(),
                paragraph: p.trim_end().to_string(),
            })
        })
        .collect()
}

/// The dpkg file list of a package: `info/<name>.list` or, for a
/// multi-arch package, `info/<name>:<arch>.list`.
pub(crate) fn list_path(fs: &dyn Rootfs, p: &Package) -> Option<PathBuf> {
    [
        format!("{}:{}.list", p.name, p.arch),
        format!("{}.list", p.name),
    ]
    .into_iter()
    .map(|n| Path::new(INFO).join(n))
    .find(|path| matches!(fs.meta(path), Ok(Some(m)) if m.kind == Kind::Regular))
}

/// The trimmed database: the packages kept (names) and the synthesized
/// and kept files that carry it.
pub struct PackageDb {
    pub kept: Vec<String>,
    pub dropped: Vec<String>,
    /// New files (trimmed status, status.d entries).
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// Files taken from the source as they are (the kept packages' lists).
    pub lists: Vec<PathBuf>,
}

/// Trims the source's dpkg database to the packages owning a kept
/// regular file or symlink; `None` when the source has none.
pub fn trim(fs: &dyn Rootfs, kept_paths: &BTreeSet<PathBuf>) -> io::Result<Option<PackageDb>> {
    let Some(meta) = fs.meta(Path::new(STATUS))? else {
        return Ok(None);
    };
    if meta.kind != Kind::Regular {
        return Ok(None);
    }
    let status = String::from_utf8_lossy(&fs.read_all(Path::new(STATUS))?).into_owned();
    let mut db = PackageDb {
        kept: Vec::new(),
        dropped: Vec::new(),
        files: BTreeMap::new(),
        lists: Vec::new(),
    };
    let mut status_out = String::new();
    let mut dirs = RealDirs::default();
    for p in installed(&status) {
        let list = list_path(fs, &p);
        // Owning a directory (or `/lib`, a symlink to one) says nothing;
        // a file, or a link to a file, does.
        let owns_kept = match &list {
            Some(l) => String::from_utf8_lossy(&fs.read_all(l)?)
                .lines()
                .filter_map(|f| dirs.kept_as(fs, kept_paths, Path::new(f)))
                .any(|f| match fs.meta(&f) {
                    Ok(Some(m)) if m.kind == Kind::Regular => true,
                    Ok(Some(Meta {
                        kind: Kind::Symlink(_),
                        ..
                    })) => matches!(
                        super::resolve::resolve(fs, &f, true),
                        Ok(Some(r)) if matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Regular)
                    ),
                    _ => false,
                }),
            None => false,
        };
        if !owns_kept {
            db.dropped.push(p.name);
            continue;
        }
        status_out.push_str(&p.paragraph);
        status_out.push_str("\n\n");
        db.files.insert(
            Path::new(STATUS_D).join(&p.name),
            format!("{}\n", p.paragraph).into_bytes(),
        );
        db.lists.extend(list);
        db.kept.push(p.name);
    }
    db.files
        .insert(PathBuf::from(STATUS), status_out.into_bytes());
    // Without `info/format` dpkg reads the pre-multiarch layout and finds
    // no `pkg:arch.list` files.
    let format = Path::new(INFO).join("format");
    if matches!(fs.meta(&format), Ok(Some(m)) if m.kind == Kind::Regular) {
        db.lists.push(format);
    }
    Ok(Some(db))
}

/// Where the directories of listed files really are in the image, looked
/// up once each: Debian lists `/bin/dash`, a merged-/usr image holds it
/// (and the trace names it) as `/usr/bin/dash`.
#[derive(Default)]
struct RealDirs(BTreeMap<PathBuf, Option<PathBuf>>);

impl RealDirs {
    /// The kept path a listed file is at: its own name, or the name under
    /// its directory's real place.
    fn kept_as(
        &mut self,
        fs: &dyn Rootfs,
        kept: &BTreeSet<PathBuf>,
        listed: &Path,
    ) -> Option<PathBuf> {
        if kept.contains(listed) {
            return Some(listed.to_path_buf());
        }
        let (dir, name) = (listed.parent()?, listed.file_name()?);
        let real = self
            .0
            .entry(dir.to_path_buf())
            .or_insert_with(|| {
                super::resolve::resolve(fs, dir, true)
                    .ok()
                    .flatten()
                    .map(|r| r.path)
                    .filter(|p| p != dir)
            })
            .as_ref()?
            .join(name);
        kept.contains(&real).then_some(real)
    }
}

/// A Rootfs with some files replaced or added: how the trimmed database
/// reaches the output writer, which reads everything through a Rootfs.
pub struct WithFiles<'a> {
    pub base: &'a dyn Rootfs,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// Metadata for new directories and files (root-owned, 0755/0644).
    pub mtime: i64,
}

impl WithFiles<'_> {
    fn dir_added(&self, path: &Path) -> bool {
        self.files.keys().any(|f| f.parent() == Some(path))
    }
}

impl Rootfs for WithFiles<'_> {
    fn meta(&self, path: &Path) -> io::Result<Option<Meta>> {
        let plain = |kind, mode, size| Meta {
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: self.mtime,
            size,
            xattrs: Vec::new(),
            link_id: None,
        };
        if let Some(data) = self.files.get(path) {
            return Ok(Some(plain(Kind::Regular, 0o644, data.len() as u64)));
        }
        match self.base.meta(path)? {
            Some(m) => Ok(Some(m)),
            None if self.dir_added(path) => Ok(Some(plain(Kind::Dir, 0o755, 0))),
            None => Ok(None),
        }
    }
    fn read_head(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        match self.files.get(path) {
            Some(d) => Ok(d[..d.len().min(limit)].to_vec()),
            None => self.base.read_head(path, limit),
        }
    }
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.files.get(path) {
            Some(d) => Ok(d.clone()),
            None => self.base.read_all(path),
        }
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let mut names = self.base.list(dir)?;
        for f in self.files.keys().filter(|f| f.parent() == Some(dir)) {
            if let Some(n) = f.file_name() {
                names.push(n.to_os_string());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + '_>> {
        match self.files.get(path) {
            Some(d) => Ok(Box::new(io::Cursor::new(d.clone()))),
            None => self.base.open(path),
        }
    }
    fn describe(&self) -> String {
        self.base.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_installed_paragraphs() {
        let status = "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n\
                      Package: b\nStatus: deinstall ok config-files\nArchitecture: all\n\n\
                      Package: c\nStatus: install ok installed\nArchitecture: all\n";
        let p = installed(status);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["a", "c"]);
        assert_eq!(p[0].arch, "amd64");
        assert!(p[0].paragraph.ends_with("Version: 1"));
    }

    #[test]
    fn a_package_listing_its_file_under_a_merged_usr_link_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("var/lib/dpkg/info")).unwrap();
        std::fs::write(r.join("usr/bin/dash"), "elf").unwrap();
        std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
        std::fs::write(
            r.join("var/lib/dpkg/status"),
            "Package: dash\nStatus: install ok installed\nArchitecture: amd64\n\n\
             Package: other\nStatus: install ok installed\nArchitecture: amd64\n",
        )
        .unwrap();
        std::fs::write(
            r.join("var/lib/dpkg/info/dash.list"),
            "/.\n/bin\n/bin/dash\n",
        )
        .unwrap();
        std::fs::write(r.join("var/lib/dpkg/info/other.list"), "/bin/other\n").unwrap();
        let fs = crate::source::dir::DirRootfs::open(r).unwrap();
        // The trace names the file where it is.
        let kept: BTreeSet<PathBuf> = ["/bin", "/usr", "/usr/bin", "/usr/bin/dash"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        let db = trim(&fs, &kept).unwrap().unwrap();
        assert_eq!(db.kept, vec!["dash".to_string()]);
        assert_eq!(db.dropped, vec!["other".to_string()]);
    }
}
