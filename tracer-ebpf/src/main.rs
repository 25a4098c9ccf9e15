//! eBPF programs of `trace`: tracepoints on the file syscalls and on
//! process exec/fork/exit. See `tracer-common` for the record format.
#![no_std]
#![no_main]

mod event;
mod exec;
mod finish;
mod kernel;
mod maps;
mod scope;
mod syscalls;

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use syscalls::Args;
use tracer_common::{Syscall, scope_mode};

use crate::maps::{CONFIG, SCOPE_PIDS};

/// One entry program per syscall: the argument layout differs.
macro_rules! enter {
    ($name:ident, $sys:expr, dirfd = $d:expr, path = $p:expr, flags = $f:expr, fixed = $x:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            syscalls::on_enter(
                &ctx,
                $sys,
                Args {
                    dirfd: $d,
                    path: $p,
                    flags: $f,
                    fixed_flags: $x,
                },
            );
            0
        }
    };
}

const NONE: i8 = -1;
const O_WRONLY_CREAT_TRUNC: u64 = 0o1 | 0o100 | 0o1000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;

enter!(
    enter_open,
    Syscall::Open,
    dirfd = NONE,
    path = 0,
    flags = 1,
    fixed = 0
);
enter!(
    enter_openat,
    Syscall::Openat,
    dirfd = 0,
    path = 1,
    flags = 2,
    fixed = 0
);
enter!(
    enter_openat2,
    Syscall::Openat2,
    dirfd = 0,
    path = 1,
    flags = NONE,
    fixed = 0
);
enter!(
    enter_creat,
    Syscall::Creat,
    dirfd = NONE,
    path = 0,
    flags = NONE,
    fixed = O_WRONLY_CREAT_TRUNC
);
enter!(
    enter_newstat,
    Syscall::Stat,
    dirfd = NONE,
    path = 0,
    flags = NONE,
    fixed = 0
);
enter!(
    enter_newlstat,
    Syscall::Lstat,
    dirfd = NONE,
    path = 0,
    flags = NONE,
    fixed = AT_SYMLINK_NOFOLLOW
);
enter!(
    enter_newfstatat,
    Syscall::Newfstatat,
    dirfd = 0,
    path = 1,
    flags = 3,
    fixed = 0
);
enter!(
    enter_statx,
    Syscall::Statx,
    dirfd = 0,
    path = 1,
    flags = 2,
    fixed = 0
);
enter!(
    enter_access,
    Syscall::Access,
    dirfd = NONE,
    path = 0,
    flags = 1,
    fixed = 0
);
enter!(
    enter_faccessat,
    Syscall::Faccessat,
    dirfd = 0,
    path = 1,
    flags = 2,
    fixed = 0
);
enter!(
    enter_faccessat2,
    Syscall::Faccessat2,
    dirfd = 0,
    path = 1,
    flags = 2,
    fixed = 0
);
enter!(
    enter_readlink,
    Syscall::Readlink,
    dirfd = NONE,
    path = 0,
    flags = NONE,
    fixed = 0
);
enter!(
    enter_readlinkat,
    Syscall::Readlinkat,
    dirfd = 0,
    path = 1,
    flags = NONE,
    fixed = 0
);
enter!(
    enter_chdir,
    Syscall::Chdir,
    dirfd = NONE,
    path = 0,
    flags = NONE,
    fixed = 0
);
enter!(
    enter_fchdir,
    Syscall::Fchdir,
    dirfd = 0,
    path = NONE,
    flags = NONE,
    fixed = 0
);
enter!(
    enter_execve,
    Syscall::Execve,
    dirfd = NONE,
    path = 0,
    flags = NONE,
    fixed = 0
);
enter!(
    enter_execveat,
    Syscall::Execveat,
    dirfd = 0,
    path = 1,
    flags = 4,
    fixed = 0
);

/// Attached to the `sys_exit_*` tracepoint of every syscall above.
#[tracepoint]
pub fn exit_syscall(ctx: TracePointContext) -> u32 {
    syscalls::on_exit(&ctx);
    0
}

/// Tail-called (slot 0 of `FINISH`) to complete and submit a record.
#[tracepoint]
pub fn finish(ctx: TracePointContext) -> u32 {
    finish::run(&ctx);
    0
}

#[tracepoint]
pub fn process_exec(ctx: TracePointContext) -> u32 {
    exec::on_exec(&ctx);
    0
}

/// Pid scope only: children of traced processes are traced.
#[tracepoint]
pub fn process_fork(ctx: TracePointContext) -> u32 {
    let cfg = CONFIG.load();
    if cfg.scope_mode != scope_mode::PIDS {
        return 0;
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if unsafe { SCOPE_PIDS.get(&tgid) }.is_none() {
        return 0;
    }
    if let Ok(child) = unsafe { ctx.read_at::<i32>(cfg.fork_child_pid_off as usize) } {
        let _ = SCOPE_PIDS.insert(&(child as u32), &1, 0);
    }
    0
}

/// Pid scope only: forget exited tasks so a reused pid is not traced.
#[tracepoint]
pub fn process_exit(_ctx: TracePointContext) -> u32 {
    if CONFIG.load().scope_mode != scope_mode::PIDS {
        return 0;
    }
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    let _ = SCOPE_PIDS.remove(&tid);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
