//! Programs kept loaded between captures. Verifying the programs is most
//! of a capture's start-up (docs/performance.md), and its result depends
//! only on the object and the load-time configuration. So the first
//! capture with a given object and configuration pins its programs and
//! maps in bpffs (`/sys/fs/bpf/trace/KEY/`), and later ones open those
//! pins, put every map back in the state of a fresh load, and attach.
//!
//! - Nothing kept is attached between captures: attachments are links
//!   owned by the capture's process, gone when it exits, however it exits.
//! - One capture at a time uses a set: an exclusive `flock` on
//!   `/run/trace/kept/KEY.lock`, held for the whole capture. A second
//!   capture at once loads its own programs, as without keeping.
//! - A set becomes visible only once complete: it is pinned under a
//!   temporary name and renamed into place.
//! - `TRACE_KEEP_PROGRAMS=0` neither keeps nor reuses; `trace cache prune`
//!   removes every set not in use.
use std::{
    collections::BTreeMap,
    fs,
    hash::{DefaultHasher, Hash, Hasher},
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuValues},
    programs::RawTracePoint,
};
use tracer_common::{SYSCALL_WORDS, ScopeRoot, UnobservedKey, abi, loss, stats};

use super::{CaptureError, objects::Objects};
use crate::cache::lock::Lock;

/// Where sets are pinned.
pub const PIN_ROOT: &str = "/sys/fs/bpf/trace";
const BPF_FS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where the locks that say a set is in use live.
const LOCK_DIR: &str = "/run/trace/kept";
/// `0`: load fresh programs every time and keep none.
pub const KEEP_ENV: &str = "TRACE_KEEP_PROGRAMS";
/// The build of the eBPF object, first part of every key.
const OBJECT_DIGEST: &str = env!("TRACER_EBPF_DIGEST");

/// The name of the set for this object and these load-time inputs.
pub fn key(inputs: &[&[u8]]) -> String {
    let mut h = DefaultHasher::new();
    for input in inputs {
        input.hash(&mut h);
    }
    format!("{OBJECT_DIGEST}-{:016x}", h.finish())
}

/// The bytes of a load-time table, for [`key`]. Only for types without
/// padding (whose bytes are all initialised and meaningful).
pub fn bytes_of<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: used on tables of `SyscallSpec` and `UringSpec`, plain C
    // structs whose fields fill them without holes.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The right to use (or create) the set `key`, for as long as it is held.
pub struct Slot {
    dir: PathBuf,
    _lock: Lock,
}

/// Takes the set `key` for this capture, if keeping is possible here and
/// no other capture holds it.
pub fn claim(key: &str) -> Option<Slot> {
    if std::env::var_os(KEEP_ENV).is_some_and(|v| v == "0") || !bpffs_ready() {
        return None;
    }
    make_private_dir(Path::new(LOCK_DIR)).ok()?;
    let lock = Lock::open(&Path::new(LOCK_DIR).join(format!("{key}.lock")), true).ok()??;
    if !lock.try_exclusive().ok()? {
        return None;
    }
    Some(Slot {
        dir: Path::new(PIN_ROOT).join(key),
        _lock: lock,
    })
}

/// bpffs is mounted at its usual place (mounted there if not, as bpftool
/// does), with our directory in it.
fn bpffs_ready() -> bool {
    // `f_type` is i64 here, another width on other architectures.
    #[allow(clippy::unnecessary_cast)]
    let is_bpffs = || rustix::fs::statfs(BPF_FS).is_ok_and(|s| s.f_type as i64 == BPF_FS_MAGIC);
    if !is_bpffs() {
        use rustix::mount::{MountFlags, mount};
        let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        if mount("bpf", BPF_FS, "bpf", flags, c"mode=0700").is_err() || !is_bpffs() {
            return false;
        }
    }
    make_private_dir(Path::new(PIN_ROOT)).is_ok()
}

/// Makes `dir` (mode 0700) unless it exists, and checks that it is
/// root's and that nobody else can write to it: programs found in a
/// directory someone else could fill would be theirs, not ours.
fn make_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is not a directory only root can write to",
            dir.display()
        )));
    }
    Ok(())
}

const MAP_PREFIX: &str = "map_";
/// The maps userspace reads, writes or resets; the programs hold the
/// others (work areas, caches) themselves, so a reused set leaves them
/// unopened.
const USED_MAPS: [&str; 12] = [
    "ARMED",
    "EVENTS",
    "FINISH",
    "GEN",
    "LOSS",
    "ROOT",
    "RUN",
    "SCOPE_PIDS",
    "STATS",
    "SYSCALL_BITS",
    "UNOBSERVED",
    "URING",
];
/// A set being pinned, by the pinning process's id. (bpffs refuses names
/// with a dot.)
const TMP_PREFIX: &str = "tmp-";
const PROG_PREFIX: &str = "prog_";

