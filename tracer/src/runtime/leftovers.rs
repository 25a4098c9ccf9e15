//! What a run puts on the host while it works (its cgroups in the v1 and
//! v2 hierarchies, the container's overlay mount, bundle and runtime
//! state, temporary files beside an output), and removing it when `trace`
//! is killed and cannot clean up itself.
//!
//! Everything carries its owner's token (`<pid>-<start time>`, see
//! [`crate::engine::owner`]) in its name, or is listed in the owner's
//! record file `/run/trace/owners/<token>/records`. A supervisor forked at
//! start waits for `trace` to exit and then removes whatever is left under
//! its token (killing the container first), and every `trace` start
//! removes what any dead owner left. A live owner's things are never
//! touched: the start time tells a reused pid from the owner.
use std::{
    collections::BTreeSet,
    fs, io,
    os::{fd::RawFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{
    capture::cgroup,
    engine::{Engine, owner},
};

/// Where the owners' records and the OCI runtime's state live.
pub const STATE_DIR: &str = "/run/trace";

/// `--root` of every OCI runtime invocation: the runtime's state of our
/// containers only, so a sweep never reads anyone else's.
pub fn runtime_root() -> PathBuf {
    Path::new(STATE_DIR).join("runc")
}

fn owners_dir() -> PathBuf {
    Path::new(STATE_DIR).join("owners")
}

/// This process's token.
pub fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(owner::token)
}

/// A fresh name `<prefix><token>-<n>`, unique within this process.
pub fn unique_name(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}-{n}", token())
}

/// The record file, once [`init`] has made the owner's directory.
static RECORDS: OnceLock<PathBuf> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum LeftoverError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LeftoverError {
    let what = what.into();
    move |source| LeftoverError::Io { what, source }
}

/// Makes this run's owner directory and, with `supervise`, forks the
/// supervisor. Call before any thread is started (it forks). Without the
/// rights to write [`STATE_DIR`] (not root: no cgroup, no container
/// either) nothing is recorded.
pub fn init(supervise: bool) -> Result<(), LeftoverError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = owners_dir().join(token());
    // Only root may write the records a sweep acts on. Where they cannot
    // be kept (not root, a read-only /run), the run goes on without.
    if fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .is_err()
    {
        return Ok(());
    }
    let _ = RECORDS.set(dir.join("records"));
    if supervise {
        start_supervisor(&dir)?;
    }
    Ok(())
}

/// The sweep of dead owners' leftovers, while it runs beside this run.
static SWEEPING: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(None);

/// [`sweep_stale`] on a thread of its own, finished by [`finish`]: what a
/// dead owner left is named by its token, so removing it does not have to
/// hold up this run's start (it reads every cgroup root, the runtime's
/// state, the temporary directory and the mount table, and may wait for a
/// dead owner's supervisor). Call after [`init`] (which forks).
pub fn sweep_stale_in_background() {
    let spawned = std::thread::Builder::new()
        .name("trace-sweep".into())
        .spawn(sweep_stale);
    match spawned {
        Ok(handle) => {
            if let Ok(mut slot) = SWEEPING.lock() {
                *slot = Some(handle);
            }
        }
        Err(_) => sweep_stale(),
    }
}

/// Waits for the sweep [`sweep_stale_in_background`] started, then removes
/// this run's owner directory: everything it made is gone.
pub fn finish() {
    let sweeping = SWEEPING.lock().ok().and_then(|mut slot| slot.take());
    if let Some(handle) = sweeping {
        let _ = handle.join();
    }
    if RECORDS.get().is_some() {
        let _ = fs::remove_dir_all(owners_dir().join(token()));
    }
}

/// Kinds of record.
const PATH: u8 = b'p';
const RUNTIME: u8 = b'r';
const ENGINE: u8 = b'e';

fn record(kind: u8, what: &Path) {
    use std::io::Write;
    let Some(file) = RECORDS.get() else { return };
    let mut line = vec![kind];
    line.extend_from_slice(what.as_os_str().as_bytes());
    // NUL ends a record: the one byte no path holds.
    line.push(0);
    // One write of an O_APPEND file: records never interleave.
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(file) {
        let _ = f.write_all(&line);
    }
}

