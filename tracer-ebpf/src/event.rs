//! Building a record in per-CPU scratch memory and sending it to userspace.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
};
use tracer_common::{EventBuf, EventHeader, HEADER_SIZE, loss, stats};

use crate::maps::{CONFIG, EVENTS, SCRATCH, count_loss, count_stat};

/// The per-CPU scratch record, with its header filled for the current task.
#[inline(always)]
pub fn start(syscall: u8, dirfd: i32, ret: i64, arg_flags: u64) -> Option<*mut EventBuf> {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        count_loss(loss::NO_SCRATCH);
        return None;
    };
    let id = bpf_get_current_pid_tgid();
    let header = EventHeader {
        syscall,
        _pad: 0,
        flags: 0,
        pid: (id >> 32) as u32,
        tid: id as u32,
        dirfd,
        ret,
        arg_flags,
        raw_len: 0,
        base_len: 0,
        exe_len: 0,
        argv_len: 0,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    // SAFETY: `buf` points at this CPU's scratch slot.
    unsafe { (*buf).header = header };
    Some(buf)
}

/// Copies the header and the first `data_len` bytes of data into the ring
/// buffer; a full ring buffer is counted, never silent.
#[inline(always)]
pub fn submit(buf: *mut EventBuf, data_len: usize) {
    let mut len = HEADER_SIZE + data_len;
    if len > core::mem::size_of::<EventBuf>() {
        len = core::mem::size_of::<EventBuf>();
    }
    // SAFETY: `len` is bounded by the scratch slot's size.
    let bytes = unsafe { core::slice::from_raw_parts(buf as *const u8, len) };
    // Waking the reader for every record costs the traced task an
    // irq_work each time; the reader polls on a short timer instead and is
    // woken only when the buffer is filling up.
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let flags = if pending > CONFIG.load().ringbuf_wakeup_bytes {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    match EVENTS.output::<[u8]>(bytes, flags as u64) {
        Ok(()) => count_stat(stats::EMITTED),
        Err(_) => count_loss(loss::RINGBUF_FULL),
    }
}
