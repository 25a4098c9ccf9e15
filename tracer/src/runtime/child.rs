//! Spawning the command inside the trace scope.
use std::{
    ffi::{CString, OsString},
    io,
    os::{
        fd::{OwnedFd, RawFd},
        unix::{ffi::OsStrExt, process::ExitStatusExt},
    },
    path::PathBuf,
    process::{ExitStatus, Stdio},
};

use rustix::{
    fs::{self as rfs, Mode, OFlags},
    process::{PidfdFlags, Signal, WaitOptions},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    process::Command,
};

use super::clone3;

/// How the child enters the scope before its first instruction, so that
/// nothing it does escapes the trace (not even its exec).
#[derive(Clone, Debug)]
pub enum Join {
    /// Be born in this cgroup directory (`clone3`), or where the kernel
    /// cannot do that, write "0" into its `cgroup.procs` before exec.
    Cgroup(PathBuf),
    /// Add its own pid to this BPF hash map before exec (pid scope).
    PidMap(RawFd),
}

/// The running command.
pub struct Child {
    pid: u32,
    kind: Kind,
}

enum Kind {
    Tokio(tokio::process::Child),
    Pidfd(AsyncFd<OwnedFd>),
}

impl Child {
    pub fn id(&self) -> u32 {
        self.pid
    }

    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match &mut self.kind {
            Kind::Tokio(c) => c.wait().await,
            Kind::Pidfd(fd) => loop {
                // A pidfd turns readable when the process exits.
                let mut guard = fd.readable().await?;
                // Our own child; the pidfd keeps its pid from reuse.
                let pid = rustix::process::Pid::from_raw(self.pid as i32)
                    .ok_or_else(|| io::Error::other("pid 0"))?;
                if let Some((_, st)) = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG)? {
                    return Ok(ExitStatus::from_raw(st.as_raw()));
                }
                guard.clear_ready();
            },
        }
    }
}

#[repr(C)]
struct BpfMapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;

/// What the forked child does before exec: only async-signal-safe
/// syscalls, no allocation.
enum PreExec {
    WriteProcs(CString),
    PidMap(RawFd),
}

fn join_scope(join: &PreExec) -> io::Result<()> {
    match join {
        PreExec::WriteProcs(procs) => {
            // rustix passes the &CStr through and allocates nothing.
            let fd = rfs::open(
                procs.as_c_str(),
                OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            match rustix::io::write(&fd, b"0")? {
                1 => Ok(()),
                _ => Err(io::Error::other("short write to cgroup.procs")),
            }
        }
        PreExec::PidMap(fd) => {
            let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
            // Start time unknown here: 0 marks trace's own child, which
            // trace waits for itself (its descendants get theirs at fork).
            let start: u64 = 0;
            let attr = BpfMapElemAttr {
                map_fd: *fd as u32,
                _pad: 0,
                key: &pid as *const u32 as u64,
                value: &start as *const u64 as u64,
                flags: 0,
            };
            // SAFETY: BPF_MAP_UPDATE_ELEM reads `attr` (its size given)
            // and the key and value it points at, all live locals; the
            // map fd is ours. No safe wrapper covers a raw map fd here.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_UPDATE_ELEM,
                    &attr as *const BpfMapElemAttr,
                    std::mem::size_of::<BpfMapElemAttr>(),
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
    }
}

/// Starts `argv` with inherited stdio, already inside the scope, and
/// chrooted into `root` when given (the program and PATH are then looked
/// up inside it).
pub fn spawn(argv: &[OsString], join: Join, root: Option<&std::path::Path>) -> io::Result<Child> {
    let pre_exec = match join {
        Join::Cgroup(dir) => match clone3_or_enosys(argv, &dir, root) {
            Ok(s) => {
                // SAFETY: the AsyncFd owns the pidfd for as long as it is
                // registered.
                let fd = unsafe { AsyncFd::register_with_interest(s.pidfd, Interest::READABLE) }
                    .map_err(|e| e.into_parts().1)?;
                return Ok(Child {
                    pid: s.pid,
                    kind: Kind::Pidfd(fd),
                });
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG)
                ) =>
            {
                let procs = dir.join("cgroup.procs");
                PreExec::WriteProcs(CString::new(procs.as_os_str().as_bytes()).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "cgroup path contains a NUL byte",
                    )
                })?)
            }
            Err(e) => return Err(e),
        },
        Join::PidMap(fd) => PreExec::PidMap(fd),
    };
    let root = root
        .map(|r| CString::new(r.as_os_str().as_bytes()))
        .transpose()
        .map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "root path contains a NUL byte")
        })?;
    spawn_pre_exec(argv, pre_exec, root)
}

