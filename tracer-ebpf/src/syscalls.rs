//! File syscalls: remember the arguments at entry, report at exit.
//!
//! Strings are read at exit because the kernel has faulted the page in by
//! then; at entry `bpf_probe_read_user_str` can fail on a cold page.
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::bpf_probe_read_user_str,
    },
    programs::RawTracePointContext,
};
use tracer_common::{
    AT_FDCWD, DEDUP_PATH, KernelOffsets, PATH_MAX, SYSCALL_WORDS, Syscall, flags, loss, nr, stats,
};

use crate::{
    event, finish,
    kernel::{self, KPath},
    maps::{
        DEDUP, DedupKey, INFLIGHT, Inflight, KEY_SCRATCH, SYSCALL_BITS, count_loss, count_stat,
    },
    scope::in_scope,
};

/// Which arguments of a syscall hold the dirfd, the path and the flags
/// (-1: none), and flags implied by the syscall itself (lstat means
/// no-follow).
struct Args {
    dirfd: i8,
    path: i8,
    flags: i8,
    fixed_flags: u64,
}

const NONE: i8 = -1;
const O_ACCMODE: u64 = 0o3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;
const O_WRONLY_CREAT_TRUNC: u64 = 0o1 | O_CREAT | O_TRUNC;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;

#[inline(always)]
fn args_of(s: Syscall) -> Args {
    let (dirfd, path, flags, fixed_flags) = match s {
        Syscall::Open => (NONE, 0, 1, 0),
        Syscall::Openat => (0, 1, 2, 0),
        Syscall::Openat2 => (0, 1, NONE, 0),
        Syscall::Creat => (NONE, 0, NONE, O_WRONLY_CREAT_TRUNC),
        Syscall::Stat => (NONE, 0, NONE, 0),
        Syscall::Lstat => (NONE, 0, NONE, AT_SYMLINK_NOFOLLOW),
        Syscall::Newfstatat => (0, 1, 3, 0),
        Syscall::Statx => (0, 1, 2, 0),
        Syscall::Access => (NONE, 0, 1, 0),
        Syscall::Faccessat | Syscall::Faccessat2 => (0, 1, 2, 0),
        Syscall::Readlink => (NONE, 0, NONE, 0),
        Syscall::Readlinkat => (0, 1, NONE, 0),
        Syscall::Chdir => (NONE, 0, NONE, 0),
        Syscall::Fchdir => (0, NONE, NONE, 0),
        Syscall::Execve => (NONE, 0, NONE, 0),
        Syscall::Execveat => (0, 1, 4, 0),
    };
    Args {
        dirfd,
        path,
        flags,
        fixed_flags,
    }
}

/// The recorded syscall with this native number, if any.
#[inline(always)]
fn classify(id: i64) -> Option<Syscall> {
    // Iterators, not indexing: a bounds-check panic path would leave the
    // program without a final exit, which the verifier rejects.
    nr::TABLE.iter().find(|(n, _)| *n == id).map(|(_, s)| *s)
}

/// Syscall argument `index` from the saved user registers.
#[inline(always)]
fn arg(o: &KernelOffsets, regs: u64, index: i8) -> u64 {
    let Some(off) = usize::try_from(index).ok().and_then(|i| o.regs_arg.get(i)) else {
        return 0;
    };
    let off = *off as u64;
    unsafe { bpf_probe_read_kernel((regs + off) as *const u64) }.unwrap_or(0)
}

/// `raw_syscalls:sys_enter(struct pt_regs *regs, long id)`: runs for every
/// syscall on the machine, so the cheap id check comes first.
#[inline(always)]
pub fn on_enter(ctx: &RawTracePointContext) {
    let id: i64 = ctx.arg(1);
    if !in_scope() {
        return;
    }
    // The set of syscalls made, for seccomp profiles.
    if (0..(SYSCALL_WORDS * 64) as i64).contains(&id)
        && let Some(bits) = SYSCALL_BITS.get_ptr_mut(0)
    {
        let word = ((id as usize) >> 6) & (SYSCALL_WORDS - 1);
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { (*bits)[word] |= 1u64 << (id & 63) };
    }
    let Some(syscall) = classify(id) else {
        return;
    };
    let regs: u64 = ctx.arg(0);
    let o = kernel::offsets();
    let args = args_of(syscall);
    let dirfd = if args.dirfd >= 0 {
        arg(&o, regs, args.dirfd) as i32
    } else {
        AT_FDCWD
    };
    let mut inflight = Inflight {
        syscall: syscall as u8,
        _pad: [0; 3],
        dirfd,
        path: arg(&o, regs, args.path),
        flags: arg(&o, regs, args.flags) | args.fixed_flags,
        aux: 0,
        cwd_mnt: 0,
        cwd_dentry: 0,
    };
    if syscall == Syscall::Chdir {
        let (_, pwd) = kernel::root_and_pwd(&o, kernel::current_task());
        inflight.cwd_mnt = pwd.mnt;
        inflight.cwd_dentry = pwd.dentry;
    }
    if syscall == Syscall::Openat2 {
        // `struct open_how *`; its `flags` are read at exit.
        inflight.aux = arg(&o, regs, 2);
    }
    if INFLIGHT
        .insert(bpf_get_current_pid_tgid(), inflight, 0)
        .is_err()
    {
        count_loss(loss::INFLIGHT_FULL);
    }
}

