//! Random access to the bytes of an image: byte ranges of files
//! ([`Region`]) and the blobs of an image, whether they are files in a
//! directory or members of an uncompressed tar ([`Store`]). Nothing here
//! extracts anything: members of an archive are read in place.
use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use sha2::{Digest as _, Sha256};

use super::error::{NameProblem, SourceError};

/// A byte range of a file. Reads use `pread`, so any number of readers can
/// share one descriptor without seeking it.
#[derive(Clone, Debug)]
pub struct Region {
    file: Arc<File>,
    start: u64,
    len: u64,
}

impl Region {
    pub fn whole(file: File) -> io::Result<Region> {
        let len = file.metadata()?.len();
        Ok(Region {
            file: Arc::new(file),
            start: 0,
            len,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `len` bytes from `offset`, clamped to this region.
    pub fn sub(&self, offset: u64, len: u64) -> Region {
        let offset = offset.min(self.len);
        Region {
            file: Arc::clone(&self.file),
            start: self.start + offset,
            len: len.min(self.len - offset),
        }
    }

    /// Reads at `offset` within the region; 0 at or past its end.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let room = usize::try_from(self.len - offset).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        self.file.read_at(&mut buf[..n], self.start + offset)
    }

    /// Exactly `len` bytes from `offset`; an error if the region is shorter.
    pub fn read_exact_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match self.read_at(&mut out[done..], offset + done as u64) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub fn reader(&self) -> RegionReader {
        RegionReader {
            region: self.clone(),
            pos: 0,
        }
    }
}

/// A `Read + Seek` cursor over a [`Region`].
pub struct RegionReader {
    region: Region,
    pos: u64,
}

impl Read for RegionReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.region.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RegionReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::End(d) => (self.region.len, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        match base.0.checked_add_signed(base.1) {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            )),
        }
    }
}

/// Checks what follows the last entry of a tar `region` whose entries'
/// data ends at `data_end`: only zeros (the end-of-archive blocks and
/// padding) may follow. Data there is not part of any entry the tar crate
/// reports, so it is refused rather than silently ignored. The end blocks
/// themselves may be missing: umoci writes layers without them.
pub fn check_tar_end(region: &Region, data_end: u64, label: &str) -> Result<(), SourceError> {
    let len = region.len();
    let mut buf = vec![0u8; 1 << 16];
    let mut at = data_end;
    while at < len {
        let n = region
            .read_at(&mut buf, at)
            .map_err(|source| SourceError::BadTar {
                layer: label.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
            return Err(SourceError::TrailingData {
                layer: label.to_string(),
                at: at + i as u64,
            });
        }
        at += n as u64;
    }
    Ok(())
}

/// Where the data of an entry at `offset` with `size` bytes ends, padded
/// to the next 512-byte block.
pub fn block_end(offset: u64, size: u64) -> u64 {
    offset.saturating_add(size).saturating_add(511) / 512 * 512
}

/// Lowercase hex of a byte string (digests).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The hex of a `sha256:<64 lowercase hex>` digest; anything else is refused
/// (and so can never be used to build a path).
pub fn sha256_hex(digest: &str) -> Result<&str, SourceError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if is_sha256_hex(h) => Ok(h),
        _ => Err(SourceError::UnsupportedDigest(digest.to_string())),
    }
}