/// Test hook: pretend the kernel lacks clone3, to exercise the fallback
/// that older kernels (< 5.7) take.
const NO_CLONE3_ENV: &str = "TRACE_DEBUG_NO_CLONE3";

fn clone3_or_enosys(
    argv: &[OsString],
    dir: &std::path::Path,
    root: Option<&std::path::Path>,
) -> io::Result<clone3::Spawned> {
    if std::env::var_os(NO_CLONE3_ENV).is_some() {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    clone3::spawn(argv, dir, root)
}

/// The portable path: fork with std, join the scope in a pre-exec hook.
fn spawn_pre_exec(argv: &[OsString], join: PreExec, root: Option<CString>) -> io::Result<Child> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    let parent = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: the hook only makes raw syscalls (see `join_scope`).
    unsafe {
        cmd.pre_exec(move || {
            super::clone3::die_with_parent(parent);
            join_scope(&join)?;
            if let Some(r) = &root {
                rustix::process::chroot(r.as_c_str())?;
                rustix::process::chdir(c"/")?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("child exited before its pid was read"))?;
    Ok(Child {
        pid,
        kind: Kind::Tokio(child),
    })
}

/// The start time of `pid` in clock ticks since boot (`/proc/PID/stat`
/// field 22), which is `task->start_boottime` divided down.
fn start_ticks(pid: u32) -> Option<u64> {
    super::proc_stat::read(pid).map(|s| s.start_ticks)
}

/// Converts the kernel's `start_boottime` (ns) to `/proc`'s ticks.
pub fn ns_to_ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / clock_ticks())
}

/// `/proc`'s start time of `pid`, as the kernel side records it (ns,
/// rounded down to a tick), for pids put into the scope by hand.
pub fn start_time_ns(pid: u32) -> Option<u64> {
    Some(start_ticks(pid)? * (1_000_000_000 / clock_ticks()))
}

/// `/proc`'s clock ticks per second (`_SC_CLK_TCK`).
fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// Sends `sig` to `pid` only if it is still the process that started at
/// `start_ns` (the kernel's record of the process traced): a pid reused
/// by an unrelated process is never signalled. The check is made through
/// a pidfd, which pins the process it was opened on. True when sent.
pub fn signal_if_same(pid: u32, start_ns: u64, sig: i32) -> bool {
    if start_ns == 0 {
        return false;
    }
    let (Some(p), Some(sig)) = (
        rustix::process::Pid::from_raw(pid as i32),
        Signal::from_named_raw(sig),
    ) else {
        return false;
    };
    let Ok(fd) = rustix::process::pidfd_open(p, PidfdFlags::empty()) else {
        return false;
    };
    start_ticks(pid) == Some(ns_to_ticks(start_ns))
        && rustix::process::pidfd_send_signal(&fd, sig).is_ok()
}

/// Sends `sig` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: i32) {
    if let (Some(p), Some(sig)) = (
        rustix::process::Pid::from_raw(pid as i32),
        Signal::from_named_raw(sig),
    ) {
        let _ = rustix::process::kill_process(p, sig);
    }
}
