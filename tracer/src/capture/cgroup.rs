//! A cgroup v2 made for one run: the in-kernel scope of the trace.
use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cannot read /proc/self/mountinfo: {0}")]
    Mountinfo(std::io::Error),
    #[error("cannot create cgroup {path}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot stat cgroup {path}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A cgroup v2 mount: where it is and how deep its root sits in the
/// hierarchy (non-zero inside a cgroup namespace or a bind mount).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup2Mount {
    pub path: PathBuf,
    pub root_depth: u32,
}

/// Finds the cgroup v2 mount, preferring `/sys/fs/cgroup`, then the hybrid
/// layout's `/sys/fs/cgroup/unified`, then any other.
pub fn find_mount() -> Result<Option<Cgroup2Mount>, CgroupError> {
    let text = mountinfo().map_err(CgroupError::Mountinfo)?;
    Ok(find_in_mountinfo(&text))
}

/// `/proc/self/mountinfo`, read once per process: where the cgroup
/// hierarchies are mounted does not change while a run is set up and torn
/// down, and on a host with a thousand mounts each read takes over a
/// millisecond. A forked process (the supervisor) reads its own.
fn mountinfo() -> Result<std::borrow::Cow<'static, str>, std::io::Error> {
    use std::borrow::Cow;
    static TEXT: std::sync::OnceLock<(u32, String)> = std::sync::OnceLock::new();
    let pid = std::process::id();
    if let Some((owner, text)) = TEXT.get() {
        if *owner == pid {
            return Ok(Cow::Borrowed(text));
        }
        // Kept by the parent before a fork: read afresh every time.
        return read_mountinfo_text().map(Cow::Owned);
    }
    let text = read_mountinfo_text()?;
    Ok(match TEXT.set((pid, text)) {
        Ok(()) => Cow::Borrowed(TEXT.get().map_or("", |(_, t)| t.as_str())),
        Err((_, text)) => Cow::Owned(text),
    })
}

/// Reads `/proc/self/mountinfo` as bytes: a mount point need not be UTF-8,
/// and one that is not must not make the whole table unreadable (reading
/// it as a string failed, and a sweep then saw no mounts at all).
pub fn read_mountinfo() -> Result<Vec<u8>, std::io::Error> {
    read_whole(&mut fs::File::open("/proc/self/mountinfo")?, 64 * 1024)
}

/// Everything `r` gives, asked for in reads of `chunk` bytes.
fn read_whole(r: &mut impl std::io::Read, chunk: usize) -> Result<Vec<u8>, std::io::Error> {
    let mut read = vec![0u8; chunk.max(1)];
    let mut whole = Vec::new();
    loop {
        match r.read(&mut read) {
            Ok(0) => return Ok(whole),
            Ok(n) => whole.extend_from_slice(&read[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// [`read_mountinfo`] as text. A cgroup hierarchy's mount point is ASCII
/// wherever one is mounted by convention; another mount point that is not
/// UTF-8 must not make the whole table unreadable.
fn read_mountinfo_text() -> Result<String, std::io::Error> {
    read_mountinfo().map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn find_in_mountinfo(text: &str) -> Option<Cgroup2Mount> {
    let mut found: Vec<Cgroup2Mount> = text
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            if post.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let f: Vec<&str> = pre.split_whitespace().collect();
            let root = *f.get(3)?;
            let mount_point = *f.get(4)?;
            Some(Cgroup2Mount {
                path: PathBuf::from(mount_point),
                root_depth: root.split('/').filter(|c| !c.is_empty()).count() as u32,
            })
        })
        .collect();
    let rank = |m: &Cgroup2Mount| match m.path.to_str() {
        Some("/sys/fs/cgroup") => 0,
        Some("/sys/fs/cgroup/unified") => 1,
        _ => 2,
    };
    found.sort_by_key(rank);
    found.into_iter().next()
}

/// A cgroup directory owned by this run; removed on drop once empty.
#[derive(Debug)]
pub struct RunCgroup {
    pub path: PathBuf,
    /// The kernel's cgroup id (the directory's inode on cgroup2).
    pub id: u64,
    /// Depth in the v2 hierarchy, for `bpf_get_current_ancestor_cgroup_id`.
    pub level: u32,
}

/// Mount points of the cgroup v1 hierarchies (hybrid layout). A container
/// runtime given a cgroup path creates it in each of them too.
pub fn v1_mounts() -> Vec<PathBuf> {
    mountinfo()
        .unwrap_or_default()
        .as_ref()
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            if post.split_whitespace().next()? != "cgroup" {
                return None;
            }
            pre.split_whitespace().nth(4).map(PathBuf::from)
        })
        .collect()
}

/// Removes `dir` and any empty cgroups below it, deepest first.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Cgroups of earlier runs whose `trace` was killed (SIGKILL leaves no
/// chance to clean up): removed when their process is gone and they are
/// empty.
fn collect_stale(roots: &[PathBuf]) {
    for root in roots {
        let Ok(entries) = fs::read_dir(root) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("trace-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let alive = rustix::process::Pid::from_raw(pid).is_some_and(|p| {
                !matches!(
                    rustix::process::test_kill_process(p),
                    Err(rustix::io::Errno::SRCH)
                )
            });
            if !alive {
                remove_tree(&e.path());
            }
        }
    }
}

