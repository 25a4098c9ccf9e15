//! File syscalls: remember the arguments (and the directories they are
//! relative to) at entry, report at exit.
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
    AT_FDCWD, PATH_MAX, SYSCALL_NR_MAX, SYSCALL_WORDS, SyscallSpec, abi, channel, class, flags,
    kind, loss, spec_flags, stats,
};

use crate::{
    conf, event, finish,
    kernel::{self, still_valid},
    maps::{
        EXITING, INFLIGHT, Inflight, KRef, SYSCALL_BITS, count_loss, count_stat, count_unobserved,
        spec,
    },
    scope::{self, in_base_scope, in_scope},
};

use tracer_common::fcntl::{MS_BIND, MS_MOVE, RESOLVE_IN_ROOT};
const AF_UNIX: u16 = 1;
/// `sizeof(((struct sockaddr_un *)0)->sun_path)`.
const SUN_PATH: u64 = 108;
const SYS_BIND: u64 = 2;
const SYS_CONNECT: u64 = 3;

/// Syscall argument `index` from the saved user registers.
#[inline(always)]
fn arg(abi: u8, regs: u64, index: i8) -> u64 {
    if !(0..6).contains(&index) {
        return 0;
    }
    let off = if abi == abi::COMPAT {
        conf!(offsets.regs_arg[1][index as usize & 7])
    } else {
        conf!(offsets.regs_arg[0][index as usize & 7])
    };
    let v = unsafe { bpf_probe_read_kernel((regs + off as u64) as *const u64) }.unwrap_or(0);
    // Compat registers hold 32-bit values (pointers, ints) in 64-bit slots.
    if abi == abi::COMPAT {
        v & 0xffff_ffff
    } else {
        v
    }
}

/// A dirfd argument as the kernel reads it: the low 32 bits, signed.
#[inline(always)]
fn dirfd_arg(abi: u8, regs: u64, index: i8) -> i32 {
    if index < 0 {
        AT_FDCWD
    } else {
        arg(abi, regs, index) as i32
    }
}

/// The first byte of a user string, if it can be read now.
#[inline(always)]
fn first_byte(ptr: u64) -> Option<u8> {
    if ptr == 0 {
        return None;
    }
    unsafe { bpf_probe_read_user(ptr as *const u8) }.ok()
}

/// Where a relative path given with `dirfd` starts: the cwd, or the
/// directory the descriptor names. `None`: the dirfd names nothing.
#[inline(always)]
fn base_of(task: u64, fs: u64, dirfd: i32) -> Option<KRef> {
    if dirfd == AT_FDCWD {
        Some(kernel::pwd_of(fs))
    } else {
        kernel::fd_path(task, dirfd as i64)
    }
}

/// `raw_syscalls:sys_enter(struct pt_regs *regs, long id)`: runs for every
/// syscall on the machine, so the scope check comes first.
#[inline(always)]
pub fn on_enter(ctx: &RawTracePointContext) {
    if !in_base_scope() {
        return;
    }
    let armed = scope::armed();
    let id: i64 = ctx.arg(1);
    let task = kernel::current_task();
    let abi = if kernel::in_compat_syscall(task) {
        abi::COMPAT
    } else {
        abi::NATIVE
    };
    let x32 = conf!(offsets.x32_bit) as i64;
    if abi == abi::NATIVE && x32 != 0 && id & x32 != 0 {
        // The x32 ABI's numbers name other syscalls: nothing can be told
        // about what they touch, only that they happened.
        let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
        count_unobserved(channel::X32, (id & 0x3ff) as u16, pid);
        return;
    }
    if !(0..SYSCALL_NR_MAX as i64).contains(&id) {
        return;
    }
    // The command starts with its first exec attempt: its PATH search is
    // its own, what came before is trace's set-up.
    if !armed && (spec(abi, id as u64).class != class::EXEC || !scope::arm_at_exec(task)) {
        return;
    }
    // The set of syscalls made, per ABI, for seccomp profiles.
    if let Some(bits) = SYSCALL_BITS.get_ptr_mut(abi as u32) {
        let word = ((id as usize) >> 6) & (SYSCALL_WORDS - 1);
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { (*bits)[word] |= 1u64 << (id & 63) };
    }
    let spec = spec(abi, id as u64);
    if spec.id == 0 {
        return;
    }
    save_entry(ctx, task, abi, id, spec);
}

