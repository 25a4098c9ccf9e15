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
    conf, copy, event, finish,
    kernel::{self, Typed, still_valid},
    maps::{
        DentryLook, ENTRY, EXITING, ExitWork, FastSeen, INFLIGHT, INFLIGHT_SLOTS, Inflight, KRef,
        PENDING, SYSCALL_BITS, bump_generation, count_loss, count_stat, count_unobserved, epoch,
        fast_hit, generation, inflight_slot, salted, scratch, spec,
    },
    scope::{self, in_base_scope_hot},
};

use tracer_common::fcntl::{AT_EXECVE_CHECK, RESOLVE_IN_ROOT, mount_kind};
const AF_UNIX: u16 = 1;
/// `sizeof(((struct sockaddr_un *)0)->sun_path)`.
const SUN_PATH: u64 = 108;
const SYS_BIND: u64 = 2;
const SYS_CONNECT: u64 = 3;
const SYS_SENDTO: u64 = 11;
const SYS_SENDMSG: u64 = 16;
const SYS_SENDMMSG: u64 = 20;
/// `sizeof(struct mmsghdr)`: 64-bit, and compat.
const MMSGHDR: u64 = 64;
const COMPAT_MMSGHDR: u64 = 32;
/// The most later sendmmsg messages looked at (`UIO_MAXIOV`, the
/// kernel's own limit on `vlen`).
const MMSG_MAX: u32 = 1024;

/// Syscall argument `index` from the user registers copied at entry (the
/// first 16 words of `struct pt_regs`, which hold every argument on the
/// architectures `trace` supports; the loader checks).
#[inline(always)]
fn arg(abi: u8, regs: &[u64; 16], index: i8) -> u64 {
    match arg_offset(abi, index) {
        Some(off) => narrow(abi, regs[(off as usize / 8) & 15]),
        None => 0,
    }
}

/// Where argument `index` (0..6) lies in `struct pt_regs` for `abi`.
#[inline(always)]
fn arg_offset(abi: u8, index: i8) -> Option<u32> {
    if !(0..6).contains(&index) {
        return None;
    }
    Some(if abi == abi::COMPAT {
        conf!(offsets.regs_arg[1][index as usize & 7])
    } else {
        conf!(offsets.regs_arg[0][index as usize & 7])
    })
}

/// Compat registers hold 32-bit values (pointers, ints) in 64-bit slots.
#[inline(always)]
fn narrow(abi: u8, v: u64) -> u64 {
    if abi == abi::COMPAT {
        v & 0xffff_ffff
    } else {
        v
    }
}

