//! Applying layers one over another, as container engines do: whiteouts
//! hide what lower layers had, directories merge, anything else replaces.
//! Nothing is ever resolved through a symlink a layer supplied.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::OsString,
    ops::Bound,
    path::{Path, PathBuf},
};

use super::{
    Data, LayerBlob, Node, ancestors_top_down, dir_meta,
    entries::{self, Op, Raw, RawKind, layer_components, read_entries, to_path, unsafe_name},
    view::LayeredRootfs,
};
use crate::source::{
    archive::{Region, verify},
    error::{NameProblem, SourceError},
    rootfs::{Kind, Meta},
};

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
        let (region, actual) = crate::source::archive::gunzip_to_temp(&layer.region, &layer.label)?;
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

    /// Applies a layer's entries: first its whiteouts (which only ever hide
    /// what lower layers had), then its additions in archive order.
    fn merge(&mut self, raws: Vec<Raw>, store: usize, label: &str) -> Result<(), SourceError> {
        let ops = entries::classify(raws, label)?;
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

    /// Adds one entry over what is there: its parents made (never through
    /// a symlink, never under a file), then the entry itself.
    fn add(
        &mut self,
        path: PathBuf,
        raw: Raw,
        store: usize,
        label: &str,
    ) -> Result<(), SourceError> {
        self.make_parents(&path, label)?;
        let Some(node) = self.node_for(&path, raw, store, label)? else {
            return Ok(());
        };
        if path == Path::new("/") {
            if node.meta.kind != Kind::Dir {
                return Err(bad_entry(label, &path, "the root must be a directory"));
            }
        } else if node.meta.kind != Kind::Dir {
            // A directory replaced by a non-directory takes its contents
            // with it; directory over directory merges.
            self.remove_tree(&path, true);
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// A missing parent directory (the layer has no entry for it) is
    /// created with default metadata, 0755 root:root, mtime 0, as container
    /// runtimes do; a symlink or a file on the way is an error.
    fn make_parents(&mut self, path: &Path, label: &str) -> Result<(), SourceError> {
        for a in ancestors_top_down(path) {
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
                        path: path.to_path_buf(),
                        link: a.to_path_buf(),
                    });
                }
                Some(_) => {
                    return Err(SourceError::NotADirectory {
                        layer: label.to_string(),
                        path: path.to_path_buf(),
                        parent: a.to_path_buf(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The node an entry becomes; None for a hardlink to itself.
    fn node_for(
        &mut self,
        path: &Path,
        raw: Raw,
        store: usize,
        label: &str,
    ) -> Result<Option<Node>, SourceError> {
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
        let plain = |kind| Node {
            meta: meta(kind, 0),
            data: None,
        };
        Ok(Some(match &raw.kind {
            RawKind::File { offset, size } => Node {
                meta: meta(Kind::Regular, *size),
                data: Some(Data {
                    store,
                    offset: *offset,
                }),
            },
            RawKind::Dir => plain(Kind::Dir),
            RawKind::Symlink(target) => {
                if target.contains(&0) {
                    return Err(unsafe_name(label, target, NameProblem::Nul));
                }
                if target.is_empty() {
                    return Err(bad_entry(label, path, "symlink with an empty target"));
                }
                plain(Kind::Symlink(target.clone()))
            }
            &RawKind::Char(major, minor) => plain(Kind::Char { major, minor }),
            &RawKind::Block(major, minor) => plain(Kind::Block { major, minor }),
            RawKind::Fifo => plain(Kind::Fifo),
            RawKind::Hardlink(target) => return self.hardlink(path, target, label),
        }))
    }

    /// A hardlink shares its target's inode: metadata and data. Same rules
    /// as entry names; the target must already exist (earlier in this
    /// layer or in a lower one), looked up exactly, never through a
    /// symlink.
    fn hardlink(
        &mut self,
        path: &Path,
        target: &[u8],
        label: &str,
    ) -> Result<Option<Node>, SourceError> {
        let comps = layer_components(target).map_err(|w| unsafe_name(label, target, w))?;
        let target = to_path(&comps);
        if target == path {
            return Ok(None);
        }
        let Some(t) = self.nodes.get_mut(&target) else {
            return Err(SourceError::HardlinkMissing {
                layer: label.to_string(),
                path: path.to_path_buf(),
                target,
            });
        };
        match t.meta.kind {
            Kind::Dir => return Err(bad_entry(label, path, "hardlink to a directory")),
            Kind::Regular if t.meta.link_id.is_none() => {
                t.meta.link_id = Some(self.next_link);
                self.next_link += 1;
            }
            _ => {}
        }
        Ok(Some(t.clone()))
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

fn bad_entry(label: &str, path: &Path, why: &str) -> SourceError {
    SourceError::BadEntry {
        layer: label.to_string(),
        path: path.display().to_string(),
        why: why.to_string(),
    }
}
