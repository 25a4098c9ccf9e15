//! Building a record in per-CPU scratch memory and sending it to userspace.
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_get_current_pid_tgid,
};
use tracer_common::{EventBuf, HEADER_SIZE, loss, stats};

use crate::{
    conf, copy,
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
    // Field by field: a whole-header copy compiles to a byte loop.
    // SAFETY: `buf` points at this CPU's scratch slot.
    unsafe {
        let h = &mut (*buf).header;
        h.kind = head.kind;
        h.abi = head.abi;
        h.syscall = head.syscall;
        h.flags = 0;
        h.pid = (id >> 32) as u32;
        h.tid = id as u32;
        h.dirfd1 = head.dirfd1;
        h.dirfd2 = head.dirfd2;
        h.ret = head.ret;
        h.arg_flags = head.arg_flags;
        h.arg_flags2 = head.arg_flags2;
        h.cookie = head.cookie;
        copy::zero(&raw mut h.sections);
        if aya_ebpf::helpers::generated::bpf_get_current_comm(
            h.comm.as_mut_ptr() as *mut core::ffi::c_void,
            16,
        ) != 0
        {
            copy::zero(&raw mut h.comm);
        }
    }
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
