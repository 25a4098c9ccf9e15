//! eBPF programs of `trace`: raw tracepoints on every syscall's entry and
//! exit, on process exec/fork/exit and on io_uring submission and
//! completion. See `tracer-common` for the record format.
#![no_std]
#![no_main]

mod cgroup_move;
mod copy;
mod event;
mod exec;
mod finish;
mod kernel;
mod maps;
mod scope;
mod syscalls;
mod uring;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::{arm, loss, scope_mode};

use crate::maps::{ARMED, SCOPE_PIDS, count_loss};

// Raw tracepoints, not the per-syscall `syscalls:*` ones: those attach
// through perf events, and detaching each waits for an RCU grace period
// (35 of them took 1.4-2.5 s at exit). Two raw attachments do the same job.

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    syscalls::on_enter(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    syscalls::on_exit(&ctx);
    0
}

/// Tail-called (slot 0 of `FINISH`) to complete and submit a record.
#[raw_tracepoint]
pub fn finish(ctx: RawTracePointContext) -> i32 {
    finish::run(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn process_exec(ctx: RawTracePointContext) -> i32 {
    exec::on_exec(&ctx);
    0
}

/// A task moved between cgroups (`cgroup_attach_task`).
#[raw_tracepoint(tracepoint = "cgroup_attach_task")]
pub fn cgroup_attach(ctx: RawTracePointContext) -> i32 {
    cgroup_move::on_attach(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "io_uring_submit_req")]
pub fn uring_submit(ctx: RawTracePointContext) -> i32 {
    uring::on_submit(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn uring_complete(ctx: RawTracePointContext) -> i32 {
    uring::on_complete(&ctx);
    0
}

/// Pid scope: children of traced processes are traced. Armed scopes:
/// children of armed processes are armed. Threads are not processes: the
/// maps hold thread group ids.
/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn process_fork(ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let pids = conf!(scope_mode) == scope_mode::PIDS && unsafe { SCOPE_PIDS.get(tgid) }.is_some();
    let armed = conf!(arm) != arm::ALWAYS && unsafe { ARMED.get(tgid) }.is_some();
    // A child born outside the run's cgroup (`clone3(CLONE_INTO_CGROUP)`)
    // is out of the scope from its first instruction.
    let watched =
        cgroup_move::watched() && (armed || (conf!(arm) == arm::ALWAYS && scope::in_base_scope()));
    if !pids && !armed && !watched {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let read = |off: u32| unsafe { bpf_probe_read_kernel((child + off as u64) as *const u32) };
    let (Ok(pid), Ok(child_tgid)) = (
        read(conf!(offsets.task_pid)),
        read(conf!(offsets.task_tgid)),
    ) else {
        return 0;
    };
    if pid != child_tgid {
        // A new thread of a traced process: covered by its tgid.
        return 0;
    }
    if watched {
        cgroup_move::on_fork(child, pid);
    }
    let start = kernel::start_time(child);
    // A child left out of a full table would go unseen: counted, so the
    // trace says it is incomplete.
    if pids && SCOPE_PIDS.insert(pid, start, 0).is_err() {
        count_loss(loss::PROCESS_TABLE_FULL);
    }
    if armed {
        scope::arm_process(pid, start);
    }
    0
}

/// Forget a process when its last thread exits (not when its leader
/// does: the others go on), so a reused pid is not traced.
/// `sched_process_exit(struct task_struct *p, bool group_dead)`.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn process_exit(ctx: RawTracePointContext) -> i32 {
    if !scope::in_base_scope() {
        return 0;
    }
    // A thread that dies inside a syscall leaves its entry behind.
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(slot) = maps::inflight_slot(tid) {
        // SAFETY: the slot of the exiting thread.
        unsafe {
            if (*slot).tid == tid {
                (*slot).tid = 0;
            }
        }
    }
    let group_dead: u64 = ctx.arg(1);
    if group_dead & 0xff == 0 {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if conf!(scope_mode) == scope_mode::PIDS {
        let _ = SCOPE_PIDS.remove(tgid);
    }
    if conf!(arm) != arm::ALWAYS {
        let _ = ARMED.remove(tgid);
    }
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
