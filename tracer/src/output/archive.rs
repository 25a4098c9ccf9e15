//! The outer tar of an `oci-archive` or `docker-archive`: a handful of
//! known entries with fixed metadata (owner 0, mtime 0, fixed modes), so
//! the archive's bytes depend only on its contents.
use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use tar::{Builder, EntryType, Header};

use super::OutputError;

/// What an archive entry holds.
pub(super) enum Data {
    Dir,
    Bytes(Vec<u8>),
    /// Streamed from this file (a blob written earlier).
    File(PathBuf),
}

/// One entry: a relative name (directories end with `/`) and its data.
pub(super) struct Item {
    pub name: String,
    pub data: Data,
}

/// Writes `items`, in the given order, as a tar file at `file` (created,
/// must not exist), fsync'd.
pub(super) fn write(file: &Path, items: &[Item]) -> Result<(), OutputError> {
    let werr = |source| OutputError::Write {
        path: file.to_path_buf(),
        source,
    };
    let out = File::options()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(werr)?;
    let mut tar = Builder::new(BufWriter::new(out));
    for item in items {
        let mut h = Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match &item.data {
            Data::Dir => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, &item.name, io::empty())
                    .map_err(werr)?;
            }
            Data::Bytes(b) => {
                h.set_entry_type(EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(b.len() as u64);
                tar.append_data(&mut h, &item.name, b.as_slice())
                    .map_err(werr)?;
            }
            Data::File(p) => {
                let rerr = |source| OutputError::Write {
                    path: p.clone(),
                    source,
                };
                let f = File::open(p).map_err(rerr)?;
                let len = f.metadata().map_err(rerr)?.len();
                h.set_entry_type(EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(len);
                // `take` so the entry matches its header even if the blob
                // were to change under us.
                tar.append_data(&mut h, &item.name, io::Read::take(f, len))
                    .map_err(werr)?;
            }
        }
    }
    let mut buf = tar.into_inner().map_err(werr)?;
    buf.flush().map_err(werr)?;
    let out = buf.into_inner().map_err(|e| werr(e.into_error()))?;
    out.sync_all().map_err(werr)
}
