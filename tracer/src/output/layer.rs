//! The image's single layer: one tar entry per kept path, in the order of
//! the (sorted) path set, with headers filled from the source's metadata
//! only, so the same inputs always give the same bytes.
//!
//! Headers are POSIX ustar; whatever ustar cannot hold (names or link
//! targets over 100 bytes, large ids, sizes or times, xattrs) goes into a
//! PAX extended header in front of the entry, which every OCI tool reads.
use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    io::{self, Read, Write},
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use flate2::Compression;
use sha2::{Digest as _, Sha256};
use tar::{Builder, EntryType, Header};

use super::{OutputError, pgzip::ParallelGz};
use crate::source::rootfs::{Kind, Meta, Rootfs};

/// Largest value of a 7-digit octal field (uid, gid) in a ustar header.
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// Largest value of an 11-digit octal field (size, mtime) in a ustar header.
const MAX_OCTAL_12: u64 = 0o77_777_777_777;
/// Room for a name or a link target in a ustar header.
const USTAR_NAME: usize = 100;
/// Fixed gzip level: part of what makes the layer digest reproducible.
const GZIP_LEVEL: u32 = 6;
/// Extended attributes that describe the host, not the image: SELinux
/// labels are assigned by the runtime on the target host.
const HOST_XATTRS: &[&str] = &["security.selinux"];

/// What was written for the layer.
#[derive(Debug)]
pub(super) struct LayerInfo {
    /// sha256 (hex) of the uncompressed tar: the config's diff_id.
    pub diff_id: String,
    /// sha256 (hex) of the blob as stored (compressed or not).
    pub digest: String,
    /// Size of the blob as stored.
    pub size: u64,
    /// Tar entries written (PAX headers not counted).
    pub entries: usize,
}

pub(super) use crate::source::archive::hex;

/// A writer that hashes and counts what passes through it, so digests are
/// computed while streaming instead of re-reading the blob.
pub(super) struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the hex sha256 and the byte count.
    pub(super) fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads exactly the size announced in the tar header: a file that shrank
