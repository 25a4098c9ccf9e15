//! The merged filesystem of a layered image, held as an in-memory tree of
//! metadata whose file contents stay in place: in the layer blob itself
//! when it is an uncompressed tar, or in an anonymous temporary file that
//! holds the decompressed tar. Nothing is ever extracted onto disk, so a
//! hostile layer cannot write outside those temporary files.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::{OsStr, OsString},
    io::{self, Read},
    ops::Bound,
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use super::{
    archive::{Region, verify},
    error::{NameProblem, SourceError},
    rootfs::{Kind, Meta, Rootfs},
};

/// One layer to apply: where its blob is and how to check it.
pub struct LayerBlob {
    /// For messages: `layer 2/3 sha256:…`.
    pub label: String,
    /// The image file or directory the blob is read from (for I/O errors).
    pub origin: PathBuf,
    pub region: Region,
    /// sha256 (hex) of the blob as stored (OCI descriptor digest).
    pub blob_sha: Option<String>,
    /// sha256 (hex) of the uncompressed tar (config `rootfs.diff_ids`).
    pub diff_sha: Option<String>,
}

/// Where a regular file's bytes are: a store (layer tar) and an offset.
#[derive(Clone, Copy, Debug)]
struct Data {
    store: usize,
    offset: u64,
}

#[derive(Clone, Debug)]
struct Node {
    meta: Meta,
    data: Option<Data>,
}