/// What makes two accesses of one path different for deduplication.
#[inline(always)]
fn dedup_kind(syscall: u8, f: u64) -> u32 {
    let s = syscall;
    if s <= Syscall::Creat as u8 {
        (1 << 24) | (f & (O_ACCMODE | O_CREAT | O_TRUNC | O_DIRECTORY)) as u32
    } else if s <= Syscall::Statx as u8 {
        let nofollow = (f & AT_SYMLINK_NOFOLLOW != 0) as u32;
        (2 << 24) | nofollow
    } else if s <= Syscall::Faccessat2 as u8 {
        (3 << 24) | (f & 7) as u32
    } else if s <= Syscall::Readlinkat as u8 {
        4 << 24
    } else if s <= Syscall::Fchdir as u8 {
        5 << 24
    } else {
        6 << 24
    }
}

#[inline(always)]
fn zero_key(key: *mut DedupKey) {
    let words = key as *mut u64;
    let mut i = 0;
    while i < core::mem::size_of::<DedupKey>() / 8 {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

#[inline(always)]
/// `raw_syscalls:sys_exit(struct pt_regs *regs, long ret)`: also runs for
/// every syscall; tasks out of scope leave at the first check.
pub fn on_exit(ctx: &RawTracePointContext) {
    if !in_scope() {
        return;
    }
    let id = bpf_get_current_pid_tgid();
    let Some(inflight) = (unsafe { INFLIGHT.get(id) }).copied() else {
        return;
    };
    let _ = INFLIGHT.remove(id);
    let ret: i64 = ctx.arg(1);
    let syscall = inflight.syscall;
    let is_exec = syscall == Syscall::Execve as u8 || syscall == Syscall::Execveat as u8;
    if is_exec && ret == 0 {
        // Reported by `sched_process_exec`, which sees the new image.
        return;
    }
    count_stat(stats::SEEN);

    let mut arg_flags = inflight.flags;
    if syscall == Syscall::Openat2 as u8 {
        arg_flags = unsafe { bpf_probe_read_user(inflight.aux as *const u64) }.unwrap_or(0);
    }

    let o = kernel::offsets();
    let task = kernel::current_task();
    let (root, mut pwd) = kernel::root_and_pwd(&o, task);
    if syscall == Syscall::Chdir as u8 {
        pwd = KPath {
            mnt: inflight.cwd_mnt,
            dentry: inflight.cwd_dentry,
        };
    }
    let Some(key) = KEY_SCRATCH.get_ptr_mut(0) else {
        count_loss(loss::NO_SCRATCH);
        return;
    };
    zero_key(key);

    let mut ev_flags: u16 = 0;
    let mut base: Option<KPath> = None;
    let mut key_len: i64 = 0;
    if syscall == Syscall::Fchdir as u8 {
        match kernel::fd_path(&o, task, inflight.dirfd) {
            Some(p) => base = Some(p),
            None => ev_flags |= flags::BAD_DIRFD,
        }
    } else {
        key_len = unsafe {
            bpf_probe_read_user_str(
                (*key).path.as_mut_ptr() as *mut c_void,
                DEDUP_PATH as u32,
                inflight.path as *const c_void,
            )
        };
        let first = unsafe { (*key).path[0] };
        if key_len < 0 {
            ev_flags |= flags::RAW_UNREADABLE;
        } else if first == 0 {
            // An empty path with AT_EMPTY_PATH is fstat(fd): no lookup.
            return;
        } else if first != b'/' {
            if inflight.dirfd == AT_FDCWD {
                base = Some(pwd);
            } else {
                match kernel::fd_path(&o, task, inflight.dirfd) {
                    Some(p) => base = Some(p),
                    None => ev_flags |= flags::BAD_DIRFD,
                }
            }
        }
    }

    unsafe {
        (*key).base = match base {
            Some(b) => b.dentry,
            None => root.dentry,
        };
        (*key).kind = dedup_kind(syscall, arg_flags);
        (*key).ret = if ret < 0 { ret as i32 } else { 0 };
    }
    // A key that filled the buffer may be a prefix of a longer path.
    let dedupable = key_len > 0 && (key_len as usize) < DEDUP_PATH;
    if dedupable {
        let key_ref = unsafe { &*key };
        if unsafe { DEDUP.get(key_ref) }.is_some() {
            count_stat(stats::DEDUPLICATED);
            return;
        }
        let _ = DEDUP.insert(key_ref, 1, 0);
    }

    let Some(buf) = event::start(syscall, inflight.dirfd, ret, arg_flags) else {
        return;
    };
    let Some(pending) = finish::pending() else {
        return;
    };
    let data = unsafe { (*buf).data.as_mut_ptr() };
    let mut raw_len: usize = 0;
    if syscall != Syscall::Fchdir as u8 && key_len >= 0 {
        let n = unsafe {
            bpf_probe_read_user_str(
                data as *mut c_void,
                PATH_MAX as u32,
                inflight.path as *const c_void,
            )
        };
        if n > 0 {
            raw_len = (n as usize - 1) & (PATH_MAX - 1);
            if n as usize >= PATH_MAX {
                ev_flags |= flags::RAW_TRUNCATED;
            }
        } else {
            ev_flags |= flags::RAW_UNREADABLE;
        }
    }
    unsafe {
        (*buf).header.flags = ev_flags;
        (*buf).header.raw_len = raw_len as u16;
        (*pending).pos = raw_len as u64;
        (*pending).root_mnt = root.mnt;
        (*pending).root_dentry = root.dentry;
        if let Some(b) = base {
            (*pending).base_mnt = b.mnt;
            (*pending).base_dentry = b.dentry;
        }
    }
    finish::tail_call(ctx);
}