/// A dirfd argument as the kernel reads it: the low 32 bits, signed.
#[inline(always)]
fn dirfd_arg(abi: u8, regs: &[u64; 16], index: i8) -> i32 {
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
fn base_of(files: Typed, fs: Typed, dirfd: i32) -> Option<KRef> {
    if dirfd == AT_FDCWD {
        Some(kernel::pwd_of(fs))
    } else {
        kernel::fd_path_in(files, dirfd as i64)
    }
}

/// `raw_syscalls:sys_enter(struct pt_regs *regs, long id)`: runs for every
/// syscall on the machine, so the scope check comes first.
#[inline(always)]
pub fn on_enter(ctx: &RawTracePointContext) {
    let id: i64 = ctx.arg(1);
    // Anyone's rename or mount may change what a remembered name leads
    // to. (Both ABIs' numbers are checked rather than telling them apart:
    // a needless bump only costs a few repeats sent again.)
    if (0..SYSCALL_NR_MAX as i64).contains(&id)
        && (spec(abi::NATIVE, id as u64).spec_flags | spec(abi::COMPAT, id as u64).spec_flags)
            & spec_flags::NS_CHANGE
            != 0
    {
        bump_generation();
    }
    if !in_base_scope_hot() {
        return;
    }
    // Container mode leaves the runtime out entirely; `trace run` only its
    // own few set-up syscalls before the command's first exec, which need
    // not be looked up for every syscall.
    let foreign = conf!(arm) == tracer_common::arm::ON_FOREIGN_EXEC;
    let armed = !foreign || scope::armed();
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
    let spec = spec(abi, id as u64);
    if !armed && (spec.class != class::EXEC || !scope::arm_at_exec(task)) {
        return;
    }
    // The set of syscalls made, per ABI, for seccomp profiles.
    if let Some(bits) = SYSCALL_BITS.get_ptr_mut(abi as u32) {
        let word = ((id as usize) >> 6) & (SYSCALL_WORDS - 1);
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { (*bits)[word] |= 1u64 << (id & 63) };
    }
    if spec.id == 0 {
        return;
    }
    if !foreign && !scope::armed() && (spec.class != class::EXEC || !scope::arm_at_exec(task)) {
        return;
    }
    if (spec.class == class::SOCKADDR || spec.class == class::MSGHDR)
        && sends_nothing(ctx, abi, &spec)
    {
        return;
    }
    save_entry(ctx, task, abi, id, spec);
}

/// The arguments of the syscall being entered, into its `INFLIGHT` slot.
/// Inline: as a `bpf_loop` callback (verified once) it cost a helper call
/// and an indirect call on every file syscall, and saved the verifier
/// nothing here.
#[inline(always)]
fn entry_args() {
    let Some(w) = ENTRY.get_ptr_mut(0) else {
        return;
    };
    let w = unsafe { &mut *w };
    let Some(i) = INFLIGHT.get_ptr_mut(w.slot) else {
        return;
    };
    let i = unsafe { &mut *i };
    let regs = &w.regs;
    let abi = i.abi;
    let s = i.spec;
    i.dirfd1 = dirfd_arg(abi, regs, s.dirfd1);
    i.dirfd2 = dirfd_arg(abi, regs, s.dirfd2);
    i.path1 = arg(abi, regs, s.path1);
    i.path2 = arg(abi, regs, s.path2);
    i.flags = arg(abi, regs, s.flags) | s.fixed_flags;
    i.flags2 = arg(abi, regs, s.flags2);
    i.aux = arg(abi, regs, s.aux);
}

/// The directories (and the descriptor's file) the syscall in `ENTRY`
/// starts from, read now, at entry: the FD_ARG/execveat file, the base of
/// path1, the base of path2.
///
/// `fs` and `files` are passed, not kept in `ENTRY`: out of map memory
/// they would be plain numbers, not typed pointers.
#[inline(always)]
fn entry_bases(fs: Typed, files: Typed) {
    let Some(w) = ENTRY.get_ptr_mut(0) else {
        return;
    };
    let w = unsafe { &mut *w };
    let Some(i) = INFLIGHT.get_ptr_mut(w.slot) else {
        return;
    };
    let i = unsafe { &mut *i };
    let c = i.spec.class;
    // A two-path call whose first path is empty names its source by
    // descriptor (linkat AT_EMPTY_PATH, move_mount F_EMPTY_PATH): that
    // file is observed.
    let by_fd = c == class::PLAIN
        && i.path2 != 0
        && i.dirfd1 != AT_FDCWD
        && i.path1 != 0
        && first_byte(i.path1) == Some(0);
    if c == class::FD_ARG || (c == class::EXEC && i.dirfd1 != AT_FDCWD) || by_fd {
        match kernel::fd_path_in(files, i.dirfd1 as i64) {
            Some(f) => i.file = f,
            None => i.bad_dirfd |= flags::BAD_DIRFD1,
        }
    }
    if c == class::SOCKADDR || c == class::SOCKETCALL || c == class::MSGHDR {
        // A relative AF_UNIX path starts at the cwd.
        i.base1 = kernel::pwd_of(fs);
    } else if i.path1 != 0
        && (i.dirfd1 == AT_FDCWD || first_byte(i.path1) != Some(b'/') || c == class::OPENAT2)
    {
        // Relative (or unreadable yet), or openat2, whose RESOLVE_IN_ROOT
        // makes even an absolute path start at the dirfd. The cwd costs
        // three plain loads, less than reading the path's first byte to
        // see whether it is needed; a descriptor's file costs more.
        match base_of(files, fs, i.dirfd1) {
            Some(b) => i.base1 = b,
            None => i.bad_dirfd |= flags::BAD_DIRFD1,
        }
    }
    if i.path2 != 0
        && i.spec.spec_flags & spec_flags::PATH2_CONTENT == 0
        && (i.dirfd2 == AT_FDCWD || first_byte(i.path2) != Some(b'/'))
    {
        match base_of(files, fs, i.dirfd2) {
            Some(b) => i.base2 = b,
            None => i.bad_dirfd |= flags::BAD_DIRFD2,
        }
    }
}

#[inline(always)]
fn save_entry(ctx: &RawTracePointContext, task: Typed, abi: u8, nr: i64, spec: SyscallSpec) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let (Some(w), Some(i)) = (ENTRY.get_ptr_mut(0), inflight_slot(tid)) else {
        count_loss(loss::NO_SCRATCH);
        return;
    };
    let (fs, files) = (kernel::fs_of(task), kernel::files_of(task));
    // The entry is written in place, field by field: a whole-struct copy
    // or zeroing compiles to a byte loop in BPF, which cost more than the
    // rest of the entry.
    unsafe {
        let held = (*i).tid;
        let epoch = epoch();
        if held != 0 && held != tid && (*i).epoch == epoch {
            // Another thread's syscall, 16384 ids away, is in flight in
            // this slot: this one is not followed, and says so.
            count_loss(loss::INFLIGHT_FULL);
            return;
        }
        (*i).tid = 0;
        (*i).spec = spec;
        (*i).abi = abi;
        (*i).nr = nr as u32;
        core::ptr::write_volatile(&raw mut (*i).bad_dirfd, 0);
        (*i).root = kernel::root_of(fs);
        (*i).fs_seq = kernel::fs_seq_of(fs);
        copy::zero(&raw mut (*i).base1);
        copy::zero(&raw mut (*i).base2);
        copy::zero(&raw mut (*i).file);
        (*w).slot = tid & (INFLIGHT_SLOTS - 1);
        let regs: u64 = ctx.arg(0);
        // One read of the registers rather than one per argument. Should
        // it fail, the arguments would be the last syscall's: not followed.
        if aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            (*w).regs.as_mut_ptr() as *mut c_void,
            128,
            regs as *const c_void,
        ) != 0
        {
            count_loss(loss::NO_SCRATCH);
            return;
        }
        entry_args();
        if spec.class == class::MOUNT {
            let (source_is_path, new_fs) = mount_kind((*i).flags);
            if !source_is_path {
                // A filesystem's source ("tmpfs", "overlay", a device) is
                // not a path lookup of the mount's own; its type says more
                // (an overlay looks up the directories its options name).
                // A remount or a propagation change has neither.
                (*i).spec.spec_flags |= spec_flags::PATH2_CONTENT;
                (*i).path2 = if new_fs { (*i).aux } else { 0 };
            }
        }
        entry_bases(fs, files);
        // Valid from here on.
        (*i).epoch = epoch;
        (*i).tid = tid;
    }
}