/// A tar entry, as read from the layer, before it is merged.
struct Raw {
    name: Vec<u8>,
    kind: RawKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

enum RawKind {
    File { offset: u64, size: u64 },
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// What a layer entry does to the merged tree.
enum Op {
    Add(PathBuf, Raw),
    /// `.wh.<name>`: remove the path (and anything below) from lower layers.
    Whiteout {
        marker: PathBuf,
        target: PathBuf,
    },
    /// `.wh..wh..opq`: hide everything lower layers have in this directory.
    Opaque {
        marker: PathBuf,
        dir: PathBuf,
    },
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

fn dir_meta(mode: u32) -> Meta {
    Meta {
        kind: Kind::Dir,
        mode,
        uid: 0,
        gid: 0,
        mtime: 0,
        size: 0,
        xattrs: Vec::new(),
        link_id: None,
    }
}

/// `a/b/c` from a layer → its components; an empty list is the root.
/// Names are refused, never rewritten: absolute (except the bare root `/`,
/// which umoci writes), `..` anywhere, NUL.
fn layer_components(raw: &[u8]) -> Result<Vec<&[u8]>, NameProblem> {
    if raw.contains(&0) {
        return Err(NameProblem::Nul);
    }
    if !raw.is_empty() && raw.iter().all(|&b| b == b'/') {
        return Ok(Vec::new());
    }
    if raw.starts_with(b"/") {
        return Err(NameProblem::Absolute);
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(NameProblem::DotDot),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn to_path(components: &[&[u8]]) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in components {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// Ancestors of `path`, root first, excluding `path` itself.
fn ancestors_top_down(path: &Path) -> Vec<&Path> {
    let mut v: Vec<&Path> = path.ancestors().skip(1).collect();
    v.reverse();
    v
}

/// Builds the merged tree layer by layer.
pub struct Merger {
    nodes: BTreeMap<PathBuf, Node>,
    stores: Vec<Region>,
    next_link: u64,
}

impl Default for Merger {
    fn default() -> Self {
        Self::new()
    }
}

impl Merger {
    pub fn new() -> Merger {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            PathBuf::from("/"),
            Node {
                meta: dir_meta(0o755),
                data: None,
            },
        );
        Merger {
            nodes,
            stores: Vec::new(),
            next_link: 1,
        }
    }

    /// Verifies, decompresses if needed, and applies one layer on top of
    /// the tree so far.
    pub fn apply(&mut self, layer: &LayerBlob) -> Result<(), SourceError> {
        let origin = &layer.origin;
        // The digest is checked before anything else reads the blob, so a
        // tampered blob is reported as such and not as, say, bad gzip.
        if let Some(sha) = &layer.blob_sha {
            verify(&layer.region, &layer.label, sha, origin)?;
        }
        let magic = layer
            .region
            .read_exact_at(0, 6.min(layer.region.len() as usize))
            .map_err(SourceError::io(origin))?;
        let unsupported = |what| SourceError::UnsupportedCompression {
            layer: layer.label.clone(),
            what,
        };
        let tar = if magic.starts_with(&[0x1f, 0x8b]) {
            self.gunzip(layer)?
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(unsupported("zstd"));
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            return Err(unsupported("xz"));
        } else if magic.starts_with(b"BZh") {
            return Err(unsupported("bzip2"));
        } else {
            if let Some(diff) = &layer.diff_sha
                && layer.blob_sha.as_ref() != Some(diff)
            {
                verify(&layer.region, &layer.label, diff, origin)?;
            }
            layer.region.clone()
        };
        let raws = read_entries(&tar, &layer.label)?;
        self.stores.push(tar);
        let store = self.stores.len() - 1;
        self.merge(raws, store, &layer.label)
    }

    /// Decompresses a gzip layer once into an anonymous temporary file,
    /// checking the result against the layer's diff_id.
    fn gunzip(&self, layer: &LayerBlob) -> Result<Region, SourceError> {
        let (region, actual) = super::archive::gunzip_to_temp(&layer.region, &layer.label)?;
        if let Some(diff) = &layer.diff_sha
            && *diff != actual
        {
            return Err(SourceError::DigestMismatch {
                name: format!("{} (uncompressed, diff_id)", layer.label),
                expected: format!("sha256:{diff}"),
                actual: format!("sha256:{actual}"),
            });
        }
        Ok(region)
    }

    fn unsafe_name(label: &str, name: &[u8], why: NameProblem) -> SourceError {
        SourceError::UnsafeName {
            layer: label.to_string(),
            name: String::from_utf8_lossy(name).into_owned(),
            why,
        }
    }

    /// Applies a layer's entries: first its whiteouts (which only ever hide
    /// what lower layers had), then its additions in archive order.
    fn merge(&mut self, raws: Vec<Raw>, store: usize, label: &str) -> Result<(), SourceError> {
        let mut ops = Vec::with_capacity(raws.len());
        for raw in raws {
            let comps =
                layer_components(&raw.name).map_err(|w| Self::unsafe_name(label, &raw.name, w))?;
            let Some((&last, parent)) = comps.split_last() else {
                ops.push(Op::Add(PathBuf::from("/"), raw));
                continue;
            };
            if last == OPAQUE {
                ops.push(Op::Opaque {
                    marker: to_path(&comps),
                    dir: to_path(parent),
                });
            } else if last.starts_with(b".wh..wh.") {
                // Other aufs bookkeeping (`.wh..wh.plnk`, …): not content.
                continue;
            } else if let Some(name) = last.strip_prefix(WHITEOUT) {
                if name.is_empty() || name == b"." || name == b".." {
                    return Err(SourceError::BadEntry {
                        layer: label.to_string(),
                        path: to_path(&comps).display().to_string(),
                        why: "whiteout names no file".into(),
                    });
                }
                let mut target = to_path(parent);
                target.push(OsStr::from_bytes(name));
                ops.push(Op::Whiteout {
                    marker: to_path(&comps),
                    target,
                });
            } else {
                ops.push(Op::Add(to_path(&comps), raw));
            }
        }
        // Directories this layer itself creates: a lower symlink there is
        // being replaced, so markers below it hide nothing and are harmless.
        let layer_dirs: HashSet<PathBuf> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Add(
                    p,
                    Raw {
                        kind: RawKind::Dir, ..
                    },
                ) => Some(p.clone()),
                _ => None,
            })
            .collect();
        for op in &ops {
            match op {
                Op::Whiteout { marker, target } => {
                    if self.lower_dir_ok(marker, &layer_dirs, label)? {
                        self.remove_tree(target, false);
                    }
                }
                Op::Opaque { marker, dir } => {
                    if self.lower_dir_ok(marker, &layer_dirs, label)? {
                        self.remove_tree(dir, true);
                    }
                }
                Op::Add(..) => {}
            }
        }
        for op in ops {
            if let Op::Add(path, raw) = op {
                self.add(path, raw, store, label)?;
            }
        }
        Ok(())
    }

    /// Whether the directories holding a whiteout marker are real
    /// directories in the lower layers (so there is something to hide).
    /// A symlink on the way is an error: a naive extractor would follow it.
    fn lower_dir_ok(
        &self,
        marker: &Path,
        layer_dirs: &HashSet<PathBuf>,
        label: &str,
    ) -> Result<bool, SourceError> {
        for a in ancestors_top_down(marker) {
            match self.nodes.get(a).map(|n| &n.meta.kind) {
                Some(Kind::Dir) => {}
                Some(Kind::Symlink(_)) if !layer_dirs.contains(a) => {
                    return Err(SourceError::SymlinkParent {
                        layer: label.to_string(),
                        path: marker.to_path_buf(),
                        link: a.to_path_buf(),
                    });
                }
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Removes everything below `path`, and `path` itself unless `keep`.
    fn remove_tree(&mut self, path: &Path, keep: bool) {
        let below: Vec<PathBuf> = self
            .nodes
            .range::<Path, _>((Bound::Excluded(path), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(path))
            .cloned()
            .collect();
        for k in below {
            self.nodes.remove(&k);
        }
        if !keep && path != Path::new("/") {
            self.nodes.remove(path);
        }
    }

    fn add(
        &mut self,
        path: PathBuf,
        raw: Raw,
        store: usize,
        label: &str,
    ) -> Result<(), SourceError> {
        let bad = |why: &str| SourceError::BadEntry {
            layer: label.to_string(),
            path: path.display().to_string(),
            why: why.to_string(),
        };
        // Parents: never through a symlink, never under a file. A missing
        // parent directory (the layer has no entry for it) is created with
        // default metadata, 0755 root:root, mtime 0, as container runtimes do.
        for a in ancestors_top_down(&path) {
            match self.nodes.get(a).map(|n| &n.meta.kind) {
                Some(Kind::Dir) => {}
                None => {
                    self.nodes.insert(
                        a.to_path_buf(),
                        Node {
                            meta: dir_meta(0o755),
                            data: None,
                        },
                    );
                }
                Some(Kind::Symlink(_)) => {
                    return Err(SourceError::SymlinkParent {
                        layer: label.to_string(),
                        path: path.clone(),
                        link: a.to_path_buf(),
                    });
                }
                Some(_) => {
                    return Err(SourceError::NotADirectory {
                        layer: label.to_string(),
                        path: path.clone(),
                        parent: a.to_path_buf(),
                    });
                }
            }
        }
        let meta = |kind: Kind, size: u64| Meta {
            kind,
            mode: raw.mode,
            uid: raw.uid,
            gid: raw.gid,
            mtime: raw.mtime,
            size,
            xattrs: raw.xattrs.clone(),
            link_id: None,
        };
        let node = match &raw.kind {
            RawKind::File { offset, size } => Node {
                meta: meta(Kind::Regular, *size),
                data: Some(Data {
                    store,
                    offset: *offset,
                }),
            },
            RawKind::Dir => Node {
                meta: meta(Kind::Dir, 0),
                data: None,
            },
            RawKind::Symlink(target) => {
                if target.contains(&0) {
                    return Err(Self::unsafe_name(label, target, NameProblem::Nul));
                }
                if target.is_empty() {
                    return Err(bad("symlink with an empty target"));
                }
                Node {
                    meta: meta(Kind::Symlink(target.clone()), 0),
                    data: None,
                }
            }
            RawKind::Char(major, minor) => Node {
                meta: meta(
                    Kind::Char {
                        major: *major,
                        minor: *minor,
                    },
                    0,
                ),
                data: None,
            },
            RawKind::Block(major, minor) => Node {
                meta: meta(
                    Kind::Block {
                        major: *major,
                        minor: *minor,
                    },
                    0,
                ),
                data: None,
            },
            RawKind::Fifo => Node {
                meta: meta(Kind::Fifo, 0),
                data: None,
            },
            RawKind::Hardlink(target) => {
                // Same rules as entry names; the target must already exist
                // (earlier in this layer or in a lower one), looked up
                // exactly, never through a symlink.
                let comps =
                    layer_components(target).map_err(|w| Self::unsafe_name(label, target, w))?;
                let target = to_path(&comps);
                if target == path {
                    return Ok(());
                }
                let Some(t) = self.nodes.get_mut(&target) else {
                    return Err(SourceError::HardlinkMissing {
                        layer: label.to_string(),
                        path,
                        target,
                    });
                };
                match t.meta.kind {
                    Kind::Dir => return Err(bad("hardlink to a directory")),
                    Kind::Regular if t.meta.link_id.is_none() => {
                        t.meta.link_id = Some(self.next_link);
                        self.next_link += 1;
                    }
                    _ => {}
                }
                // One inode: the link shares the target's metadata and data.
                t.clone()
            }
        };
        if path == Path::new("/") {
            if node.meta.kind != Kind::Dir {
                return Err(bad("the root must be a directory"));
            }
        } else if node.meta.kind != Kind::Dir {
            // A directory replaced by a non-directory takes its contents
            // with it; directory over directory merges.
            self.remove_tree(&path, true);
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// The finished tree. `link_id`s left with a single name (the others
    /// were deleted or replaced by upper layers) are cleared.
    pub fn finish(mut self, label: String) -> LayeredRootfs {
        let mut names: HashMap<u64, usize> = HashMap::new();
        for n in self.nodes.values() {
            if let Some(id) = n.meta.link_id {
                *names.entry(id).or_default() += 1;
            }
        }
        for n in self.nodes.values_mut() {
            if let Some(id) = n.meta.link_id
                && names.get(&id).copied().unwrap_or(0) < 2
            {
                n.meta.link_id = None;
            }
        }
        // Keys are ordered component-wise, so children arrive sorted.
        let mut children: HashMap<PathBuf, Vec<OsString>> = HashMap::new();
        for k in self.nodes.keys() {
            if let (Some(parent), Some(name)) = (k.parent(), k.file_name()) {
                children
                    .entry(parent.to_path_buf())
                    .or_default()
                    .push(name.to_os_string());
            }
        }
        LayeredRootfs {
            label,
            nodes: self.nodes,
            children,
            stores: self.stores,
        }
    }
}

/// Reads every entry header of a layer tar (seeking over file data) and
/// checks that each file's data lies inside the stream.
fn read_entries(tar: &Region, label: &str) -> Result<Vec<Raw>, SourceError> {
    let bad = |source: io::Error| SourceError::BadTar {
        layer: label.to_string(),
        source,
    };
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(tar.reader());
    let mut data_end = 0;
    for entry in ar.entries_with_seek().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let et = entry.header().entry_type();
        let name = entry.path_bytes().into_owned();
        let shown = || String::from_utf8_lossy(&name).into_owned();
        // Whatever its type, an entry's data must be in the stream: the
        // tar crate seeks over it and takes the end of the file for the
        // end of the archive.
        let (offset, size) = (entry.raw_file_position(), entry.size());
        if offset.saturating_add(size) > tar.len() {
            return Err(SourceError::TruncatedTar {
                layer: label.to_string(),
                name: shown(),
                needed: offset.saturating_add(size),
                have: tar.len(),
            });
        }
        data_end = super::archive::block_end(offset, size);
        if et.is_pax_global_extensions() {
            continue;
        }
        let bad_entry = |why: String| SourceError::BadEntry {
            layer: label.to_string(),
            path: shown(),
            why,
        };
        let h = entry.header();
        let mode = h.mode().map_err(bad)? & 0o7777;
        let uid = h.uid().map_err(bad)?;
        let gid = h.gid().map_err(bad)?;
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(bad_entry(format!("uid/gid {uid}/{gid} out of range")));
        };
        let mut mtime = i64::try_from(h.mtime().map_err(bad)?).unwrap_or(i64::MAX);
        let devices = (h.device_major(), h.device_minor());
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(bad)? {
            for ext in pax {
                let ext = ext.map_err(bad)?;
                let key = ext.key_bytes();
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((
                        String::from_utf8_lossy(x).into_owned(),
                        ext.value_bytes().to_vec(),
                    ));
                } else if key == b"mtime" {
                    // Seconds, possibly with a fraction: keep the seconds.
                    let v = String::from_utf8_lossy(ext.value_bytes()).into_owned();
                    if let Ok(s) = v.split('.').next().unwrap_or("").parse::<i64>() {
                        mtime = s;
                    }
                }
            }
        }
        xattrs.sort();
        let device = || -> Result<(u32, u32), SourceError> {
            let (major, minor) = (&devices.0, &devices.1);
            match (major, minor) {
                (Ok(a), Ok(b)) => Ok((a.unwrap_or(0), b.unwrap_or(0))),
                _ => Err(bad_entry("unreadable device numbers".into())),
            }
        };
        let kind = match et {
            // An old-style (v7) directory is a "regular file" named `x/`.
            tar::EntryType::Regular if name.ends_with(b"/") && size == 0 => RawKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => RawKind::File { offset, size },
            tar::EntryType::Directory => RawKind::Dir,
            tar::EntryType::Symlink => RawKind::Symlink(link.unwrap_or_default()),
            tar::EntryType::Link => match link {
                Some(l) if !l.is_empty() => RawKind::Hardlink(l),
                _ => return Err(bad_entry("hardlink without a target".into())),
            },
            tar::EntryType::Char => {
                let (a, b) = device()?;
                RawKind::Char(a, b)
            }
            tar::EntryType::Block => {
                let (a, b) = device()?;
                RawKind::Block(a, b)
            }
            tar::EntryType::Fifo => RawKind::Fifo,
            tar::EntryType::GNUSparse => {
                return Err(bad_entry("sparse files are not supported".into()));
            }
            other => {
                return Err(bad_entry(format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                )));
            }
        };
        out.push(Raw {
            name,
            kind,
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        });
    }
    super::archive::check_tar_end(tar, data_end, label)?;
    Ok(out)
}

/// The merged root filesystem of a layered image.
pub struct LayeredRootfs {
    label: String,
    nodes: BTreeMap<PathBuf, Node>,
    children: HashMap<PathBuf, Vec<OsString>>,
    stores: Vec<Region>,
}

impl LayeredRootfs {
    /// The tree key for a caller's path: absolute or relative to the root;
    /// `.`/`..` are refused like `DirRootfs` does.
    fn key(path: &Path) -> io::Result<PathBuf> {
        let mut key = PathBuf::from("/");
        for c in path.components() {
            match c {
                Component::RootDir => {}
                Component::Normal(n) => key.push(n),
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a normalized absolute path", path.display()),
                    ));
                }
            }
        }
        Ok(key)
    }

