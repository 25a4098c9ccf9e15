//! `sched_process_exec(struct task_struct *p, pid_t old_pid, struct
//! linux_binprm *bprm)`: a successful exec, seen from the new image. The
//! filename is the kernel's own copy in `bprm` (the old user memory is
//! gone; for execveat it reads `/dev/fd/N/name`), `bprm->file` is the file
//! really running (the interpreter of a `#!` script), `bprm->interp` the
//! name a `#!` line gave, argv is read from the new stack. The directory a
//! relative name started from was saved at the syscall's entry.
use aya_ebpf::{
    cty::c_void, helpers::generated::bpf_probe_read_kernel_str, programs::RawTracePointContext,
};
use tracer_common::{AT_FDCWD, PATH_MAX, arm, flags, kind, stats, walk_end};

use crate::{
    conf, event, finish,
    kernel::{self, read_u64, still_valid},
    maps::{KRef, count_stat, epoch, inflight_slot},
    scope::{self, in_base_scope},
};

/// Arms the current process if this exec makes it count; false when it
/// is not traced (yet).
#[inline(always)]
fn arm_on_exec<P: kernel::Kptr>(task: P) -> bool {
    let mode = conf!(arm);
    if mode == arm::ALWAYS {
        return true;
    }
    if !scope::armed_process() && !scope::arm_at_exec(task) {
        return false;
    }
    // The first program the scope runs defines its root: the container's
    // root after pivot_root, `--root`'s directory after chroot.
    scope::set_root(&kernel::root_of(kernel::fs_of(task)));
    true
}

#[inline(always)]
pub fn on_exec(ctx: &RawTracePointContext) {
    if !in_base_scope() {
        return;
    }
    let task = kernel::current_task_untyped();
    if !arm_on_exec(task) {
        return;
    }
    count_stat(stats::SEEN);
    let fs = kernel::fs_of(task);
    scope::maybe_root_from_target(task);
    // A thread other than the leader that execs takes the leader's pid:
    // its entry was saved under its old thread id.
    let old_tid: u32 = ctx.arg(1);
    let Some(x) = inflight_slot(old_tid) else {
        return;
    };
    let x = unsafe { &mut *x };
    // The entry of this exec, if it was seen; a mismatch is someone else's.
    let own = x.tid == old_tid && x.epoch == epoch();
    let (id, abi, dirfd1, flags0) = if own {
        (x.spec.id, x.abi, x.dirfd1, x.flags)
    } else {
        (0, 0, AT_FDCWD, 0)
    };
    let (file, base1) = if own {
        (x.file, x.base1)
    } else {
        (KRef::default(), KRef::default())
    };
    // Another thread sharing the cwd and root changed them since the
    // exec began: the name may have been looked up from either.
    let fs_moved = own && kernel::fs_seq_of(fs) != x.fs_seq;
    // Read: free the slot.
    if own {
        x.tid = 0;
    }

    let Some(buf) = event::start(&event::Head {
        kind: kind::EXEC,
        abi,
        syscall: id,
        dirfd1,
        dirfd2: AT_FDCWD,
        ret: 0,
        arg_flags: flags0,
        arg_flags2: 0,
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

    let bprm: u64 = ctx.arg(2);
    let name = read_u64(bprm + conf!(offsets.bprm_filename) as u64);
    let n = unsafe {
        bpf_probe_read_kernel_str(data as *mut c_void, PATH_MAX as u32, name as *const c_void)
    };
    let mut fl: u32 = 0;
    let mut raw_len: usize = 0;
    if n > 0 {
        raw_len = (n as usize - 1) & (PATH_MAX - 1);
    } else {
        fl |= flags::RAW1_UNREADABLE;
    }
    h.sections[0].len = raw_len as u16;
    let interp = read_u64(bprm + conf!(offsets.bprm_interp) as u64);
    if interp != 0 && interp != name {
        p.interp = interp;
    }

    let root = kernel::root_of(fs);
    let (stop, root_sb) = scope::walk_stop(&root);
    p.stop_dentry = stop;
    p.root_sb = root_sb;
    let first = unsafe { *data };
    // "/dev/fd/" as the kernel builds it for execveat's fdpath.
    let fdpath = raw_len >= 8
        && unsafe { core::ptr::read_unaligned(data as *const u64) }
            == u64::from_le_bytes(*b"/dev/fd/");
    if file.dentry != 0 && fdpath && base1.dentry != 0 {
        // execveat(dirfd, relative or empty path): the kernel named it
        // /dev/fd/N[/name]; what the descriptor named was saved at entry
        // (an absolute path, even /dev/fd/..., is the program's own and
        // has no base saved).
        fl |= flags::HAS_BASE1 | flags::RAW1_IS_FDPATH;
        // Another file put under the descriptor since entry (dup2 by
        // another thread): which one the kernel ran is not known. (One
        // closed on exec is gone by now, and not counted.)
        let files = kernel::files_of(task);
        if still_valid(&file) && !kernel::dirfd_moved(files, dirfd1, &file) {
            p.base1 = file;
        } else {
            h.sections[2].end = walk_end::STALE;
        }
    } else if n > 0 && fs_moved {
        fl |= flags::HAS_BASE1;
        h.sections[2].end = walk_end::STALE;
    } else if n > 0 && first != b'/' {
        // A relative name: from the cwd at entry (or now, if the entry
        // was not seen).
        let base = if base1.dentry != 0 {
            base1
        } else {
            kernel::pwd_of(fs)
        };
        fl |= flags::HAS_BASE1;
        if still_valid(&base) {
            p.base1 = base;
        } else {
            h.sections[2].end = walk_end::STALE;
        }
    } else if root.dentry != stop {
        fl |= flags::HAS_BASE1;
        p.base1 = root;
    }
    let file = read_u64(bprm + conf!(offsets.bprm_file) as u64);
    if file != 0 {
        p.exe = kernel::file_path(file);
        fl |= flags::HAS_EXE;
    }
    let (argv_start, argv_end) = kernel::arg_range(task);
    p.argv_start = argv_start;
    p.argv_end = argv_end;
    h.flags = fl;
    p.pos = raw_len as u64;
    finish::tail_call(ctx);
}