/// Whether a send (or a connect) names no address: sendto's `addr`
/// NULL, one message whose `msg_name` reads NULL now, a sendmmsg of none.
/// Most sends are on connected sockets, so this is checked before the
/// entry is saved, from the one or two registers it needs. Anything else
/// is decoded at exit.
#[inline(always)]
fn sends_nothing(ctx: &RawTracePointContext, abi: u8, spec: &SyscallSpec) -> bool {
    let Some(ptr) = arg_now(ctx, abi, spec.path1) else {
        return false;
    };
    if ptr == 0 {
        return true;
    }
    if spec.class != class::MSGHDR {
        return false;
    }
    let Some(aux) = arg_now(ctx, abi, spec.aux) else {
        return false;
    };
    let vlen = message_count(spec, aux);
    vlen == 0 || vlen == 1 && matches!(msg_name(abi == abi::COMPAT, ptr), Some((0, _)))
}

/// Syscall argument `index`, one register read from the tracepoint's
/// `pt_regs` (the entry copies all sixteen words at once instead).
#[inline(always)]
fn arg_now(ctx: &RawTracePointContext, abi: u8, index: i8) -> Option<u64> {
    let Some(off) = arg_offset(abi, index) else {
        return Some(0);
    };
    let regs: u64 = ctx.arg(0);
    let v = unsafe { bpf_probe_read_kernel((regs + off as u64) as *const u64) }.ok()?;
    Some(narrow(abi, v))
}

/// How many messages a sendmsg or sendmmsg sends: one, or sendmmsg's
/// `vlen` (argument `aux`, an unsigned int), given that argument's value.
#[inline(always)]
fn message_count(spec: &SyscallSpec, aux: u64) -> u64 {
    if spec.aux < 0 { 1 } else { aux & 0xffff_ffff }
}

/// A `struct msghdr`'s `msg_name` and `msg_namelen` (`struct
/// compat_msghdr`'s for a compat task: 32-bit pointer and length).
#[inline(always)]
fn msg_name(compat: bool, hdr: u64) -> Option<(u64, u64)> {
    if compat {
        let w = unsafe { bpf_probe_read_user(hdr as *const u64) }.ok()?;
        Some((w & 0xffff_ffff, w >> 32))
    } else {
        let w = unsafe { bpf_probe_read_user(hdr as *const [u64; 2]) }.ok()?;
        Some((w[0], w[1] & 0xffff_ffff))
    }
}

/// Whether `addr` (`len` bytes) is an `AF_UNIX` filesystem path.
#[inline(always)]
fn unix_path(addr: u64, len: u64) -> bool {
    let family = unsafe { bpf_probe_read_user(addr as *const u16) }.unwrap_or(0);
    let first = unsafe { bpf_probe_read_user((addr + 2) as *const u8) }.unwrap_or(0);
    family == AF_UNIX && len > 2 && first != 0
}