    /// The bytes of a regular file, as a region of its layer store.
    fn data(&self, path: &Path) -> io::Result<Region> {
        let key = Self::key(path)?;
        let Some(node) = self.nodes.get(&key) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found in {}", path.display(), self.label),
            ));
        };
        match (&node.meta.kind, node.data) {
            (Kind::Regular, Some(d)) => match self.stores.get(d.store) {
                Some(s) => Ok(s.sub(d.offset, node.meta.size)),
                None => Err(io::Error::other("internal: unknown layer store")),
            },
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            )),
        }
    }

    /// Entries (the root excluded) and the size of regular files, each
    /// hardlinked file counted once.
    pub fn totals(&self) -> (u64, u64) {
        let mut seen = HashSet::new();
        let mut bytes = 0u64;
        for n in self.nodes.values() {
            if n.meta.kind == Kind::Regular && n.meta.link_id.is_none_or(|id| seen.insert(id)) {
                bytes += n.meta.size;
            }
        }
        (bytes, self.nodes.len() as u64 - 1)
    }
}

impl Rootfs for LayeredRootfs {
    fn meta(&self, path: &Path) -> io::Result<Option<Meta>> {
        Ok(self.nodes.get(&Self::key(path)?).map(|n| n.meta.clone()))
    }

    fn read_head(&self, path: &Path, limit: usize) -> io::Result<Vec<u8>> {
        let r = self.data(path)?;
        r.read_exact_at(0, limit.min(usize::try_from(r.len()).unwrap_or(usize::MAX)))
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let r = self.data(path)?;
        let len = usize::try_from(r.len()).map_err(io::Error::other)?;
        r.read_exact_at(0, len)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        Ok(self
            .children
            .get(&Self::key(dir)?)
            .cloned()
            .unwrap_or_default())
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.data(path)?.reader()))
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_refused_not_rewritten() {
        assert_eq!(layer_components(b"/").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(layer_components(b"./").unwrap(), Vec::<&[u8]>::new());
        assert_eq!(
            layer_components(b"./usr//bin/").unwrap(),
            vec![&b"usr"[..], b"bin"]
        );
        assert_eq!(layer_components(b"/etc/x"), Err(NameProblem::Absolute));
        assert_eq!(layer_components(b"a/../../x"), Err(NameProblem::DotDot));
        assert_eq!(layer_components(b"a\0b"), Err(NameProblem::Nul));
    }
}