#[inline(always)]
fn save_entry(ctx: &RawTracePointContext, task: u64, abi: u8, nr: i64, spec: SyscallSpec) {
    let regs: u64 = ctx.arg(0);
    let fs = kernel::fs_of(task);
    let mut i = Inflight {
        spec,
        abi,
        nr: nr as u32,
        dirfd1: dirfd_arg(abi, regs, spec.dirfd1),
        dirfd2: dirfd_arg(abi, regs, spec.dirfd2),
        path1: arg(abi, regs, spec.path1),
        path2: arg(abi, regs, spec.path2),
        flags: arg(abi, regs, spec.flags) | spec.fixed_flags,
        flags2: arg(abi, regs, spec.flags2),
        aux: arg(abi, regs, spec.aux),
        root: kernel::root_of(fs),
        ..Inflight::default()
    };
    let c = spec.class;
    if c == class::MOUNT && i.flags & (MS_BIND | MS_MOVE) == 0 {
        // A filesystem's source ("tmpfs", "overlay", a device) is not a
        // path lookup of the mount's own.
        i.spec.spec_flags |= spec_flags::PATH2_CONTENT;
    }
    if c == class::FD_ARG || (c == class::EXEC && i.dirfd1 != AT_FDCWD) {
        match kernel::fd_path(task, i.dirfd1 as i64) {
            Some(f) => i.file = f,
            None => i.bad_dirfd |= flags::BAD_DIRFD1,
        }
    }
    if c == class::SOCKADDR || c == class::SOCKETCALL {
        // A relative AF_UNIX path starts at the cwd.
        i.base1 = kernel::pwd_of(fs);
    } else if i.path1 != 0 && (first_byte(i.path1) != Some(b'/') || c == class::OPENAT2) {
        // Relative (or unreadable yet), or openat2, whose RESOLVE_IN_ROOT
        // makes even an absolute path start at the dirfd.
        match base_of(task, fs, i.dirfd1) {
            Some(b) => i.base1 = b,
            None => i.bad_dirfd |= flags::BAD_DIRFD1,
        }
    }
    if i.path2 != 0
        && i.spec.spec_flags & spec_flags::PATH2_CONTENT == 0
        && first_byte(i.path2) != Some(b'/')
    {
        match base_of(task, fs, i.dirfd2) {
            Some(b) => i.base2 = b,
            None => i.bad_dirfd |= flags::BAD_DIRFD2,
        }
    }
    if INFLIGHT.insert(bpf_get_current_pid_tgid(), i, 0).is_err() {
        count_loss(loss::INFLIGHT_FULL);
    }
}

/// Reads a user string into the record at `pos`; returns its length
/// without the NUL, and whether it was cut or unreadable.
#[inline(always)]
fn read_user_path(data: *mut u8, pos: usize, ptr: u64, max: u32) -> (usize, bool, bool) {
    let n = unsafe {
        bpf_probe_read_user_str(
            data.add(pos & (PATH_MAX - 1)) as *mut c_void,
            max,
            ptr as *const c_void,
        )
    };
    if n <= 0 {
        return (0, false, true);
    }
    let len = (n as usize - 1) & (PATH_MAX - 1);
    (len, n as u32 >= max, false)
}

