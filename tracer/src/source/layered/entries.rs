//! Reading a layer: its tar entry headers (file data is seeked over,
//! never read), the names checked, and each entry classified as an
//! addition, a whiteout or an opaque-directory marker.
use std::{ffi::OsStr, io, os::unix::ffi::OsStrExt, path::PathBuf};

use crate::source::{
    archive::Region,
    error::{NameProblem, SourceError},
};

/// A tar entry, as read from the layer, before it is merged.
pub(super) struct Raw {
    pub(super) name: Vec<u8>,
    pub(super) kind: RawKind,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: i64,
    pub(super) xattrs: Vec<(String, Vec<u8>)>,
}

pub(super) enum RawKind {
    File { offset: u64, size: u64 },
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// What a layer entry does to the merged tree.
pub(super) enum Op {
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

pub(super) const WHITEOUT: &[u8] = b".wh.";
pub(super) const OPAQUE: &[u8] = b".wh..wh..opq";

/// `a/b/c` from a layer → its components; an empty list is the root.
/// Names are refused, never rewritten: absolute (except the bare root `/`,
/// which umoci writes), `..` anywhere, NUL.
pub(super) fn layer_components(raw: &[u8]) -> Result<Vec<&[u8]>, NameProblem> {
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

pub(super) fn to_path(components: &[&[u8]]) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in components {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// What each entry of a layer does, in archive order.
pub(super) fn classify(raws: Vec<Raw>, label: &str) -> Result<Vec<Op>, SourceError> {
    let mut ops = Vec::with_capacity(raws.len());
    for raw in raws {
        let comps = layer_components(&raw.name).map_err(|w| unsafe_name(label, &raw.name, w))?;
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
    Ok(ops)
}

/// A name refused, with the layer it is in.
pub(super) fn unsafe_name(label: &str, name: &[u8], why: NameProblem) -> SourceError {
    SourceError::UnsafeName {
        layer: label.to_string(),
        name: String::from_utf8_lossy(name).into_owned(),
        why,
    }
}

/// Reads every entry header of a layer tar (seeking over file data) and
/// checks that each file's data lies inside the stream.
pub(super) fn read_entries(tar: &Region, label: &str) -> Result<Vec<Raw>, SourceError> {
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
        data_end = crate::source::archive::block_end(offset, size);
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
    crate::source::archive::check_tar_end(tar, data_end, label)?;
    Ok(out)
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