/// Notes a file or directory this run made and removes when done; a
/// killed run's is removed by the next sweep. Call as soon as it exists.
pub fn record_path(path: &Path) {
    match std::path::absolute(path) {
        Ok(p) => record(PATH, &p),
        Err(_) => record(PATH, path),
    }
}

/// Notes the OCI runtime that keeps this run's container state.
pub fn record_runtime(runtime: &Path) {
    record(RUNTIME, runtime);
}

/// Notes an engine this run starts containers or loads images in: a
/// killed run's are removed from it (they carry the owner as a label or
/// in the name).
pub fn record_engine(engine: Engine) {
    record(ENGINE, Path::new(engine.program()));
}

struct Records {
    paths: Vec<PathBuf>,
    runtimes: Vec<PathBuf>,
    engines: BTreeSet<Engine>,
}

fn read_records(dir: &Path) -> Records {
    let bytes = fs::read(dir.join("records")).unwrap_or_default();
    let mut r = Records {
        paths: Vec::new(),
        runtimes: Vec::new(),
        engines: BTreeSet::new(),
    };
    for rec in bytes.split(|&b| b == 0) {
        let Some((&kind, rest)) = rec.split_first() else {
            continue;
        };
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(rest));
        // Only absolute paths were recorded; anything else is not ours.
        match kind {
            PATH if p.is_absolute() => r.paths.push(p),
            RUNTIME if p.is_absolute() => r.runtimes.push(p),
            ENGINE => {
                if let Some(e) = [Engine::Docker, Engine::Podman]
                    .into_iter()
                    .find(|e| e.program().as_bytes() == rest)
                {
                    r.engines.insert(e);
                }
            }
            _ => {}
        }
    }
    r
}

/// The owner token in a name `<prefix><pid>-<start>-<n…>`; None for any
/// other name (an older `trace`'s, someone else's).
fn token_in(name: &str, prefix: &str) -> Option<String> {
    let mut f = name.strip_prefix(prefix)?.splitn(3, '-');
    let (pid, start, rest) = (f.next()?, f.next()?, f.next()?);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(pid) && numeric(start) && !rest.is_empty()).then(|| format!("{pid}-{start}"))
}

/// Cgroup hierarchy roots: the v2 mount and every v1 one.
fn cgroup_roots() -> Vec<(PathBuf, bool)> {
    let mut roots: Vec<(PathBuf, bool)> = cgroup::v1_mounts()
        .into_iter()
        .map(|p| (p, false))
        .collect();
    if let Ok(Some(m)) = cgroup::find_mount() {
        roots.push((m.path, true));
    }
    roots
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}

/// Mount points, from /proc/self/mountinfo (octal escapes undone; bytes,
/// as a mount point need not be UTF-8).
fn mount_points() -> Vec<PathBuf> {
    mount_points_in(&cgroup::read_mountinfo().unwrap_or_default())
}

fn mount_points_in(table: &[u8]) -> Vec<PathBuf> {
    table
        .split(|&c| c == b'\n')
        .filter_map(|l| l.split(|&c| c == b' ').filter(|f| !f.is_empty()).nth(4))
        .map(|m| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(m))))
        .collect()
}

fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Every owner that left something and is dead now.
fn dead_owners() -> BTreeSet<String> {
    let mut tokens = BTreeSet::new();
    for (name, _) in entries(&owners_dir()) {
        tokens.insert(name);
    }
    for (root, _) in cgroup_roots() {
        tokens.extend(
            entries(&root)
                .iter()
                .filter_map(|(n, _)| token_in(n, "trace-")),
        );
    }
    tokens.extend(
        entries(&runtime_root())
            .iter()
            .filter_map(|(n, _)| token_in(n, "trace-")),
    );
    tokens.extend(
        entries(&std::env::temp_dir())
            .iter()
            .filter_map(|(n, _)| token_in(n, "trace-bundle-")),
    );
    for m in mount_points() {
        if let Some(t) = m
            .components()
            .filter_map(|c| token_in(&c.as_os_str().to_string_lossy(), "trace-bundle-"))
            .next()
        {
            tokens.insert(t);
        }
    }
    tokens.retain(|t| t != token() && !owner::alive(t));
    tokens
}