/// `raw_syscalls:sys_exit(struct pt_regs *regs, long ret)`: also runs for
/// every syscall; tasks out of scope leave at the first check.
#[inline(always)]
pub fn on_exit(ctx: &RawTracePointContext) {
    if !in_scope() {
        return;
    }
    let id = bpf_get_current_pid_tgid();
    let (Some(saved), Some(x)) = (unsafe { INFLIGHT.get(id) }, EXITING.get_ptr_mut(0)) else {
        return;
    };
    // Out of the hash map before it is removed (its slot may be reused at
    // once), into this CPU's slot.
    unsafe { *x = *saved };
    let _ = INFLIGHT.remove(id);
    let x = unsafe { &mut *x };
    let regs: u64 = ctx.arg(0);
    let nr = unsafe { bpf_probe_read_kernel((regs + conf!(offsets.regs_nr) as u64) as *const u64) }
        .unwrap_or(u64::MAX);
    if nr as u32 != x.nr {
        // An entry left by a syscall whose exit was never seen (one that
        // began before tracing did): not this syscall's.
        return;
    }
    let ret: i64 = ctx.arg(1);
    let c = x.spec.class;
    if c == class::EXEC && ret == 0 {
        // Reported by `sched_process_exec`, which sees the new image.
        return;
    }
    count_stat(stats::SEEN);
    let task = kernel::current_task();
    let fs = kernel::fs_of(task);
    scope::maybe_root_from_target(task, fs);

    let mut arg_flags = x.flags;
    let mut arg_flags2 = x.flags2;
    if c == class::OPENAT2 {
        // struct open_how { u64 flags, mode, resolve; }
        arg_flags = unsafe { bpf_probe_read_user(x.aux as *const u64) }.unwrap_or(0);
        arg_flags2 = unsafe { bpf_probe_read_user((x.aux + 16) as *const u64) }.unwrap_or(0);
    }
    let mut path1 = x.path1;
    if c == class::SOCKETCALL {
        // socketcall(call, args): only bind and connect name a path.
        if arg_flags != SYS_BIND && arg_flags != SYS_CONNECT {
            return;
        }
        // args[1] is the sockaddr, args[2] its length (32-bit words).
        path1 = unsafe { bpf_probe_read_user((x.aux + 4) as *const u32) }.unwrap_or(0) as u64;
        x.aux = unsafe { bpf_probe_read_user((x.aux + 8) as *const u32) }.unwrap_or(0) as u64;
    }
    let Some(buf) = event::start(&event::Head {
        kind: kind::SYSCALL,
        abi: x.abi,
        syscall: x.spec.id,
        dirfd1: x.dirfd1,
        dirfd2: x.dirfd2,
        ret,
        arg_flags,
        arg_flags2,
        cookie: 0,
    }) else {
        return;
    };
    let Some(p) = finish::pending() else {
        return;
    };
    let p = unsafe { &mut *p };
    let h = unsafe { &mut (*buf).header };
    let data = unsafe { (*buf).data.as_mut_ptr() };
    let mut fl = x.bad_dirfd;
    let (stop, root_sb) = scope::walk_stop(&x.root);
    p.stop_dentry = stop;
    p.root_sb = root_sb;

    // RAW1: the first path, or the AF_UNIX socket path.
    let mut raw1: usize = 0;
    let mut abs1 = false;
    if c == class::SOCKADDR || c == class::SOCKETCALL {
        let family = unsafe { bpf_probe_read_user(path1 as *const u16) }.unwrap_or(0);
        let first = unsafe { bpf_probe_read_user((path1 + 2) as *const u8) }.unwrap_or(0);
        let len = x.aux.saturating_sub(2);
        if family != AF_UNIX || len == 0 || first == 0 {
            // Not a filesystem socket (abstract, unnamed, INET...).
            return;
        }
        let max = if len > SUN_PATH { SUN_PATH } else { len };
        let (n, _, bad) = read_user_path(data, 0, path1 + 2, (max + 1) as u32);
        if bad {
            fl |= flags::RAW1_UNREADABLE;
        }
        raw1 = n;
        abs1 = first == b'/';
    } else if path1 != 0 {
        let (n, cut, bad) = read_user_path(data, 0, path1, PATH_MAX as u32);
        if cut {
            fl |= flags::RAW1_TRUNCATED;
        }
        if bad {
            fl |= flags::RAW1_UNREADABLE;
        }
        raw1 = n;
        abs1 = n > 0 && unsafe { *data } == b'/';
    }
    h.sections[0].len = raw1 as u16;

    // OBS: the file the result or the descriptor argument names.
    if (c == class::FD_RESULT || c == class::OPENAT2) && ret >= 0 {
        match kernel::fd_path(task, ret) {
            Some(f) => p.obs = f,
            None => fl |= flags::OBS_GONE,
        }
    } else if c == class::FD_ARG && x.file.dentry != 0 {
        if still_valid(&x.file) {
            p.obs = x.file;
        } else {
            fl |= flags::OBS_GONE;
        }
    } else if c == class::FD_ARG {
        // fchdir or getdents on a bad descriptor: nothing to record.
        return;
    }

    // BASE1: where RAW1 starts, unless the scope's root.
    if raw1 > 0 && fl & flags::BAD_DIRFD1 == 0 {
        let in_root = c == class::OPENAT2 && arg_flags2 & RESOLVE_IN_ROOT != 0;
        let base = if abs1 && !in_root { x.root } else { x.base1 };
        if base.dentry != stop {
            if p.obs.dentry != 0
                && base.mnt == p.obs.mnt
                && kernel::dentry_parent(p.obs.dentry) == base.dentry
            {
                // The file opened lies in that very directory: its name
                // without the last component is the base's.
                fl |= flags::HAS_BASE1 | flags::BASE1_IS_OBS_PARENT;
            } else if still_valid(&base) {
                fl |= flags::HAS_BASE1;
                p.base1 = base;
            } else {
                fl |= flags::HAS_BASE1;
                h.sections[2].end = tracer_common::walk_end::STALE;
            }
        }
    }

    // RAW2 and BASE2: the second path (link, rename, mount, symlink).
    let mut pos = raw1;
    if x.path2 != 0 {
        let content = x.spec.spec_flags & spec_flags::PATH2_CONTENT != 0;
        let (n, cut, bad) = read_user_path(data, pos, x.path2, PATH_MAX as u32);
        if cut {
            fl |= flags::RAW2_TRUNCATED;
        }
        if bad {
            fl |= flags::RAW2_UNREADABLE;
        }
        if content {
            fl |= flags::RAW2_CONTENT;
        }
        let abs2 = n > 0 && unsafe { *data.add(pos & (PATH_MAX * 2 - 1)) } == b'/';
        h.sections[1].len = n as u16;
        pos += n;
        if n > 0 && !content && fl & flags::BAD_DIRFD2 == 0 {
            let base = if abs2 { x.root } else { x.base2 };
            if base.dentry != stop {
                fl |= flags::HAS_BASE2;
                if still_valid(&base) {
                    p.base2 = base;
                } else {
                    h.sections[4].end = tracer_common::walk_end::STALE;
                }
            }
        }
    }
    if raw1 == 0 && h.sections[1].len == 0 && p.obs.dentry == 0 && fl & flags::OBS_GONE == 0 {
        // fstat-style calls on a descriptor (an empty path with
        // AT_EMPTY_PATH, utimensat(fd, NULL)): no lookup happened.
        if fl & (flags::RAW1_UNREADABLE | flags::RAW2_UNREADABLE) == 0 {
            return;
        }
    }
    h.flags = fl;
    p.pos = pos as u64;
    finish::tail_call(ctx);
}
