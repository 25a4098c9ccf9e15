//! Spawning the command inside the trace scope.
use std::{ffi::CString, io, os::fd::RawFd, process::Stdio};

use tokio::process::{Child, Command};

/// How the child puts itself into the scope between fork and exec, so
/// that nothing it does escapes the trace (not even its exec).
#[derive(Clone, Debug)]
pub enum Join {
    /// Write "0" into this `cgroup.procs` file.
    Cgroup(CString),
    /// Add its own pid to this BPF hash map (pid scope).
    PidMap(RawFd),
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

/// Runs in the forked child: only async-signal-safe syscalls, no allocation.
fn join_scope(join: &Join) -> io::Result<()> {
    match join {
        Join::Cgroup(procs) => {
            // SAFETY: raw syscalls on a NUL-terminated path we own.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
            }
            Ok(())
        }
        Join::PidMap(fd) => {
            // SAFETY: getpid cannot fail; the attr points at live locals.
            let pid: u32 = unsafe { libc::getpid() } as u32;
            let one: u8 = 1;
            let attr = BpfMapElemAttr {
                map_fd: *fd as u32,
                _pad: 0,
                key: &pid as *const u32 as u64,
                value: &one as *const u8 as u64,
                flags: 0,
            };
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

/// Starts `argv` with inherited stdio, already inside the scope.
pub fn spawn(argv: &[String], join: Join) -> io::Result<Child> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // SAFETY: the hook only makes raw syscalls (see `join_scope`).
    unsafe {
        cmd.pre_exec(move || join_scope(&join));
    }
    cmd.spawn()
}

/// Sends `sig` to `pid`; a process that is already gone is not an error.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: plain syscall.
    unsafe { libc::kill(pid as i32, sig) };
}
