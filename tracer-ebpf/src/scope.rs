//! Is the current task one of the traced ones?
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, generated::bpf_get_current_ancestor_cgroup_id};
use tracer_common::scope_mode;

use crate::maps::{ARMED, CONFIG, SCOPE_PIDS};

/// In scope, and in container mode also armed.
#[inline(always)]
pub fn in_scope() -> bool {
    if !in_base_scope() {
        return false;
    }
    if CONFIG.load().arm_on_foreign_exec == 0 {
        return true;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    unsafe { ARMED.get(tgid).is_some() }
}

/// In the cgroup or pid set, armed or not.
#[inline(always)]
pub fn in_base_scope() -> bool {
    let cfg = CONFIG.load();
    if cfg.scope_mode == scope_mode::CGROUP {
        // Ancestor, not current: processes that move into a child cgroup
        // (a container runtime, systemd-run) stay in scope.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(cfg.cgroup_level as i32) };
        id == cfg.cgroup_id
    } else if cfg.scope_mode == scope_mode::PIDS {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        unsafe { SCOPE_PIDS.get(tgid).is_some() }
    } else {
        false
    }
}