impl RunCgroup {
    pub fn create(mount: &Cgroup2Mount) -> Result<RunCgroup, CgroupError> {
        let mut roots = v1_mounts();
        roots.push(mount.path.clone());
        collect_stale(&roots);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = mount.path.join(format!(
            "trace-{}-{nanos:09}",
            crate::runtime::leftovers::token()
        ));
        fs::create_dir(&path).map_err(|source| CgroupError::Create {
            path: path.clone(),
            source,
        })?;
        let id = match fs::metadata(&path) {
            Ok(m) => m.ino(),
            Err(source) => {
                let _ = fs::remove_dir(&path);
                return Err(CgroupError::Stat { path, source });
            }
        };
        Ok(RunCgroup {
            path,
            id,
            level: mount.root_depth + 1,
        })
    }

    /// The directory's name, below the hierarchy's root.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `cgroup.procs`, which the child writes itself into before exec.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.procs_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub fn populated(&self) -> bool {
        match fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(events) => events.lines().any(|l| l.trim() == "populated 1"),
            Err(_) => !self.pids().is_empty(),
        }
    }

    /// Kills everything left in the cgroup; returns how many were found.
    pub fn kill_all(&self) -> u32 {
        let mut killed = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                return killed;
            }
            if killed == 0 {
                killed = pids.len() as u32;
            }
            if fs::write(self.path.join("cgroup.kill"), "1").is_err() {
                for pid in pids {
                    // A pid that is gone fails harmlessly.
                    if let Some(p) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // What a container runtime made under our name in v1 hierarchies.
        let name = self.name();
        for m in v1_mounts() {
            remove_tree(&m.join(&name));
        }
        // rmdir fails with EBUSY until the last task is fully reaped.
        let deadline = Instant::now() + Duration::from_secs(2);
        while fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            if !Path::new(&self.path).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
    const UNIFIED: &str = "\
40 25 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw
41 25 0:31 /user.slice/x /mnt/cg rw - cgroup2 cgroup2 rw";

    /// Gives at most 100 bytes a read, as procfs gives a page.
    struct Dribble<'a>(&'a [u8]);
    impl std::io::Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(100).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_are_read_whole_and_the_table_is_bytes() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(read_whole(&mut Dribble(&data), 64).unwrap(), data);
        assert_eq!(read_whole(&mut Dribble(b""), 64).unwrap(), b"");
        let table = read_mountinfo().unwrap();
        assert!(table.ends_with(b"\n"));
        assert!(find_mount().unwrap().is_some(), "this host has cgroup v2");
    }

    #[test]
    fn finds_hybrid_and_unified_layouts() {
        let h = find_in_mountinfo(HYBRID).unwrap();
        assert_eq!(h.path, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(h.root_depth, 0);
        let u = find_in_mountinfo(UNIFIED).unwrap();
        assert_eq!(u.path, PathBuf::from("/sys/fs/cgroup"));
        let only_nested = find_in_mountinfo(UNIFIED.lines().nth(1).unwrap()).unwrap();
        assert_eq!(only_nested.root_depth, 2);
        assert_eq!(find_in_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw"), None);
    }

    #[test]
    fn real_cgroup_is_created_and_removed() {
        let mount = find_mount()
            .unwrap()
            .expect("cgroup v2 mounted on the test machine");
        let cg = RunCgroup::create(&mount).unwrap();
        let path = cg.path.clone();
        assert!(path.join("cgroup.procs").exists());
        assert!(!cg.populated());
        assert!(cg.id > 1);
        drop(cg);
        assert!(!path.exists());
    }
}