impl Slot {
    /// The kept set, if there is a whole one. One that cannot be opened is
    /// removed (the capture then loads and keeps a new one).
    pub fn open(&self) -> Option<Objects> {
        let entries = fs::read_dir(&self.dir).ok()?;
        let mut maps = BTreeMap::new();
        let mut programs = BTreeMap::new();
        let mut whole = true;
        for entry in entries {
            let Ok(entry) = entry else {
                whole = false;
                break;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if let Some(map) = name.strip_prefix(MAP_PREFIX) {
                if !USED_MAPS.contains(&map) {
                    continue;
                }
                match MapData::from_pin(&path).and_then(Map::from_map_data) {
                    Ok(m) => {
                        maps.insert(map.to_string(), m);
                    }
                    Err(_) => whole = false,
                }
            } else if let Some(prog) = name.strip_prefix(PROG_PREFIX) {
                match RawTracePoint::from_pin(&path) {
                    Ok(p) => {
                        programs.insert(prog.to_string(), p);
                    }
                    Err(_) => whole = false,
                }
            }
        }
        if !whole || programs.is_empty() || maps.is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
            return None;
        }
        Some(Objects::Kept { maps, programs })
    }

    /// Pins every program the kernel accepted and every named map of a
    /// fresh load, under a temporary name: [`Slot::commit`] makes it the
    /// set once it is whole. A capture killed meanwhile leaves only the
    /// temporary directory, removed by the next capture that keeps a set.
    pub fn pin(&self, ebpf: &mut Ebpf) -> io::Result<Pinned> {
        sweep();
        let tmp = Path::new(PIN_ROOT).join(format!("{TMP_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        make_private_dir(&tmp)?;
        let pinned = (|| -> io::Result<()> {
            for (name, map) in ebpf.maps() {
                if !name.starts_with('.') {
                    map.pin(tmp.join(format!("{MAP_PREFIX}{name}")))
                        .map_err(io::Error::other)?;
                }
            }
            for (name, prog) in ebpf.programs_mut() {
                if prog.fd().is_ok() {
                    prog.pin(tmp.join(format!("{PROG_PREFIX}{name}")))
                        .map_err(io::Error::other)?;
                }
            }
            Ok(())
        })();
        match pinned {
            Ok(()) => Ok(Pinned(tmp)),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Removes this slot's set (one that could not be reset).
    pub fn discard(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// Makes a pinned set this slot's set.
    pub fn commit(&self, pinned: Pinned) -> io::Result<()> {
        let renamed = fs::rename(&pinned.0, &self.dir);
        if renamed.is_err() {
            let _ = fs::remove_dir_all(&pinned.0);
        }
        renamed
    }
}

/// A set pinned under a temporary name.
pub struct Pinned(PathBuf);

/// Removes what no capture can use any more: temporary directories of
/// captures that died while pinning, and sets of other builds of `trace`
/// that nobody holds.
fn sweep() {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(TMP_PREFIX) {
            let alive = pid
                .parse::<u32>()
                .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = fs::remove_dir_all(entry.path());
            }
        } else if !name.starts_with(OBJECT_DIGEST) {
            remove_unless_held(&name);
        }
    }
}

/// Removes the set `key` unless a capture is using it; true if removed.
fn remove_unless_held(key: &str) -> bool {
    let lock_path = Path::new(LOCK_DIR).join(format!("{key}.lock"));
    let Ok(Some(lock)) = Lock::open(&lock_path, true) else {
        return false;
    };
    if !lock.try_exclusive().unwrap_or(false) {
        return false;
    }
    let removed = fs::remove_dir_all(Path::new(PIN_ROOT).join(key)).is_ok();
    let _ = fs::remove_file(&lock_path);
    removed
}

/// Kept sets, for `trace cache`: (sets, bytes of map memory they hold).
pub fn usage() -> (usize, u64) {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return (0, 0);
    };
    let mut sets = 0;
    let mut bytes = 0;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        sets += 1;
        for pin in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
            if pin.file_name().to_string_lossy().starts_with(MAP_PREFIX)
                && let Ok(info) = MapData::from_pin(pin.path()).and_then(|m| m.info())
            {
                bytes += map_bytes(&info);
            }
        }
    }
    (sets, bytes)
}

