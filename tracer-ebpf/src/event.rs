//! Building a record in per-CPU scratch memory and sending it to userspace.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
};
use tracer_common::{EventBuf, EventHeader, HEADER_SIZE, Section, loss, section, stats};

use crate::{
    conf,
    maps::{EVENTS, count_loss, count_stat, scratch},
};

/// What a record starts with, before its sections are known.
pub struct Head {
    pub kind: u8,
    pub abi: u8,
    pub syscall: u16,
    pub dirfd1: i32,
    pub dirfd2: i32,
    pub ret: i64,
    pub arg_flags: u64,
    pub arg_flags2: u64,
    pub cookie: u64,
}

/// The per-CPU scratch record, with its header filled for the current task.
#[inline(always)]
pub fn start(head: &Head) -> Option<*mut EventBuf> {
    let Some(buf) = scratch() else {
        count_loss(loss::NO_SCRATCH);
        return None;
    };
    let id = bpf_get_current_pid_tgid();
    let header = EventHeader {
        kind: head.kind,
        abi: head.abi,
        syscall: head.syscall,
        flags: 0,
        pid: (id >> 32) as u32,
        tid: id as u32,
        dirfd1: head.dirfd1,
        dirfd2: head.dirfd2,
        ret: head.ret,
        arg_flags: head.arg_flags,
        arg_flags2: head.arg_flags2,
        cookie: head.cookie,
        sections: [Section::default(); section::COUNT],
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    // SAFETY: `buf` points at this CPU's scratch slot.
    unsafe { (*buf).header = header };
    Some(buf)
}

/// Copies the header and the first `data_len` bytes of data into the ring
/// buffer; a full ring buffer is counted, never silent. True when sent.
#[inline(always)]
pub fn submit(buf: *mut EventBuf, data_len: usize) -> bool {
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
    let flags = if pending > conf!(ringbuf_wakeup_bytes) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    match EVENTS.output::<[u8]>(bytes, flags as u64) {
        Ok(()) => {
            count_stat(stats::EMITTED);
            true
        }
        Err(_) => {
            count_loss(loss::RINGBUF_FULL);
            false
        }
    }
}
