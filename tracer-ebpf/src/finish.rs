//! The `finish` program, tail-called by the syscall-exit and exec
//! programs once the header and raw path are in scratch memory: it walks
//! the base directory and the exe file into path components, copies argv,
//! and submits the record. Its inputs come from map memory, so the
//! verifier checks it once instead of once per path through its callers.
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_probe_read_user},
    programs::RawTracePointContext,
};
use tracer_common::{ARGV_MAX, DATA_WALK_MASK, flags, loss};

use crate::{
    event,
    kernel::{self, KPath, WalkEnd},
    maps::{FINISH, PENDING, Pending, SCRATCH, count_loss},
};

/// Hands the record over to `finish`; only returns if the tail call failed.
#[inline(always)]
pub fn tail_call(ctx: &RawTracePointContext) {
    unsafe { FINISH.tail_call(ctx, 0) };
    count_loss(loss::TAIL_CALL);
}

/// The per-CPU pending-work slot, reset.
#[inline(always)]
pub fn pending() -> Option<*mut Pending> {
    let p = PENDING.get_ptr_mut(0)?;
    unsafe {
        *p = Pending {
            pos: 0,
            root_mnt: 0,
            root_dentry: 0,
            base_mnt: 0,
            base_dentry: 0,
            exe_mnt: 0,
            exe_dentry: 0,
            argv_start: 0,
            argv_end: 0,
        };
    }
    Some(p)
}

#[inline(always)]
pub fn run(_ctx: &RawTracePointContext) {
    let (Some(p), Some(buf)) = (PENDING.get_ptr_mut(0), SCRATCH.get_ptr_mut(0)) else {
        count_loss(loss::NO_SCRATCH);
        return;
    };
    let o = kernel::offsets();
    let p = unsafe { &*p };
    let h = unsafe { &mut (*buf).header };
    let data = unsafe { (*buf).data.as_mut_ptr() };
    let root = KPath {
        mnt: p.root_mnt,
        dentry: p.root_dentry,
    };
    let mut pos = (p.pos as usize) & (tracer_common::PATH_MAX - 1);

    if p.base_dentry != 0 {
        let base = KPath {
            mnt: p.base_mnt,
            dentry: p.base_dentry,
        };
        let (end, how) = kernel::walk(&o, pos, base, root);
        h.flags |= flags::HAS_BASE;
        match how {
            WalkEnd::Root => {}
            WalkEnd::OutsideRoot => h.flags |= flags::BASE_OUTSIDE_ROOT,
            WalkEnd::Truncated => h.flags |= flags::BASE_TRUNCATED,
        }
        h.base_len = (end - pos) as u16;
        pos = end;
    }
    if p.exe_dentry != 0 {
        let exe = KPath {
            mnt: p.exe_mnt,
            dentry: p.exe_dentry,
        };
        let (end, how) = kernel::walk(&o, pos, exe, root);
        h.flags |= flags::HAS_EXE;
        if how == WalkEnd::Truncated {
            h.flags |= flags::EXE_TRUNCATED;
        }
        h.exe_len = (end - pos) as u16;
        pos = end;
    }
    if p.argv_end > p.argv_start {
        let mut len = (p.argv_end - p.argv_start) as usize;
        if len > ARGV_MAX {
            len = ARGV_MAX;
            h.flags |= flags::ARGV_TRUNCATED;
        }
        if pos > DATA_WALK_MASK {
            h.flags |= flags::ARGV_TRUNCATED;
        } else {
            let rc = unsafe {
                bpf_probe_read_user(
                    data.add(pos) as *mut c_void,
                    len as u32,
                    p.argv_start as *const c_void,
                )
            };
            if rc == 0 {
                h.argv_len = len as u16;
                pos += len;
            }
        }
    }
    // The record was started by this thread; if another task's record
    // replaced it meanwhile, drop it and say so.
    if h.tid != bpf_get_current_pid_tgid() as u32 {
        count_loss(loss::CLOBBERED);
        return;
    }
    event::submit(buf, pos);
}