/// A scan of a sendmmsg's messages after the first (on the stack, the
/// loop's context).
#[repr(C)]
struct MsgScan {
    vec: u64,
    stride: u64,
    compat: u64,
    /// The first message's `msg_name`: the same buffer again is the same
    /// path, recorded once.
    first: u64,
    found: u64,
}

#[inline(never)]
extern "C" fn msg_scan_step(index: u64, ctx: *mut c_void) -> i64 {
    let s = unsafe { &mut *(ctx as *mut MsgScan) };
    let hdr = s.vec + (index + 1) * s.stride;
    let Some((name, len)) = msg_name(s.compat != 0, hdr) else {
        return 0;
    };
    if name != 0 && name != s.first && unix_path(name, len) {
        s.found = 1;
        return 1;
    }
    0
}

/// Counts a sendmmsg whose later messages name `AF_UNIX` paths of their
/// own: only the first message's is recorded.
#[inline(always)]
fn scan_later_messages(compat: bool, vec: u64, vlen: u64, first: u64) {
    if vlen <= 1 {
        return;
    }
    let mut s = MsgScan {
        vec,
        stride: if compat { COMPAT_MMSGHDR } else { MMSGHDR },
        compat: compat as u64,
        first,
        found: 0,
    };
    let n = if vlen - 1 > MMSG_MAX as u64 {
        MMSG_MAX
    } else {
        (vlen - 1) as u32
    };
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            n,
            msg_scan_step as *mut c_void,
            &raw mut s as *mut c_void,
            0,
        );
    }
    if s.found != 0 {
        let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
        count_unobserved(channel::SENDMMSG, 0, pid);
    }
}

