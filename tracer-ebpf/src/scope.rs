//! Is the current task one of the traced ones? And what is the scope's
//! root, which every recorded path is relative to?
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_ancestor_cgroup_id};
use tracer_common::{ScopeRoot, arm, loss, scope_mode};

use crate::{
    conf, kernel,
    maps::{ARMED, KRef, ROOT, RUN, SCOPE_PIDS, count_loss, run},
};

/// In scope, and armed unless the configuration traces at once.
#[inline(always)]
pub fn in_scope() -> bool {
    in_base_scope() && armed()
}

/// The current process is traced (given it is in the base scope).
#[inline(always)]
pub fn armed() -> bool {
    // An array slot is cheaper than a hash lookup on every syscall.
    if conf!(arm) == arm::ON_EXEC && RUN.get(0).is_some_and(|r| r.armed != 0) {
        return true;
    }
    armed_process()
}

/// The current process is in `ARMED` (armed at its exec, or the child of
/// an armed process). Exec keeps the map whole even once the whole scope
/// is armed: a move out of the scope is told by it.
#[inline(always)]
pub fn armed_process() -> bool {
    if conf!(arm) == arm::ALWAYS {
        return true;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    unsafe { ARMED.get(tgid).is_some() }
}

/// Arms the current process at an exec (its entry, or its success): from
/// here on it counts, unless in container mode it is still in the host's
/// mount namespace (the runtime). False when it stays unarmed.
#[inline(always)]
pub fn arm_at_exec<P: kernel::Kptr>(task: P) -> bool {
    let mode = conf!(arm);
    if mode == arm::ALWAYS {
        return true;
    }
    if mode == arm::ON_FOREIGN_EXEC && kernel::mnt_ns(task) == conf!(host_mntns) {
        return false;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    arm_process(tgid, kernel::start_time(task.addr()));
    if mode == arm::ON_EXEC
        && let Some(r) = RUN.get_ptr_mut(0)
    {
        // SAFETY: a plain store to map memory; every writer stores 1.
        unsafe { (*r).armed = 1 };
    }
    true
}

/// Puts process `tgid` (started at `start`) in `ARMED`. A full table is
/// counted as a loss: the process's syscalls from here on would go unseen.
#[inline(always)]
pub fn arm_process(tgid: u32, start: u64) {
    if ARMED.insert(tgid, start, 0).is_err() {
        count_loss(loss::PROCESS_TABLE_FULL);
    }
}

/// In the cgroup or pid set, armed or not.
#[inline(always)]
pub fn in_base_scope() -> bool {
    base_scope(false)
}

/// [`in_base_scope`] for `sys_enter` and `sys_exit`, which run on every
/// syscall: a task right in the scope's cgroup (most of the traced ones)
/// is told by three plain loads, the helper answers for the others. Only
/// there: the verifier checks each of those loads with searches of the
/// kernel's BTF by name, about 0.4 ms of a fresh load per program.
#[inline(always)]
pub fn in_base_scope_hot() -> bool {
    base_scope(true)
}

#[inline(always)]
fn base_scope(own_cgroup_first: bool) -> bool {
    let mode = conf!(scope_mode);
    if mode == scope_mode::CGROUP {
        // Ancestor, not current: processes that move into a child cgroup
        // (a container runtime, systemd-run) stay in scope.
        let Some(run) = RUN.get(0) else {
            return false;
        };
        if own_cgroup_first
            && conf!(offsets.cgroup_known) != 0
            && kernel::cgroup_id(kernel::current_task()) == run.cgroup_id
        {
            return run.cgroup_id != 0;
        }
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(conf!(cgroup_level) as i32) };
        // 0 is also what a task above the scope's level gets.
        id == run.cgroup_id && id != 0
    } else if mode == scope_mode::PIDS {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        unsafe { SCOPE_PIDS.get(tgid).is_some() }
    } else {
        false
    }
}

/// The scope's root, if known.
#[inline(always)]
pub fn root() -> Option<ScopeRoot> {
    let r = ROOT.get(0)?;
    (r.dentry != 0).then_some(*r)
}

/// Makes `root` the scope's root unless one is set already. Only one task
/// ever gets here first in practice (the command `trace run` starts, the
/// container's first program, the attach target), so a plain write will
/// do.
#[inline(always)]
pub fn set_root(root: &KRef) {
    let Some(r) = ROOT.get_ptr_mut(0) else {
        return;
    };
    unsafe {
        if (*r).dentry != 0 {
            return;
        }
        (*r).mnt = root.mnt;
        (*r).sb = kernel::dentry_sb(root.dentry);
        (*r).dentry = root.dentry;
    }
}

/// `trace attach`: the target's root becomes the scope's root at its
/// first event.
#[inline(always)]
pub fn maybe_root_from_target<P: kernel::Kptr>(task: P) {
    if conf!(arm) != arm::ALWAYS {
        return;
    }
    let target = run().root_pid;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if target != 0 && tgid != target {
        return;
    }
    set_root(&kernel::root_of(kernel::fs_of(task)));
}

/// Where a walk stops, and the filesystem that is the image: the scope's
/// root, or the task's own root while the scope's is not known.
#[inline(always)]
pub fn walk_stop(task_root: &KRef) -> (u64, u64) {
    walk_stop_of(root(), task_root)
}

/// [`walk_stop`] with the scope's root already looked up.
#[inline(always)]
pub fn walk_stop_of(root: Option<ScopeRoot>, task_root: &KRef) -> (u64, u64) {
    match root {
        Some(r) => (r.dentry, r.sb),
        None => (task_root.dentry, kernel::dentry_sb(task_root.dentry)),
    }
}
