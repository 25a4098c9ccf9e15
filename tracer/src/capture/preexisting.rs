//! `trace attach`: what the processes in scope already had when the trace
//! started (their program, mapped files, working directory, root, open
//! files), read from /proc, so that a service attached to after start-up
//! still yields a buildable trace.
use std::{
    collections::BTreeSet,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// One file a process held, and how (`exe`, `map`, `cwd`, `root`, `fd`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Held {
    pub pid: u32,
    pub how: &'static str,
    pub path: Vec<u8>,
}

/// A /proc link's target, if it names a file (not `socket:[...]`,
/// `anon_inode:...`, a deleted file).
fn link(p: &Path) -> Option<Vec<u8>> {
    let t = fs::read_link(p).ok()?;
    let b = t.as_os_str().as_bytes().to_vec();
    (b.first() == Some(&b'/') && !b.ends_with(b" (deleted)")).then_some(b)
}

/// Makes `path` relative to the process's root: a process chrooted below
/// our root shows its files under that directory; one in another mount
/// namespace (a container) already shows them from its own root.
fn below_root(root: &[u8], path: Vec<u8>) -> Vec<u8> {
    if root == b"/" {
        return path;
    }
    match path.strip_prefix(root) {
        Some([]) => b"/".to_vec(),
        Some(rest) if rest.first() == Some(&b'/') => rest.to_vec(),
        _ => path,
    }
}

/// File-backed mappings of `/proc/PID/maps` (the path is the sixth field,
/// and may hold spaces).
fn mapped(pid: u32) -> BTreeSet<Vec<u8>> {
    let Ok(text) = fs::read(format!("/proc/{pid}/maps")) else {
        return BTreeSet::new();
    };
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let start = line.iter().position(|&b| b == b'/')?;
            let path = &line[start..];
            (!path.ends_with(b" (deleted)")).then(|| path.to_vec())
        })
        .collect()
}

/// Everything the processes `pids` hold now.
pub fn scan(pids: &[u32]) -> Vec<Held> {
    let mut out = BTreeSet::new();
    for &pid in pids {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let root = link(&proc.join("root")).unwrap_or_else(|| b"/".to_vec());
        let mut add = |how: &'static str, path: Vec<u8>| {
            out.insert(Held {
                pid,
                how,
                path: below_root(&root, path),
            });
        };
        if let Some(p) = link(&proc.join("exe")) {
            add("exe", p);
        }
        for p in mapped(pid) {
            add("map", p);
        }
        // Each thread: a thread can have a cwd, root and descriptor table
        // of its own (unshare(CLONE_FS), unshare(CLONE_FILES)).
        let mut tasks: Vec<PathBuf> = fs::read_dir(proc.join("task"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        if tasks.is_empty() {
            tasks.push(proc.clone());
        }
        for task in tasks {
            if let Some(p) = link(&task.join("cwd")) {
                add("cwd", p);
            }
            if let Some(p) = link(&task.join("root")) {
                add("root", p);
            }
            if let Ok(fds) = fs::read_dir(task.join("fd")) {
                for fd in fds.filter_map(Result::ok) {
                    if let Some(p) = link(&fd.path()) {
                        add("fd", p);
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_a_chroot() {
        assert_eq!(
            below_root(b"/srv/jail", b"/srv/jail/usr/bin/x".to_vec()),
            b"/usr/bin/x"
        );
        assert_eq!(below_root(b"/srv/jail", b"/srv/jail".to_vec()), b"/");
        assert_eq!(
            below_root(b"/srv/jail", b"/srv/jailer/x".to_vec()),
            b"/srv/jailer/x"
        );
        assert_eq!(below_root(b"/", b"/etc/x".to_vec()), b"/etc/x");
    }

    #[test]
    fn this_process_holds_its_program_and_libraries() {
        let pid = std::process::id();
        let held = scan(&[pid]);
        // By number, as `scan` reads it (under qemu-user `self` is the
        // emulated program, the number the emulator).
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert!(
            held.iter()
                .any(|h| h.how == "exe" && h.path == exe.as_os_str().as_bytes())
        );
        // A static build (the arm64 unit tests) maps no libc.
        let lib: &[u8] = if cfg!(target_feature = "crt-static") {
            b""
        } else {
            b".so.6"
        };
        assert!(held.iter().any(|h| h.how == "map" && h.path.ends_with(lib)));
        assert!(held.iter().any(|h| h.how == "cwd"));
    }
}
