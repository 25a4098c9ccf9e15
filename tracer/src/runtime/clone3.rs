//! Starting a child directly inside a cgroup with `clone3(CLONE_INTO_CGROUP)`.
//!
//! Moving a process by writing `cgroup.procs` takes the cgroup threadgroup
//! lock, whose write side waits for an RCU grace period: ~10 ms of every
//! run. `CLONE_INTO_CGROUP` (Linux 5.7) places the child at birth instead.
//! Between clone and exec the child runs only async-signal-safe calls on
//! data prepared here, and searches PATH itself (like `execvp`) so that
//! its failed lookups are part of the trace.
use std::{
    ffi::{CString, OsStr, OsString},
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::OpenOptionsExt},
    },
    path::Path,
};

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte"))
}

/// The paths `execvp` would try for `prog`, in order.
pub fn candidates(prog: &OsStr, path_var: Option<&OsStr>) -> Vec<OsString> {
    if prog.as_bytes().contains(&b'/') {
        return vec![prog.to_os_string()];
    }
    let path = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            // An empty PATH entry means the working directory.
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(prog.as_bytes());
            OsString::from(std::ffi::OsStr::from_bytes(&full))
        })
        .collect()
}

/// A started child: its pid and a pidfd to wait on.
pub struct Spawned {
    pub pid: u32,
    pub pidfd: OwnedFd,
}

/// Forks `argv` into the cgroup at `cgroup_dir` and execs it there.
/// `Err` with the exec errno when no candidate could be executed; with
/// ENOSYS, EINVAL or E2BIG when the kernel lacks `clone3`/`CLONE_INTO_CGROUP`.
pub fn spawn(argv: &[OsString], cgroup_dir: &Path, root: Option<&Path>) -> io::Result<Spawned> {
    let prog = argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?;
    let argv_c = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let env_c = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let paths_c = candidates(OsStr::new(prog), std::env::var_os("PATH").as_deref())
        .iter()
        .map(|p| cstring(p.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    env_p.push(std::ptr::null());
    let paths_p: Vec<*const libc::c_char> = paths_c.iter().map(|c| c.as_ptr()).collect();
    let root_c = root
        .map(|r| cstring(r.as_os_str().as_bytes()))
        .transpose()?;
    let root_p = root_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());

    let dir = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(cgroup_dir)?;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors to us.
    let (err_rd, err_wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: fork-like clone (no CLONE_VM); the child only calls
    // `exec_child`, which stays async-signal-safe.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret == 0 {
        // SAFETY: in the child; every pointer refers to memory prepared
        // above, copied into the child's address space.
        unsafe {
            exec_child(
                parent,
                &paths_p,
                argv_p.as_ptr(),
                env_p.as_ptr(),
                root_p,
                err_wr.as_raw_fd(),
            )
        }
    }
    let pid = ret as u32;
    drop(err_wr);
    // SAFETY: CLONE_PIDFD stored a new descriptor in `pidfd`.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut errno = [0u8; 4];
    let n = loop {
        // SAFETY: reading into a local buffer of the stated size.
        let n = unsafe { libc::read(err_rd.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    if n == 4 {
        // The exec failed; the child has exited with 127. Reap it.
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(Spawned { pid, pidfd })
}

/// Runs in the child: killed with `trace` (a container runtime left
/// behind would keep the container running), default signal state, then
/// `execve` on each candidate; on failure reports errno through the pipe
/// and exits 127.
///
/// # Safety
/// Called only in the child of a `clone3` without `CLONE_VM`, before
/// anything else: every pointer was built by the parent before the clone
/// and points at NUL-terminated data (arrays ending in a null pointer)
/// that lives on in the child's copy of the address space. Only
/// async-signal-safe libc calls are made; it never returns.
unsafe fn exec_child(
    parent: libc::pid_t,
    paths: &[*const libc::c_char],
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    root: *const libc::c_char,
    err_fd: libc::c_int,
) -> ! {
    // SAFETY: as the function's contract says; nothing here allocates.
    unsafe {
        die_with_parent(parent);
        if !root.is_null() && (libc::chroot(root) != 0 || libc::chdir(c"/".as_ptr()) != 0) {
            let bytes = (*libc::__errno_location()).to_ne_bytes();
            libc::write(err_fd, bytes.as_ptr().cast(), 4);
            libc::_exit(127);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Rust ignores SIGPIPE; an ignored signal would survive exec.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut err = libc::ENOENT;
        let mut denied = false;
        for &p in paths {
            libc::execve(p, argv, envp);
            let e = *libc::__errno_location();
            match e {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = true,
                other => {
                    err = other;
                    break;
                }
            }
        }
        if denied && err == libc::ENOENT {
            err = libc::EACCES;
        }
        let bytes = err.to_ne_bytes();
        libc::write(err_fd, bytes.as_ptr().cast(), 4);
        libc::_exit(127)
    }
}

/// SIGKILL when `parent` (trace) dies, or now if it already has. Only
/// async-signal-safe calls: used between fork and exec.
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: plain syscalls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() != parent {
            libc::_exit(137);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_search_order() {
        let c = candidates(OsStr::new("cat"), Some(OsStr::new("/a::/b")));
        assert_eq!(
            c,
            vec![
                OsString::from("/a/cat"),
                OsString::from("./cat"),
                OsString::from("/b/cat")
            ]
        );
        assert_eq!(
            candidates(OsStr::new("./x"), Some(OsStr::new("/a"))),
            vec![OsString::from("./x")]
        );
        assert_eq!(candidates(OsStr::new("ls"), None).len(), 6);
    }
}
