//! Applying layers one over another, as container engines do: whiteouts
//! hide what lower layers had, directories merge, anything else replaces.
//! Nothing is ever resolved through a symlink a layer supplied.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ffi::OsString,
    ops::Bound,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use super::{
    Data, LayerBlob, Node, ancestors_top_down, dir_meta,
    entries::{self, Op, Raw, RawKind, layer_components, read_entries, to_path, unsafe_name},
    view::LayeredRootfs,
};
use crate::source::{
    archive::{Region, verify},
    decompress::{self, Compression},
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
        let (tar, raws) = read_verified(layer)?;
        self.stores.push(tar);
        let store = self.stores.len() - 1;
        self.merge(raws, store, &layer.label)
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

/// A layer's tar (decompressed if need be) and its entries, read while
/// other threads check the blob's digests: hashing is the longest step of
/// an uncompressed layer, and reading the headers does not wait for it. A
/// digest mismatch is what is reported whenever there is one, so a
/// tampered blob is named as such and not as, say, bad gzip; and nothing
/// read from the blob leaves here before its digests have matched.
fn read_verified(layer: &LayerBlob) -> Result<(Region, Vec<Raw>), SourceError> {
    let origin = &layer.origin;
    let magic = layer
        .region
        .read_exact_at(0, 512.min(layer.region.len() as usize))
        .map_err(SourceError::io(origin))?;
    let how = Compression::detect(&magic);
    // A plain tar is its own uncompressed form: its diff_id is checked on
    // the same bytes (a compressed layer's is checked as it is decompressed).
    let mut digests: Vec<&String> = layer.blob_sha.iter().collect();
    if how == Compression::None
        && let Some(diff) = &layer.diff_sha
        && !digests.contains(&diff)
    {
        digests.push(diff);
    }
    // Decompression stops early once a digest is known to be wrong.
    let tampered = AtomicBool::new(false);
    std::thread::scope(|s| {
        let checks: Vec<_> = digests
            .into_iter()
            .map(|sha| {
                let tampered = &tampered;
                s.spawn(move || {
                    let r = verify(&layer.region, &layer.label, sha, origin);
                    if r.is_err() {
                        tampered.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        let read = match how {
            Compression::None => Ok(layer.region.clone()),
            _ => decompress(layer, how, &tampered),
        }
        .and_then(|tar| {
            let raws = read_entries(&tar, &layer.label)?;
            Ok((tar, raws))
        });
        for check in checks {
            check.join().map_err(|_| SourceError::Io {
                path: origin.clone(),
                source: std::io::Error::other("a digest check's thread panicked"),
            })??;
        }
        read
    })
}

/// Decompresses a layer once into an anonymous temporary file,
/// checking the result against the layer's diff_id.
fn decompress(
    layer: &LayerBlob,
    how: Compression,
    tampered: &AtomicBool,
) -> Result<Region, SourceError> {
    let limits = decompress::limits();
    let (region, actual) =
        decompress::to_temp_until(&layer.region, how, &layer.label, limits, tampered)?;
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::source::archive::hex;

    fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn sha(b: &[u8]) -> String {
        hex(&Sha256::digest(b))
    }

    fn zstd_of(b: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(b, ruzstd::encoding::CompressionLevel::Fastest)
    }

    /// A zstd layer is read like a gzip one, checked against both digests.
    #[test]
    fn a_zstd_layer_is_read_and_checked() {
        let good = tar_with("etc/x", &[7u8; 5000]);
        let z = zstd_of(&good);
        let mut m = Merger::new();
        let r = m.apply(&blob(&z, Some(sha(&z)), Some(sha(&good))));
        assert!(r.is_ok(), "{r:?}");
        assert!(
            m.nodes.contains_key(Path::new("/etc/x")),
            "{:?}",
            m.nodes.keys()
        );
    }

    fn blob(bytes: &[u8], blob_sha: Option<String>, diff_sha: Option<String>) -> LayerBlob {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        LayerBlob {
            label: "layer 1/1".into(),
            origin: PathBuf::from("/image"),
            region: Region::whole(f).unwrap(),
            blob_sha,
            diff_sha,
        }
    }

    fn apply(layer: &LayerBlob) -> Result<(), SourceError> {
        Merger::new().apply(layer)
    }

    fn mismatch(r: Result<(), SourceError>) -> bool {
        matches!(r, Err(SourceError::DigestMismatch { .. }))
    }

    /// A docker archive names its layers by diff_id only: that is the
    /// digest checked, beside the reading of the headers.
    #[test]
    fn a_plain_layer_is_checked_against_its_diff_id() {
        let good = tar_with("etc/x", &[7u8; 5000]);
        let r = apply(&blob(&good, None, Some(sha(&good))));
        assert!(r.is_ok(), "{r:?}");
        let mut bad = good.clone();
        bad[512 + 100] ^= 1;
        assert!(mismatch(apply(&blob(&bad, None, Some(sha(&good))))));
        // Also when the same blob is named by both digests.
        assert!(mismatch(apply(&blob(
            &bad,
            Some(sha(&good)),
            Some(sha(&good))
        ))));
    }

    /// Whatever else is wrong with a tampered blob, the mismatch is what
    /// is reported, though the blob is read while it is hashed.
    #[test]
    fn a_digest_mismatch_wins_over_what_the_tampered_blob_breaks() {
        let good = tar_with("etc/x", &[7u8; 5000]);
        // A header cut in half: a malformed tar.
        let cut = &good[..100];
        let r = apply(&blob(cut, None, None));
        assert!(matches!(r, Err(SourceError::BadTar { .. })), "{r:?}");
        assert!(mismatch(apply(&blob(cut, None, Some(sha(&good))))));
        // Corrupt gzip.
        let mut z = gzip(&good);
        let mid = z.len() / 2;
        z[mid] ^= 0x55;
        z[mid + 1] ^= 0x55;
        assert!(mismatch(apply(&blob(&z, Some(sha(&gzip(&good))), None))));
        // Corrupt xz, unless the digest is wrong.
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0];
        assert!(matches!(
            apply(&blob(&xz, Some(sha(&xz)), None)),
            Err(SourceError::Corrupt { what: "xz", .. })
        ));
        assert!(mismatch(apply(&blob(&xz, Some(sha(&good)), None))));
        // Corrupt zstd (a frame header cut short), and a zstd layer whose
        // diff_id is not its content's.
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
        assert!(matches!(
            apply(&blob(&zstd, Some(sha(&zstd)), None)),
            Err(SourceError::Corrupt { what: "zstd", .. })
        ));
        let z = zstd_of(&good);
        assert!(mismatch(apply(&blob(&z, Some(sha(&z)), Some(sha(&z))))));
        // A large, well-formed gzip stream under the wrong digest: the
        // decompression beside the check gives up, the mismatch is told.
        let big = gzip(&tar_with("big", &vec![0u8; 64 << 20]));
        assert!(mismatch(apply(&blob(&big, Some(sha(&good)), None))));
        // And with the right digests it is read whole.
        let big_tar = tar_with("big", &vec![0u8; 64 << 20]);
        assert!(apply(&blob(&big, Some(sha(&big)), Some(sha(&big_tar)))).is_ok());
    }
}
