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

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use tracer_common::scope_mode;

use crate::maps::{ARMED, CONFIG, SCOPE_PIDS};

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

/// Pid scope: children of traced processes are traced. Container mode:
/// children of armed processes are armed.
/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn process_fork(ctx: RawTracePointContext) -> i32 {
    let cfg = CONFIG.load();
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let pids = cfg.scope_mode == scope_mode::PIDS && unsafe { SCOPE_PIDS.get(tgid) }.is_some();
    let armed = cfg.arm_on_foreign_exec != 0 && unsafe { ARMED.get(tgid) }.is_some();
    if !pids && !armed {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let pid_addr = child + cfg.offsets.task_pid as u64;
    if let Ok(pid) = unsafe { bpf_probe_read_kernel(pid_addr as *const u32) } {
        if pids {
            let _ = SCOPE_PIDS.insert(pid, 1, 0);
        }
        if armed {
            let _ = ARMED.insert(pid, 1, 0);
        }
    }
    0
}

/// Forget exited tasks so a reused pid is not traced.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn process_exit(_ctx: RawTracePointContext) -> i32 {
    let cfg = CONFIG.load();
    let tid = bpf_get_current_pid_tgid() as u32;
    if cfg.scope_mode == scope_mode::PIDS {
        let _ = SCOPE_PIDS.remove(tid);
    }
    if cfg.arm_on_foreign_exec != 0 {
        let _ = ARMED.remove(tid);
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