/// since `meta` is an error (a short entry would corrupt the archive), and
/// growth is cut off. Remembers whether the error came from the source, to
/// tell read failures from write failures.
struct Exact<R> {
    inner: R,
    remaining: u64,
    failed: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(0) if want > 0 => {
                self.failed = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "file shrank while being copied ({} bytes missing)",
                        self.remaining
                    ),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The tar name of an image path: relative, `/`-separated, no `./`; `None`
/// for the root directory, which is not emitted (the runtime creates it).
fn entry_name(path: &Path) -> Result<Option<Vec<u8>>, OutputError> {
    let bad = || OutputError::BadPath {
        path: path.to_path_buf(),
    };
    let mut comps = path.components();
    if comps.next() != Some(Component::RootDir) {
        return Err(bad());
    }
    let mut name = Vec::new();
    for c in comps {
        match c {
            // A runtime unpacking the layer would delete a file of that
            // name instead of creating it (the OCI whiteout convention).
            Component::Normal(n) if n.as_bytes().starts_with(b".wh.") => {
                return Err(OutputError::WhiteoutName {
                    path: path.to_path_buf(),
                });
            }
            Component::Normal(n) => {
                if !name.is_empty() {
                    name.push(b'/');
                }
                name.extend_from_slice(n.as_bytes());
            }
            // `Path::components` already drops interior `.`; `..` could
            // escape the image root when unpacked.
            _ => return Err(bad()),
        }
    }
    Ok((!name.is_empty()).then_some(name))
}

/// One tar entry's header plus the PAX records it needs.
struct Prepared {
    header: Header,
    pax: Vec<(String, Vec<u8>)>,
}

/// Fills a ustar header from `meta`; anything that does not fit becomes a
/// PAX record.
fn prepare(
    name: &[u8],
    meta: &Meta,
    ty: EntryType,
    link: Option<&[u8]>,
    size: u64,
    xattrs: bool,
) -> io::Result<Prepared> {
    let mut header = Header::new_ustar();
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    {
        let ustar = header
            .as_ustar_mut()
            .ok_or_else(|| io::Error::other("not a ustar header"))?;
        let n = name.len().min(USTAR_NAME);
        ustar.name[..n].copy_from_slice(&name[..n]);
        if let Some(link) = link {
            let n = link.len().min(USTAR_NAME);
            ustar.linkname[..n].copy_from_slice(&link[..n]);
        }
    }
    if name.len() > USTAR_NAME {
        pax.push(("path".into(), name.to_vec()));
    }
    if let Some(link) = link.filter(|l| l.len() > USTAR_NAME) {
        pax.push(("linkpath".into(), link.to_vec()));
    }
    header.set_entry_type(ty);
    header.set_mode(meta.mode & 0o7777);
    // Too-large values are also stored in the header's binary (base-256)
    // form by `tar`, for readers that ignore PAX.
    header.set_size(size);
    if size > MAX_OCTAL_12 {
        pax.push(("size".into(), size.to_string().into_bytes()));
    }
    for (key, id) in [("uid", meta.uid), ("gid", meta.gid)] {
        if u64::from(id) > MAX_OCTAL_8 {
            pax.push((key.into(), id.to_string().into_bytes()));
        }
    }
    header.set_uid(u64::from(meta.uid));
    header.set_gid(u64::from(meta.gid));
    match u64::try_from(meta.mtime) {
        Ok(t) => {
            header.set_mtime(t);
            if t > MAX_OCTAL_12 {
                pax.push(("mtime".into(), t.to_string().into_bytes()));
            }
        }
        Err(_) => {
            header.set_mtime(0);
            pax.push(("mtime".into(), meta.mtime.to_string().into_bytes()));
        }
    }
    // Zeros rather than empty fields for other entries, as GNU tar and Go
    // write them: some readers parse the fields whatever the type.
    let (major, minor) = match meta.kind {
        Kind::Char { major, minor } | Kind::Block { major, minor } => (major, minor),
        _ => (0, 0),
    };
    header.set_device_major(major)?;
    header.set_device_minor(minor)?;
    if xattrs {
        let mut attrs: Vec<&(String, Vec<u8>)> = meta
            .xattrs
            .iter()
            .filter(|(k, _)| !HOST_XATTRS.contains(&k.as_str()))
            .collect();
        attrs.sort();
        for (k, v) in attrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
    }
    header.set_cksum();
    Ok(Prepared { header, pax })
}

/// Appends every path of `paths` to `tar`; returns the number of entries.
fn append_all<W: Write>(
    tar: &mut Builder<W>,
    rootfs: &dyn Rootfs,
    paths: &BTreeSet<PathBuf>,
) -> Result<usize, OutputError> {
    // First name written for each hardlinked file: later names link to it.
    let mut linked: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut entries = 0;
    for path in paths {
        let Some(mut name) = entry_name(path)? else {
            continue;
        };
        let read_err = |source| OutputError::Read {
            path: path.clone(),
            rootfs: rootfs.describe(),
            source,
        };
        let layer_err = |source| OutputError::Layer {
            path: path.clone(),
            source,
        };
        let meta = rootfs
            .meta(path)
            .map_err(read_err)?
            .ok_or_else(|| OutputError::Missing {
                path: path.clone(),
                rootfs: rootfs.describe(),
            })?;
        let (ty, link, size): (EntryType, Option<Vec<u8>>, u64) = match &meta.kind {
            Kind::Regular => match meta.link_id.and_then(|id| linked.get(&id)) {
                Some(first) => (EntryType::Link, Some(first.clone()), 0),
                None => (EntryType::Regular, None, meta.size),
            },
            Kind::Dir => {
                name.push(b'/');
                (EntryType::Directory, None, 0)
            }
            Kind::Symlink(target) => (EntryType::Symlink, Some(target.clone()), 0),
            Kind::Char { .. } => (EntryType::Char, None, 0),
            Kind::Block { .. } => (EntryType::Block, None, 0),
            Kind::Fifo => (EntryType::Fifo, None, 0),
            // Tar cannot hold sockets; they are made at run time by bind().
            Kind::Socket => continue,
        };
        let is_data = ty == EntryType::Regular;
        let prepared = prepare(
            &name,
            &meta,
            ty,
            link.as_deref(),
            size,
            // A hardlink entry shares its inode's attributes.
            ty != EntryType::Link,
        )
        .map_err(layer_err)?;
        tar.append_pax_extensions(prepared.pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(layer_err)?;
        if is_data {
            let reader = rootfs.open(path).map_err(read_err)?;
            let mut exact = Exact {
                inner: reader,
                remaining: size,
                failed: false,
            };
            if let Err(e) = tar.append(&prepared.header, &mut exact) {
                return Err(if exact.failed {
                    read_err(e)
                } else {
                    layer_err(e)
                });
            }
            if let Some(id) = meta.link_id {
                linked.insert(id, name);
            }
        } else {
            tar.append(&prepared.header, io::empty())
                .map_err(layer_err)?;
        }
        entries += 1;
    }
    Ok(entries)
}

/// Where the tar stream goes: through gzip or straight to the file, both
/// hashed as stored.
enum Sink {
    Gzip(ParallelGz<HashWriter<io::BufWriter<File>>>),
    Plain(HashWriter<io::BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Gzip(w) => w.write(buf),
            Sink::Plain(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Gzip(w) => w.flush(),
            Sink::Plain(w) => w.flush(),
        }
    }
}

/// Writes the layer blob to `file` (created, must not exist): gzip-compressed
/// for OCI, plain tar for a docker archive.
pub(super) fn write_layer(
    rootfs: &dyn Rootfs,
    paths: &BTreeSet<PathBuf>,
    file: &Path,
    gzip: bool,
) -> Result<LayerInfo, OutputError> {
    let werr = |source| OutputError::Write {
        path: file.to_path_buf(),
        source,
    };
    let out = File::options()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(werr)?;
    let stored = HashWriter::new(io::BufWriter::new(out));
    let sink = if gzip {
        // Block by block on every core; the bytes are the same on any
        // number of them (see pgzip).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        Sink::Gzip(ParallelGz::new(stored, Compression::new(GZIP_LEVEL), threads).map_err(werr)?)
    } else {
        Sink::Plain(stored)
    };
    let mut tar = Builder::new(HashWriter::new(sink));
    let entries = append_all(&mut tar, rootfs, paths)?;
    let (sink, diff_id, _) = tar.into_inner().map_err(werr)?.finish();
    let stored = match sink {
        Sink::Gzip(gz) => gz.finish().map_err(werr)?,
        Sink::Plain(w) => w,
    };
    let (buf, digest, size) = stored.finish();
    let out = buf.into_inner().map_err(|e| werr(e.into_error()))?;
    out.sync_all().map_err(werr)?;
    Ok(LayerInfo {
        diff_id,
        digest,
        size,
        entries,
    })
}