/// Roughly what a map holds in kernel memory: the values of arrays and
/// ring buffers (hash maps here are allocated as used and small).
fn map_bytes(info: &aya::maps::MapInfo) -> u64 {
    let entries = u64::from(info.max_entries());
    let value = u64::from(info.value_size()).next_multiple_of(8);
    match info.map_type() {
        Ok(aya::maps::MapType::RingBuf) => entries,
        Ok(aya::maps::MapType::Array) => entries * value,
        Ok(aya::maps::MapType::PerCpuArray) => entries * value * u64::from(super::possible_cpus()),
        _ => 0,
    }
}

/// Removes every kept set no capture is using: (sets removed, sets left
/// because in use).
pub fn prune() -> (usize, usize) {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return (0, 0);
    };
    let (mut removed, mut held) = (0, 0);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) {
            continue;
        }
        if remove_unless_held(&name) {
            removed += 1;
        } else {
            held += 1;
        }
    }
    (removed, held)
}

/// Puts a kept set's maps back as a fresh load leaves them, before any
/// program is attached (so nothing writes to them meanwhile): the hash
/// maps emptied, the root and the counters zeroed, and `GEN` moved on,
/// which makes every `FAST` slot stale. `DEDUP` and `INFLIGHT` (7 MiB,
/// 3 ms to zero here) are not touched: their slots carry the capture's
/// number (`RunConfig::epoch`, which the caller moves on), so an earlier
/// capture's are ignored. The ring buffer is drained by the caller. The
/// per-CPU work areas carry nothing from one run of a program to the
/// next.
pub fn reset(objects: &mut Objects) -> Result<(), CaptureError> {
    clear_hash::<u32, u64>(objects, "ARMED")?;
    clear_hash::<u32, u64>(objects, "SCOPE_PIDS")?;
    clear_hash::<u64, u32>(objects, "URING")?;
    clear_hash::<UnobservedKey, u64>(objects, "UNOBSERVED")?;
    {
        let name = "ROOT";
        let err = |source| CaptureError::Map { name, source };
        let map = objects.map_mut(name).ok_or(CaptureError::Missing(name))?;
        let mut root = Array::<_, ScopeRoot>::try_from(map).map_err(err)?;
        root.set(0, ScopeRoot::default(), 0).map_err(err)?;
    }
    zero_per_cpu::<u64>(objects, "LOSS", loss::COUNT)?;
    zero_per_cpu::<u64>(objects, "STATS", stats::COUNT)?;
    zero_per_cpu::<[u64; SYSCALL_WORDS]>(objects, "SYSCALL_BITS", abi::COUNT as u32)?;
    let name = "GEN";
    let err = |source| CaptureError::Map { name, source };
    let map = objects.map_mut(name).ok_or(CaptureError::Missing(name))?;
    let mut generation = Array::<_, u64>::try_from(map).map_err(err)?;
    let now = generation.get(&0, 0).map_err(err)?;
    generation.set(0, now.wrapping_add(1), 0).map_err(err)?;
    Ok(())
}

fn clear_hash<K: Pod, V: Pod>(
    objects: &mut Objects,
    name: &'static str,
) -> Result<(), CaptureError> {
    let err = |source| CaptureError::Map { name, source };
    let map = objects.map_mut(name).ok_or(CaptureError::Missing(name))?;
    let mut map = BpfHashMap::<_, K, V>::try_from(map).map_err(err)?;
    let keys: Vec<K> = map.keys().collect::<Result<_, _>>().map_err(err)?;
    for k in keys {
        match map.remove(&k) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

fn zero_per_cpu<T: Pod + Default>(
    objects: &mut Objects,
    name: &'static str,
    count: u32,
) -> Result<(), CaptureError> {
    let err = |source| CaptureError::Map { name, source };
    let map = objects.map_mut(name).ok_or(CaptureError::Missing(name))?;
    let mut arr = PerCpuArray::<_, T>::try_from(map).map_err(err)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| CaptureError::Reset(name, e))?;
    for i in 0..count {
        let zeros = PerCpuValues::try_from(vec![T::default(); cpus]).map_err(|e| {
            CaptureError::Reset(name, io::Error::new(io::ErrorKind::InvalidInput, e))
        })?;
        arr.set(i, zeros, 0).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_the_object_and_every_input() {
        let k = key(&[b"config", b"specs"]);
        assert!(k.starts_with(OBJECT_DIGEST), "{k}");
        assert_eq!(k, key(&[b"config", b"specs"]));
        assert_ne!(k, key(&[b"config", b"specs2"]));
        // Inputs are kept apart: moving a byte from one to the next is
        // another key.
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        // bpffs refuses names with a dot.
        assert!(!k.contains('.'));
    }
}