/// Removes what dead `trace` runs left: called at every start.
pub fn sweep_stale() {
    for t in dead_owners() {
        sweep(&t, true);
    }
}

/// Removes everything of owner `t` (which must be dead): its processes
/// first, then the runtime's state, mounts, files and cgroups.
fn sweep(t: &str, wait_for_supervisor: bool) {
    let dir = owners_dir().join(t);
    if wait_for_supervisor && let Ok(s) = fs::read_to_string(dir.join("supervisor")) {
        // It is removing the same things; let it finish first.
        let deadline = Instant::now() + Duration::from_secs(10);
        while owner::alive(s.trim()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let records = read_records(&dir);
    // The engine stops and removes its containers itself (by their owner
    // label, now dead), then its temporary images go.
    for e in &records.engines {
        super::engine::remove_stale(*e);
    }
    let prefix = format!("trace-{t}-");
    let ours: Vec<(PathBuf, bool)> = cgroup_roots()
        .into_iter()
        .flat_map(|(root, v2)| {
            entries(&root)
                .into_iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(move |(_, p)| (p, v2))
        })
        .collect();
    kill_cgroups(&ours);

    let rroot = runtime_root();
    for (name, path) in entries(&rroot) {
        if !name.starts_with(&prefix) {
            continue;
        }
        for rt in &records.runtimes {
            let _ = Command::new(rt)
                .arg("--root")
                .arg(&rroot)
                .args(["delete", "--force", &name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&path);
    }

    let bundle = format!("trace-bundle-{t}-");
    let in_bundle = |p: &Path| {
        p.components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with(&bundle))
    };
    let mut mounts: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| in_bundle(m))
        .collect();
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in &mounts {
        // A path of a dead run's bundle.
        let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
    }

    let mut paths = records.paths;
    paths.extend(
        entries(&std::env::temp_dir())
            .into_iter()
            .filter(|(n, _)| n.starts_with(&bundle))
            .map(|(_, p)| p),
    );
    for p in &paths {
        remove_path(p);
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    for (cg, _) in &ours {
        while remove_tree(cg).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Removes a file, or a directory with all it holds, unless something is
/// still mounted below it (a tree is never removed through a mount).
fn remove_path(p: &Path) {
    let Ok(meta) = fs::symlink_metadata(p) else {
        return;
    };
    if !meta.is_dir() {
        let _ = fs::remove_file(p);
        return;
    }
    if mount_points().iter().any(|m| m.starts_with(p)) {
        return;
    }
    // A second pass for what another sweep of the same owner (racing
    // with this one) made the first one trip over.
    if fs::remove_dir_all(p).is_err() {
        let _ = fs::remove_dir_all(p);
    }
}

/// Every process in the cgroups below `dir`.
fn procs_below(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for (_, p) in entries(dir) {
        if p.is_dir() {
            procs_below(&p, out);
        }
    }
}

/// Kills every process in these cgroups and waits (a while) until they
/// are empty: `cgroup.kill` on v2, a kill loop on `cgroup.procs` for v1
/// (and for kernels without `cgroup.kill`).
fn kill_cgroups(cgroups: &[(PathBuf, bool)]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut pids = Vec::new();
        for (cg, _) in cgroups {
            procs_below(cg, &mut pids);
        }
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for (cg, v2) in cgroups {
            if *v2 {
                let _ = fs::write(cg.join("cgroup.kill"), "1");
            }
        }
        for pid in pids {
            // A pid that is gone fails harmlessly.
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the cgroup `dir` and those below it, deepest first.
fn remove_tree(dir: &Path) -> io::Result<()> {
    for (_, p) in entries(dir) {
        if p.is_dir() {
            remove_tree(&p)?;
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Forks the process that outlives a killed `trace` to clean up after it.
fn start_supervisor(dir: &Path) -> Result<(), LeftoverError> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io_err("a pipe for the supervisor")(
            io::Error::last_os_error(),
        ));
    }
    let owner = token().to_string();
    // SAFETY: called while the process has one thread (see `init`): the
    // child may use anything.
    match unsafe { libc::fork() } {
        -1 => Err(io_err("forking the supervisor")(io::Error::last_os_error())),
        0 => supervise(fds[0], fds[1], &owner),
        pid => {
            // The write end stays open, unread, until this process ends:
            // that end of the pipe is how the supervisor learns it did.
            // SAFETY: our own descriptor.
            unsafe { libc::close(fds[0]) };
            let s = owner::token_of(pid as u32);
            let _ = fs::write(dir.join("supervisor"), s);
            Ok(())
        }
    }
}

/// The supervisor: out of the terminal's session (a Ctrl-C or hang-up
/// meant for `trace` does not reach it), holding nothing of the caller's
/// open, waiting for `trace` to end; then it removes what is left.
fn supervise(rd: RawFd, wr: RawFd, owner: &str) -> ! {
    // SAFETY: plain syscalls in a freshly forked, single-threaded child.
    unsafe {
        libc::close(wr);
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        if libc::dup2(rd, 3) == 3 {
            // Descriptors of the caller (a pipe it waits on to see trace
            // end) must not stay open here.
            if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) != 0 {
                for fd in 4..1024 {
                    libc::close(fd);
                }
            }
        }
        libc::prctl(libc::PR_SET_NAME, c"trace-cleanup".as_ptr());
        let mut b = [0u8; 1];
        loop {
            let n = libc::read(3, b.as_mut_ptr().cast(), 1);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
    }
    sweep(owner, false);
    // SAFETY: ends the child without running the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_tokens_in_names() {
        assert_eq!(
            token_in("trace-12-345-6", "trace-").as_deref(),
            Some("12-345")
        );
        assert_eq!(
            token_in("trace-bundle-12-345-0", "trace-bundle-").as_deref(),
            Some("12-345")
        );
        // An older trace's names, and others', are not ours to judge.
        assert_eq!(token_in("trace-12-000123456", "trace-"), None);
        assert_eq!(token_in("trace-12-trace-bundle-x", "trace-"), None);
        assert_eq!(token_in("trace-bundle-x1y2", "trace-bundle-"), None);
        assert_eq!(token_in("docker", "trace-"), None);
    }

    #[test]
    fn records_round_trip_and_mountinfo_escapes() {
        let d = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for (k, p) in [
            (PATH, "/tmp/a b"),
            (RUNTIME, "/usr/sbin/runc"),
            (PATH, "rel"),
            (ENGINE, "docker"),
            (ENGINE, "kubectl"),
        ] {
            bytes.push(k);
            bytes.extend_from_slice(p.as_bytes());
            bytes.push(0);
        }
        fs::write(d.path().join("records"), bytes).unwrap();
        let r = read_records(d.path());
        assert_eq!(r.paths, vec![PathBuf::from("/tmp/a b")]);
        assert_eq!(r.runtimes, vec![PathBuf::from("/usr/sbin/runc")]);
        assert_eq!(
            r.engines.into_iter().collect::<Vec<_>>(),
            vec![Engine::Docker]
        );
        assert_eq!(unescape(br"/tmp/a\040b"), b"/tmp/a b");
        assert_eq!(unescape(br"/x\\"), br"/x\\");
        // A mount point that is not UTF-8 is read, and keeps its bytes.
        let table = b"22 1 0:5 / / rw - ext4 /dev/vda rw\n\
            61 22 0:50 / /tmp/trace-bundle-1-2-0/ro\xff\\040x rw,relatime - overlay none rw\n";
        assert_eq!(
            mount_points_in(table),
            vec![
                PathBuf::from("/"),
                PathBuf::from(std::ffi::OsStr::from_bytes(
                    b"/tmp/trace-bundle-1-2-0/ro\xff x"
                )),
            ]
        );
    }
}
