//! The struct offsets read from kernel BTF, kept for the rest of the boot.
//!
//! Reading them indexes the kernel's whole BTF, ~4 ms of every run's
//! start, for values that cannot change until the next boot. The first run
//! of a boot keeps them in `/run/trace/btf/<key>` (tmpfs, root's alone);
//! later runs read them back. The key covers the boot (`boot_id`), the BTF
//! file's identity and this very binary, so a new kernel, another `--btf`
//! file or a rebuilt `trace` never reads another one's. A file that is not
//! owned by this user, that others may write, or that has the wrong size is
//! ignored, and the offsets are read from BTF as when there is none.
use std::{
    fs,
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};
use tracer_common::{KernelOffsets, UringSpecs};

use crate::runtime::leftovers::STATE_DIR;

/// Bumped whenever what is stored changes meaning.
const FORMAT: &[u8] = b"trace-btf-offsets-1";

const OFFSETS_LEN: usize = std::mem::size_of::<KernelOffsets>();
const URING_LEN: usize = std::mem::size_of::<UringSpecs>();

pub type Offsets = (KernelOffsets, UringSpecs);

fn dir() -> PathBuf {
    Path::new(STATE_DIR).join("btf")
}

fn identity(h: &mut Sha256, m: &fs::Metadata) {
    for v in [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ] {
        h.update(v.to_le_bytes());
    }
}

/// The name the offsets read from `btf` are kept under on this boot, by
/// this binary; `None` when any part of it cannot be read.
fn key(btf: &Path) -> Option<String> {
    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(fs::read("/proc/sys/kernel/random/boot_id").ok()?);
    identity(&mut h, &fs::metadata("/proc/self/exe").ok()?);
    h.update(fs::canonicalize(btf).ok()?.as_os_str().as_encoded_bytes());
    identity(&mut h, &fs::metadata(btf).ok()?);
    let digest = h.finalize();
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Owned by us and writable by nobody else.
fn trusted(m: &fs::Metadata) -> bool {
    m.uid() == rustix::process::geteuid().as_raw() && m.permissions().mode() & 0o022 == 0
}

/// The offsets kept for `btf` on this boot, if any.
pub fn load(btf: &Path) -> Option<Offsets> {
    load_from(&dir(), &key(btf)?)
}

/// Keeps the offsets read from `btf` for later runs; where that cannot be
/// done (not root, a read-only /run) nothing is kept.
pub fn store(btf: &Path, offsets: &Offsets) {
    if let Some(key) = key(btf) {
        let _ = store_in(&dir(), &key, offsets);
    }
}

fn load_from(dir: &Path, key: &str) -> Option<Offsets> {
    if !trusted(&fs::symlink_metadata(dir).ok()?) {
        return None;
    }
    let path = dir.join(key);
    let meta = fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || !trusted(&meta) {
        return None;
    }
    let bytes = fs::read(&path).ok()?;
    if bytes.len() != OFFSETS_LEN + URING_LEN {
        return None;
    }
    // SAFETY: both are repr(C) structs of plain integers (u32 and u16
    // fields only, so no padding), valid for every bit pattern; the reads
    // are unaligned and within `bytes`.
    unsafe {
        let offsets = std::ptr::read_unaligned(bytes.as_ptr() as *const KernelOffsets);
        let uring = std::ptr::read_unaligned(bytes.as_ptr().add(OFFSETS_LEN) as *const UringSpecs);
        Some((offsets, uring))
    }
}

fn store_in(dir: &Path, key: &str, (offsets, uring): &Offsets) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if !trusted(&fs::symlink_metadata(dir)?) {
        return Err(std::io::Error::other("not a directory of our own"));
    }
    let mut bytes = Vec::with_capacity(OFFSETS_LEN + URING_LEN);
    // SAFETY: as in `load_from`: no padding, so every byte is initialized.
    unsafe {
        bytes.extend_from_slice(std::slice::from_raw_parts(
            offsets as *const KernelOffsets as *const u8,
            OFFSETS_LEN,
        ));
        bytes.extend_from_slice(std::slice::from_raw_parts(
            uring as *const UringSpecs as *const u8,
            URING_LEN,
        ));
    }
    // Written whole under a name of this process's, then renamed: a reader
    // sees all of it or none.
    let tmp = dir.join(format!(".{key}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        fs::rename(&tmp, dir.join(key))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    trim(dir);
    Ok(())
}

/// Entries kept at most: one per kernel BTF file and `trace` binary in
/// use this boot (a rebuilt binary makes a new one).
const KEPT: usize = 16;

/// Removes the oldest entries beyond [`KEPT`].
fn trim(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= KEPT {
        return;
    }
    files.sort();
    for (_, p) in &files[..files.len() - KEPT] {
        let _ = fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracer_common::{URING_OPS, UringSpec};

    fn sample() -> Offsets {
        let offsets = KernelOffsets {
            task_fs: 1,
            dentry_name: 40,
            regs_arg: [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]],
            uring_known: 1,
            ..Default::default()
        };
        let mut uring = [UringSpec::UNKNOWN; URING_OPS];
        uring[3].dfd1 = 17;
        (offsets, uring)
    }

    fn same(a: &Offsets, b: &Offsets) -> bool {
        format!("{:?}", a.0) == format!("{:?}", b.0) && a.1 == b.1
    }

    #[test]
    fn kept_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("btf");
        assert!(load_from(&dir, "k").is_none());
        store_in(&dir, "k", &sample()).unwrap();
        assert!(same(&load_from(&dir, "k").unwrap(), &sample()));
        // Another key is another kernel or binary.
        assert!(load_from(&dir, "other").is_none());
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("k")]);
    }

    #[test]
    fn only_the_newest_entries_are_kept() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("btf");
        for i in 0..KEPT + 3 {
            store_in(&dir, &format!("k{i:02}"), &sample()).unwrap();
            // Distinct modification times, oldest first.
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(i as u64);
            let f = fs::File::options()
                .write(true)
                .open(dir.join(format!("k{i:02}")))
                .unwrap();
            f.set_modified(t).unwrap();
        }
        store_in(&dir, "newest", &sample()).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), KEPT);
        assert!(load_from(&dir, "newest").is_some());
        assert!(load_from(&dir, "k00").is_none());
        assert!(load_from(&dir, &format!("k{:02}", KEPT + 2)).is_some());
    }

    #[test]
    fn untrusted_or_malformed_files_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("btf");
        store_in(&dir, "k", &sample()).unwrap();
        let f = dir.join("k");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o620)).unwrap();
        assert!(load_from(&dir, "k").is_none(), "group-writable");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(load_from(&dir, "k").is_none(), "directory writable by all");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let bytes = fs::read(&f).unwrap();
        fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
        assert!(load_from(&dir, "k").is_none(), "short");
        fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &f).unwrap();
        assert!(load_from(&dir, "k").is_none(), "symlink");
    }

    #[test]
    fn the_key_changes_with_the_btf_file() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::write(&a, b"one").unwrap();
        fs::write(&b, b"one").unwrap();
        let ka = key(&a).unwrap();
        assert_eq!(key(&a).unwrap(), ka);
        assert_ne!(key(&b).unwrap(), ka);
        fs::write(&a, b"longer").unwrap();
        assert_ne!(key(&a).unwrap(), ka);
        assert!(key(&d.path().join("missing")).is_none());
    }
}