pub fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// sha256 of a whole region, read sequentially.
pub fn sha256_region(region: &Region) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut r = region.reader();
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks that `region` hashes to `expected` (hex); `name` is for the error.
pub fn verify(
    region: &Region,
    name: &str,
    expected: &str,
    origin: &Path,
) -> Result<(), SourceError> {
    let actual = sha256_region(region).map_err(SourceError::io(origin))?;
    if actual != expected {
        return Err(SourceError::DigestMismatch {
            name: name.to_string(),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(())
}

/// A member of an archive: data in place, or a link to another member.
#[derive(Clone, Debug)]
pub enum Member {
    Data { offset: u64, size: u64 },
    Link(String),
}

/// Where the files of an image (blobs, `index.json`, `manifest.json`)
/// live: a directory, or an uncompressed tar read in place.
pub enum Store {
    Dir(PathBuf),
    Archive {
        path: PathBuf,
        region: Region,
        members: HashMap<String, Member>,
    },
}

/// Normalizes a member name of an outer archive to `a/b/c`: `.` and empty
/// components dropped, a leading `/` tolerated (the name is only a key,
/// nothing is written), `..` that would climb above the top refused.
fn member_name(raw: &[u8]) -> Result<String, NameProblem> {
    if raw.contains(&0) {
        return Err(NameProblem::Nul);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop().ok_or(NameProblem::DotDot)?;
            }
            c => parts.push(c),
        }
    }
    Ok(String::from_utf8_lossy(&parts.join(&b'/')).into_owned())
}

impl Store {
    /// Indexes the members of an uncompressed tar (names, data offsets,
    /// links) without copying any data.
    pub fn archive(path: &Path, region: Region) -> Result<Store, SourceError> {
        let label = path.display().to_string();
        let bad = |source: io::Error| SourceError::BadTar {
            layer: label.clone(),
            source,
        };
        let mut members = HashMap::new();
        let mut ar = tar::Archive::new(region.reader());
        let mut data_end = 0;
        for entry in ar.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let raw = entry.path_bytes().into_owned();
            let (offset, size) = (entry.raw_file_position(), entry.size());
            if offset.saturating_add(size) > region.len() {
                return Err(SourceError::TruncatedTar {
                    layer: label,
                    name: String::from_utf8_lossy(&raw).into_owned(),
                    needed: offset.saturating_add(size),
                    have: region.len(),
                });
            }
            data_end = block_end(offset, size);
            let name = member_name(&raw).map_err(|why| SourceError::UnsafeName {
                layer: label.clone(),
                name: String::from_utf8_lossy(&raw).into_owned(),
                why,
            })?;
            let unsafe_link = |why| SourceError::UnsafeName {
                layer: label.clone(),
                name: String::from_utf8_lossy(&raw).into_owned(),
                why,
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    Member::Data { offset, size }
                }
                tar::EntryType::Symlink => {
                    // Relative to the link's directory, kept inside the archive.
                    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                    let joined = if target.starts_with(b"/") {
                        target
                    } else {
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        [dir.as_bytes(), b"/", &target].concat()
                    };
                    Member::Link(member_name(&joined).map_err(unsafe_link)?)
                }
                tar::EntryType::Link => {
                    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                    Member::Link(member_name(&target).map_err(unsafe_link)?)
                }
                _ => continue,
            };
            members.insert(name, member);
        }
        check_tar_end(&region, data_end, &label)?;
        Ok(Store::Archive {
            path: path.to_path_buf(),
            region,
            members,
        })
    }

    /// The file or archive this store reads, for messages.
    pub fn origin(&self) -> &Path {
        match self {
            Store::Dir(p) => p,
            Store::Archive { path, .. } => path,
        }
    }

    /// The member `name` (`index.json`, `blobs/sha256/<hex>`); `None` when
    /// absent. Only names built from validated digests or read from the
    /// image's own manifest reach this, and an archive lookup never touches
    /// the host filesystem.
    pub fn get(&self, name: &str) -> Result<Option<Region>, SourceError> {
        match self {
            Store::Dir(dir) => {
                let path = dir.join(name);
                match File::open(&path) {
                    Ok(f) => {
                        if !f.metadata().map_err(SourceError::io(&path))?.is_file() {
                            return Ok(None);
                        }
                        Region::whole(f).map(Some).map_err(SourceError::io(&path))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(SourceError::Io { path, source: e }),
                }
            }
            Store::Archive {
                region, members, ..
            } => {
                let Ok(mut key) = member_name(name.as_bytes()) else {
                    return Ok(None);
                };
                // Follow links between members, a bounded number of times.
                for _ in 0..16 {
                    match members.get(&key) {
                        None => return Ok(None),
                        Some(Member::Data { offset, size }) => {
                            return Ok(Some(region.sub(*offset, *size)));
                        }
                        Some(Member::Link(to)) => key = to.clone(),
                    }
                }
                Ok(None)
            }
        }
    }

    /// Whether member `name` exists.
    pub fn has(&self, name: &str) -> bool {
        matches!(self.get(name), Ok(Some(_)))
    }

    /// A small member (JSON), read whole; at most `max` bytes.
    pub fn read_small(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let Some(region) = self.get(name)? else {
            return Ok(None);
        };
        if region.len() > max {
            return Err(SourceError::Malformed {
                what: name.to_string(),
                why: format!("{} bytes, more than the {max} allowed", region.len()),
            });
        }
        let len = usize::try_from(region.len()).unwrap_or(usize::MAX);
        region
            .read_exact_at(0, len)
            .map(Some)
            .map_err(SourceError::io(self.origin()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_stay_inside() {
        assert_eq!(member_name(b"./blobs//sha256/x").unwrap(), "blobs/sha256/x");
        assert_eq!(member_name(b"/index.json").unwrap(), "index.json");
        assert_eq!(member_name(b"a/../b").unwrap(), "b");
        assert_eq!(member_name(b"../b"), Err(NameProblem::DotDot));
        assert_eq!(member_name(b"a\0b"), Err(NameProblem::Nul));
    }

    #[test]
    fn digests_are_validated_before_use() {
        assert!(sha256_hex("sha256:../../etc/passwd").is_err());
        assert!(sha256_hex(&format!("sha512:{}", "0".repeat(128))).is_err());
        let h = "a".repeat(64);
        assert_eq!(sha256_hex(&format!("sha256:{h}")).unwrap(), h);
    }
}
