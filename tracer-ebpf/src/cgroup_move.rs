//! A traced process moved to a cgroup outside the scope (it wrote its pid
//! into another `cgroup.procs`, or systemd moved it into a scope unit of
//! its own): from then on its syscalls fail the scope test and go unseen,
//! so the move itself is counted, and the trace says it is incomplete.
use aya_ebpf::programs::RawTracePointContext;
use tracer_common::{arm, channel, scope_mode};

use crate::{
    conf,
    kernel::{self, read_u32, read_u64},
    maps::{ARMED, count_unobserved, run},
    scope,
};

/// The deepest level `cgroup.ancestors` is read at: the verifier needs a
/// bound, and no hierarchy is nested this deep in practice.
const MAX_LEVEL: u32 = 64;

/// Where the cgroup at `cgrp` lies against the run's.
#[derive(PartialEq, Eq)]
enum Place {
    /// A v1 controller's own tree (a container runtime joins those too):
    /// only the v2 hierarchy decides the scope.
    NotV2,
    /// The run's cgroup or one below it.
    Inside,
    Outside,
}

/// Whether the cgroup at `cgrp` is a v2 cgroup outside the run's.
#[inline(always)]
fn outside_scope(cgrp: u64) -> bool {
    place(cgrp) == Place::Outside
}

#[inline(always)]
fn place(cgrp: u64) -> Place {
    let root = read_u64(cgrp + conf!(offsets.cgroup_root) as u64);
    if root == 0 || read_u32(root + conf!(offsets.root_hierarchy_id) as u64) != 0 {
        return Place::NotV2;
    }
    let ours_level = conf!(cgroup_level);
    let level = read_u32(cgrp + conf!(offsets.cgroup_level) as u64);
    if level >= ours_level && ours_level < MAX_LEVEL {
        let at = cgrp + conf!(offsets.cgroup_ancestors) as u64 + 8 * ours_level as u64;
        let ancestor = read_u64(at);
        let kn = read_u64(ancestor + conf!(offsets.cgroup_kn) as u64);
        if ancestor != 0 && kn != 0 && read_u64(kn + conf!(offsets.kn_id) as u64) == run().cgroup_id
        {
            // The run's cgroup, or below it (a container's own cgroup).
            return Place::Inside;
        }
    }
    Place::Outside
}

/// Whether moves out of the scope can be told here.
#[inline(always)]
pub fn watched() -> bool {
    conf!(scope_mode) == scope_mode::CGROUP && conf!(offsets.cgroup_known) != 0
}

/// A child a traced process made with `clone3(CLONE_INTO_CGROUP)` in a
/// cgroup outside the scope: counted as a move of the child.
#[inline(always)]
pub fn on_fork(child: u64, child_tgid: u32) {
    let css = read_u64(child + conf!(offsets.task_cgroups) as u64);
    if css == 0 {
        return;
    }
    let cgrp = read_u64(css + conf!(offsets.css_set_dfl_cgrp) as u64);
    if cgrp != 0 && outside_scope(cgrp) {
        count_unobserved(channel::CGROUP_MOVE, 0, child_tgid);
    }
}

/// `cgroup_attach_task(struct cgroup *dst_cgrp, const char *path,
/// struct task_struct *task, bool threadgroup)`, after the move.
#[inline(always)]
pub fn on_attach(ctx: &RawTracePointContext) {
    if !watched() {
        return;
    }
    let dst: u64 = ctx.arg(0);
    let task: u64 = ctx.arg(2);
    let to = place(dst);
    let tgid = read_u32(task + conf!(offsets.task_tgid) as u64);
    if to == Place::Inside && conf!(arm) == arm::ON_EXEC && run().armed != 0 {
        // Moved in from outside once the whole scope is armed: it is
        // traced from now on (`scope::armed`), so a later move out must
        // be told too.
        if ARMED.get_ptr(tgid).is_none() {
            scope::arm_process(tgid, kernel::start_time(task));
        }
        return;
    }
    if to != Place::Outside {
        return;
    }
    // Ours: an armed process, or (attach) one moved by a process in scope.
    let ours = if conf!(arm) == arm::ALWAYS {
        scope::in_base_scope()
    } else {
        unsafe { ARMED.get(tgid).is_some() }
    };
    if ours {
        count_unobserved(channel::CGROUP_MOVE, 0, tgid);
    }
}