/// Whether the first path, absolute and given with `AT_FDCWD`, goes on past
/// `/proc/self/cwd/` or `/proc/thread-self/cwd/` (`data` holds its `n`
/// bytes). The kernel follows that link to the working directory, which
/// the entry saved as `base1`: the path is named from there, not from the
/// root (`BASE1_IS_CWD`).
#[inline(always)]
fn via_cwd(data: *const u8, n: usize, x: &Inflight) -> bool {
    const SELF: usize = 15; // "/proc/self/cwd/"
    const THREAD: usize = 22; // "/proc/thread-self/cwd/"
    if x.dirfd1 != AT_FDCWD || n <= SELF {
        return false;
    }
    let word = |at: usize| unsafe { core::ptr::read_unaligned(data.add(at) as *const u64) };
    let w0 = word(0);
    if w0 == u64::from_le_bytes(*b"/proc/se") {
        return word(8) & 0x00ff_ffff_ffff_ffff == u64::from_le_bytes(*b"lf/cwd/\0");
    }
    n > THREAD
        && w0 == u64::from_le_bytes(*b"/proc/th")
        && word(8) == u64::from_le_bytes(*b"read-sel")
        && word(16) & 0xffff_ffff_ffff == u64::from_le_bytes(*b"f/cwd/\0\0")
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

/// One step of building an exit's record from `EXITING` into the scratch
/// record and `PENDING`: 0 the first path (or the AF_UNIX socket path), 1
/// the observed file, 2 the first path's base, 3 the second path and its
/// base. Returns 1 to stop when the syscall turns out to name nothing.
/// Called inline, step by step: as a `bpf_loop` callback it was verified
/// once, but cost a helper call and four indirect calls per record, for
/// about 10% more verifier work saved.
#[inline(always)]
fn exit_step(index: u64, task: Typed, files: Typed) -> i64 {
    let (Some(w), Some(p), Some(buf)) = (EXITING.get_ptr_mut(0), PENDING.get_ptr_mut(0), scratch())
    else {
        return 1;
    };
    let (w, p) = unsafe { (&mut *w, &mut *p) };
    let Some(x) = INFLIGHT.get_ptr(w.slot) else {
        return 1;
    };
    let x = unsafe { &*x };
    let h = unsafe { &mut (*buf).header };
    let data = unsafe { (*buf).data.as_mut_ptr() };
    let c = x.spec.class;
    match index {
        0 => {
            if c == class::SOCKADDR || c == class::SOCKETCALL || c == class::MSGHDR {
                let path1 = w.path1;
                let family = unsafe { bpf_probe_read_user(path1 as *const u16) }.unwrap_or(0);
                let first = unsafe { bpf_probe_read_user((path1 + 2) as *const u8) }.unwrap_or(0);
                let len = w.sock_len.saturating_sub(2);
                if family != AF_UNIX || len == 0 || first == 0 {
                    // Not a filesystem socket (abstract, unnamed, INET...).
                    w.skip = 1;
                    return 1;
                }
                let max = if len > SUN_PATH { SUN_PATH } else { len };
                let (n, _, bad) = read_user_path(data, 0, path1 + 2, (max + 1) as u32);
                if bad {
                    w.fl |= flags::RAW1_UNREADABLE;
                }
                w.raw1 = n as u64;
                w.abs1 = (first == b'/') as u64;
            } else if w.read1 != 0 {
                // Read once already, for the FAST key: the same bytes.
                let n = (w.read1 - 1) as usize & (PATH_MAX - 1);
                w.raw1 = n as u64;
                w.abs1 = (n > 0 && unsafe { *data } == b'/') as u64;
            } else if w.path1 != 0 {
                let (n, cut, bad) = read_user_path(data, 0, w.path1, PATH_MAX as u32);
                if cut {
                    w.fl |= flags::RAW1_TRUNCATED;
                }
                if bad {
                    w.fl |= flags::RAW1_UNREADABLE;
                }
                w.raw1 = n as u64;
                w.abs1 = (n > 0 && unsafe { *data } == b'/') as u64;
            }
            h.sections[0].len = w.raw1 as u16;
        }
        1 => {
            // The file the result or the descriptor argument names.
            if (c == class::FD_RESULT || c == class::OPENAT2) && w.ret >= 0 {
                if w.obs.dentry != 0 {
                    copy::copy(&raw mut p.obs, &raw const w.obs);
                } else {
                    match kernel::fd_path_in(files, w.ret) {
                        Some(f) => p.obs = f,
                        None => w.fl |= flags::OBS_GONE,
                    }
                }
            } else if x.spec.spec_flags & (spec_flags::RESULT_PWD | spec_flags::RESULT_ROOT) != 0 {
                // chdir, chroot: the directory the kernel reached (unless
                // another thread changed it too: then it may be theirs).
                if w.ret == 0 {
                    if moved(w) & MOVED_FS != 0 {
                        w.fl |= flags::OBS_GONE;
                    } else {
                        let fs = kernel::fs_of(task);
                        p.obs = if x.spec.spec_flags & spec_flags::RESULT_ROOT != 0 {
                            kernel::root_of(fs)
                        } else {
                            kernel::pwd_of(fs)
                        };
                    }
                }
            } else if (c == class::FD_ARG || c == class::PLAIN || (c == class::EXEC && w.raw1 == 0))
                && x.file.dentry != 0
            {
                // The descriptor's file (an execveat of the descriptor
                // itself, AT_EMPTY_PATH, that failed or only checked).
                if still_valid(&x.file) && moved(w) & MOVED_DIRFD1 == 0 {
                    copy::copy(&raw mut p.obs, &raw const x.file);
                } else {
                    w.fl |= flags::OBS_GONE;
                }
            } else if c == class::FD_ARG {
                // fchdir or getdents on a bad descriptor: nothing to record.
                w.skip = 1;
                return 1;
            }
        }
        2 => {
            // Where the first path starts, unless the scope's root.
            if w.raw1 == 0 || w.fl & flags::BAD_DIRFD1 != 0 {
                return 0;
            }
            let in_root = c == class::OPENAT2 && w.arg_flags2 & RESOLVE_IN_ROOT != 0;
            let cwd = w.abs1 != 0 && !in_root && via_cwd(data, w.raw1 as usize, x);
            if cwd {
                w.fl |= flags::BASE1_IS_CWD;
            }
            let from_root = w.abs1 != 0 && !in_root && !cwd;
            let stale = moved_base(moved(w), MOVED_DIRFD1, from_root, x.dirfd1);
            let base = start_of(stale, from_root, x.root, x.base1);
            let from_root = from_root && !stale;
            if base.dentry == p.stop_dentry {
                return 0;
            }
            w.fl |= flags::HAS_BASE1;
            if p.obs.dentry != 0
                && base.mnt == p.obs.mnt
                && kernel::dentry_parent(p.obs.dentry) == base.dentry
            {
                // The file opened lies in that very directory: its name
                // without the last component is the base's.
                w.fl |= flags::BASE1_IS_OBS_PARENT;
            } else if from_root || still_valid(&base) {
                copy::copy(&raw mut p.base1, &raw const base);
            } else {
                h.sections[2].end = tracer_common::walk_end::STALE;
            }
        }
        _ => {
            // The second path (link, rename, mount, symlink) and its base.
            if x.path2 == 0 {
                return 0;
            }
            let pos = w.raw1 as usize;
            let content = x.spec.spec_flags & spec_flags::PATH2_CONTENT != 0;
            let (n, cut, bad) = read_user_path(data, pos, x.path2, PATH_MAX as u32);
            if cut {
                w.fl |= flags::RAW2_TRUNCATED;
            }
            if bad {
                w.fl |= flags::RAW2_UNREADABLE;
            }
            if content {
                w.fl |= flags::RAW2_CONTENT;
            }
            let abs2 = n > 0 && unsafe { *data.add(pos & (PATH_MAX - 1)) } == b'/';
            h.sections[1].len = n as u16;
            w.raw2 = n as u64;
            if n > 0 && !content && w.fl & flags::BAD_DIRFD2 == 0 {
                let stale = moved_base(moved(w), MOVED_DIRFD2, abs2, x.dirfd2);
                let base = start_of(stale, abs2, x.root, x.base2);
                if base.dentry != p.stop_dentry {
                    w.fl |= flags::HAS_BASE2;
                    if (abs2 && !stale) || still_valid(&base) {
                        copy::copy(&raw mut p.base2, &raw const base);
                    } else {
                        h.sections[4].end = tracer_common::walk_end::STALE;
                    }
                }
            }
        }
    }
    0
}

/// `ExitWork::moved`: another thread sharing the cwd and root (CLONE_FS)
/// changed one of them, or put another file under a descriptor argument
/// (dup2), since the syscall's entry; the kernel may have started from
/// either.
const MOVED_FS: u32 = 1;
const MOVED_DIRFD1: u32 = 2;
const MOVED_DIRFD2: u32 = 4;

// A subprogram of its own: inlined, its branches cost the verifier about
// a third more work on the rest of sys_exit.
#[inline(never)]
fn moved_since_entry(task: Typed, files: Typed, x: &Inflight, ret: i64) -> u32 {
    let mut m = 0;
    let sf = x.spec.spec_flags;
    // chdir and chroot move the count one step (2) when they succeed.
    let own = if sf & (spec_flags::RESULT_PWD | spec_flags::RESULT_ROOT) != 0 && ret == 0 {
        2
    } else {
        0
    };
    if sf & spec_flags::FS_CHANGE == 0
        && kernel::fs_seq_known()
        && kernel::fs_seq_of(kernel::fs_of(task)).wrapping_sub(x.fs_seq) != own
    {
        m |= MOVED_FS;
    }
    let saved1 = if x.base1.dentry != 0 {
        &x.base1
    } else {
        &x.file
    };
    if kernel::dirfd_moved(files, x.dirfd1, saved1) {
        m |= MOVED_DIRFD1;
    }
    if kernel::dirfd_moved(files, x.dirfd2, &x.base2) {
        m |= MOVED_DIRFD2;
    }
    m
}

/// `ExitWork::moved`, read back from memory (see where it is set).
#[inline(always)]
fn moved(w: &ExitWork) -> u32 {
    unsafe { core::ptr::read_volatile(&raw const w.moved) }
}

/// Whether a path's base was moved under it: the root or cwd for an
/// absolute path or `AT_FDCWD`, else its descriptor (`dirfd_bit`).
#[inline(always)]
fn moved_base(moved: u32, dirfd_bit: u32, absolute: bool, dirfd: i32) -> bool {
    if absolute || dirfd == AT_FDCWD {
        moved & MOVED_FS != 0
    } else {
        moved & dirfd_bit != 0
    }
}

/// Where a path's lookup started: the root for an absolute one, else its
/// base; none when that was moved under the syscall (`moved_base`), which
/// then ends as a stale base.
#[inline(always)]
fn start_of(stale: bool, absolute: bool, root: KRef, base: KRef) -> KRef {
    if stale {
        KRef::default()
    } else if absolute {
        root
    } else {
        base
    }
}

/// Whether a repeat of this syscall can be recognized before its record
/// is built (`FAST`): one path at most, no socket address.
#[inline(always)]
fn fast_eligible(x: &Inflight) -> bool {
    let c = x.spec.class;
    (c == class::PLAIN || c == class::FD_RESULT || c == class::OPENAT2 || c == class::FD_ARG)
        && x.path2 == 0
}

/// Reads the first path into the scratch record and works out the
/// `FAST` key of this exit and what its dentries look like: the header's
/// fields, the path as passed, and the dentries its walks start from
/// (the file the result names, the directory the path starts from, where
/// walks stop). Together with an unchanged generation and dentries that
/// look the same, they determine every byte of the record. `None` when
/// the exit cannot be looked up this way.
#[inline(always)]
fn fast_key(
    w: &ExitWork,
    x: &Inflight,
    files: Typed,
    stop: u64,
    arg_flags: u64,
    arg_flags2: u64,
) -> Option<([u64; 2], FastSeen, usize, KRef)> {
    let c = x.spec.class;
    let buf = scratch()?;
    let data = unsafe { (*buf).data.as_mut_ptr() };
    let mut n = 0usize;
    if x.path1 != 0 {
        let (len, cut, bad) = read_user_path(data, 0, x.path1, PATH_MAX as u32);
        if cut || bad {
            return None;
        }
        n = len;
    }
    let (obs, obs_look) = if (c == class::FD_RESULT || c == class::OPENAT2) && w.ret >= 0 {
        kernel::fd_path_looked(files, w.ret)?
    } else if c == class::FD_ARG {
        (x.file, kernel::look(x.file.dentry))
    } else {
        (KRef::default(), DentryLook::default())
    };
    let absolute = n > 0 && unsafe { *data } == b'/';
    let in_root = c == class::OPENAT2 && arg_flags2 & RESOLVE_IN_ROOT != 0;
    // As the record's base is chosen (exit step 2), so the key's.
    let from_root = absolute && !in_root && !via_cwd(data, n, x);
    let base = if n == 0 {
        KRef::default()
    } else if from_root {
        x.root
    } else {
        x.base1
    };
    // Names above the scope's root are never walked: its own look does
    // not matter.
    let seen = FastSeen {
        generation: generation(),
        obs: obs_look,
        base: if base.dentry == stop {
            DentryLook::default()
        } else {
            kernel::look(base.dentry)
        },
    };
    // The base must still be the directory saved at entry.
    if !from_root && base.dentry != 0 && base.dentry != stop && seen.base.inode != base.inode {
        return None;
    }
    let ret = if w.ret < 0 { w.ret as u64 } else { 0 };
    let words = [
        (x.spec.id as u64) | (x.abi as u64) << 16 | (x.bad_dirfd as u64) << 32,
        ret,
        arg_flags,
        arg_flags2,
        obs.dentry,
        obs.mnt,
        base.dentry,
        base.mnt,
        stop,
        n as u64,
    ];
    let key = finish::hash_with(&words, n)?;
    Some((key, seen, n, obs))
}

/// `raw_syscalls:sys_exit(struct pt_regs *regs, long ret)`: also runs for
/// every syscall; tasks out of scope leave at the first check.
#[inline(always)]
pub fn on_exit(ctx: &RawTracePointContext) {
    // An entry is saved only for a task that was armed: its presence says
    // enough.
    if !in_base_scope_hot() {
        return;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let (Some(x), Some(w)) = (inflight_slot(tid), EXITING.get_ptr_mut(0)) else {
        return;
    };
    // sys_exit does not run twice at once on one CPU: the work slot is
    // ours; the entry's slot is this thread's while its tid is in it.
    let (w, x) = unsafe { (&mut *w, &mut *x) };
    if x.tid != tid || x.epoch != epoch() {
        return;
    }
    w.slot = tid & (INFLIGHT_SLOTS - 1);
    let send = build_exit(ctx, w, x);
    // Freed once read: another thread's entry may take the slot now.
    x.tid = 0;
    if send {
        finish::tail_call(ctx);
    }
}

/// Builds the record of the exit of the syscall saved in `x` into the
/// scratch record; true when there is one to send.
#[inline(always)]
fn build_exit(ctx: &RawTracePointContext, w: &mut ExitWork, x: &Inflight) -> bool {
    let task = kernel::current_task();
    if kernel::syscall_nr(task) != x.nr {
        // An entry left by a syscall whose exit was never seen (one that
        // began before tracing did): not this syscall's.
        return false;
    }
    let ret: i64 = ctx.arg(1);
    let c = x.spec.class;
    if c == class::EXEC && ret == 0 && x.flags & AT_EXECVE_CHECK == 0 {
        // Reported by `sched_process_exec`, which sees the new image. A
        // check (AT_EXECVE_CHECK) runs nothing: its exit reports it.
        return false;
    }
    count_stat(stats::SEEN);
    scope::maybe_root_from_target(task);
    // The table the new descriptor is in (a thread's table does not change
    // during any syscall the table lists).
    let files = kernel::files_of(task);

    let mut arg_flags = x.flags;
    let mut arg_flags2 = x.flags2;
    if c == class::OPENAT2 {
        // struct open_how { u64 flags, mode, resolve; }
        arg_flags = unsafe { bpf_probe_read_user(x.aux as *const u64) }.unwrap_or(0);
        arg_flags2 = unsafe { bpf_probe_read_user((x.aux + 16) as *const u64) }.unwrap_or(0);
    }
    let (mut path1, mut sock_len) = (x.path1, x.aux);
    // A struct msghdr (or the first struct mmsghdr) and the message count.
    let mut msgs = (0u64, 0u64);
    if c == class::SOCKETCALL {
        // socketcall(call, args), args 32-bit words: bind, connect and
        // the sends name a path.
        let word = |n: u64| {
            unsafe { bpf_probe_read_user((x.aux + 4 * n) as *const u32) }.unwrap_or(0) as u64
        };
        match arg_flags {
            SYS_BIND | SYS_CONNECT => (path1, sock_len) = (word(1), word(2)),
            SYS_SENDTO => (path1, sock_len) = (word(4), word(5)),
            SYS_SENDMSG => msgs = (word(1), 1),
            SYS_SENDMMSG => msgs = (word(1), word(2)),
            _ => return false,
        }
    } else if c == class::MSGHDR {
        msgs = (x.path1, message_count(&x.spec, x.aux));
    }
    if msgs.0 != 0 && msgs.1 != 0 {
        let compat = x.abi == abi::COMPAT;
        let (name, len) = msg_name(compat, msgs.0).unwrap_or((0, 0));
        // The messages the kernel went on to: all it sent, and the one
        // that failed.
        let tried = if ret <= 0 {
            1
        } else if (ret as u64) < msgs.1 {
            ret as u64 + 1
        } else {
            msgs.1
        };
        scan_later_messages(compat, msgs.0, tried, name);
        (path1, sock_len) = (name, len);
    } else if c == class::MSGHDR {
        return false;
    }
    // Through memory, volatile: a value the compiler kept in a register
    // would stay a known constant to the verifier through the rest of the
    // program, and multiply the paths it walks.
    unsafe { core::ptr::write_volatile(&raw mut w.moved, moved_since_entry(task, files, x, ret)) };
    // A repeat of a record already sent is dropped before it is built.
    w.ret = ret;
    w.fast = 0;
    unsafe {
        core::ptr::write_volatile(&raw mut w.read1, 0);
        core::ptr::write_volatile(&raw mut w.obs.dentry, 0);
    }
    let root = scope::root();
    let (stop, root_sb) = scope::walk_stop_of(root, &x.root);
    if fast_eligible(x)
        && moved(w) == 0
        && root.is_some()
        && let Some((key, seen, n, obs)) = fast_key(w, x, files, stop, arg_flags, arg_flags2)
    {
        let key = salted(key);
        w.read1 = n as u64 + 1;
        // For a new descriptor, the file it names (the record's step 1
        // takes it from here).
        w.obs = obs;
        if fast_hit(&key, &seen) {
            count_stat(stats::DEDUPLICATED);
            return false;
        }
        w.fast = 1;
        w.fast_key = key;
        w.fast_seen = seen;
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
        return false;
    };
    let Some(p) = finish::pending() else {
        return false;
    };
    unsafe {
        (*p).stop_dentry = stop;
        (*p).root_sb = root_sb;
        (*p).fast = w.fast;
        copy::copy(&raw mut (*p).fast_key, &raw const w.fast_key);
        copy::copy(&raw mut (*p).fast_seen, &raw const w.fast_seen);
    }
    w.arg_flags2 = arg_flags2;
    w.path1 = path1;
    w.sock_len = sock_len;
    w.fl = x.bad_dirfd;
    // Volatile: side-by-side zero stores are merged into a memset call.
    unsafe {
        core::ptr::write_volatile(&raw mut w.raw1, 0);
        core::ptr::write_volatile(&raw mut w.raw2, 0);
        core::ptr::write_volatile(&raw mut w.abs1, 0);
        core::ptr::write_volatile(&raw mut w.skip, 0);
    }
    let mut step = 0;
    while step < 4 {
        if exit_step(step, task, files) != 0 {
            break;
        }
        step += 1;
    }
    if w.skip != 0 {
        return false;
    }
    let fl = w.fl;
    let named = w.raw1 != 0 || w.raw2 != 0 || unsafe { (*p).obs.dentry } != 0;
    if !named && fl & (flags::OBS_GONE | flags::RAW1_UNREADABLE | flags::RAW2_UNREADABLE) == 0 {
        // fstat-style calls on a descriptor (an empty path with
        // AT_EMPTY_PATH, utimensat(fd, NULL)): no lookup happened.
        return false;
    }
    unsafe {
        (*buf).header.flags = fl;
        (*p).pos = w.raw1 + w.raw2;
    }
    true
}
