//! io_uring: requests that name paths are recorded at submission
//! (`io_uring_submit_req(struct io_kiocb *req)`, after the op's prep has
//! copied its paths into the kernel) and joined by userspace with their
//! completion (`io_uring_complete(ctx, req, struct io_uring_cqe *cqe)`),
//! which gives the result and, for an open, the new descriptor's file.
//! What each opcode holds where comes from the loader (`URING_SPECS`);
//! opcodes it does not know are counted, never silently skipped.
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::{bpf_loop, bpf_probe_read_kernel_str, bpf_probe_read_user_str},
    },
    programs::RawTracePointContext,
};
use tracer_common::{
    AT_FDCWD, PATH_MAX, UringSpec, channel, flags, kind, loss, uring_class, walk_end,
};

use crate::{
    conf, event, finish,
    kernel::{self, read_u32, read_u64, still_valid},
    maps::{
        PENDING, URING, URING_WORK, UringWork, count_loss, count_unobserved, scratch, uring_spec,
    },
    scope::{self, in_scope},
};

/// `URING` value bit: the open went into a fixed-file slot.
const SLOT: u32 = 1 << 16;
/// `sizeof(sun_path)`.
const SUN_PATH: u64 = 108;

#[inline(always)]
fn field_u32(req: u64, off: u16) -> u32 {
    if off == UringSpec::NONE {
        return 0;
    }
    read_u32(req + off as u64)
}

#[inline(always)]
fn field_u64(req: u64, off: u16) -> u64 {
    if off == UringSpec::NONE {
        return 0;
    }
    read_u64(req + off as u64)
}

#[inline(always)]
fn dfd(req: u64, off: u16) -> i32 {
    if off == UringSpec::NONE {
        AT_FDCWD
    } else {
        read_u32(req + off as u64) as i32
    }
}

/// A `struct filename *` field, as a kernel string pointer.
#[inline(always)]
fn filename(req: u64, off: u16) -> u64 {
    let f = field_u64(req, off);
    if f == 0 {
        return 0;
    }
    read_u64(f + conf!(offsets.filename_name) as u64)
}

/// Reads a kernel string of at most `max` bytes into the record at `pos`.
#[inline(always)]
fn read_name(data: *mut u8, pos: usize, ptr: u64, max: u32) -> usize {
    if ptr == 0 {
        return 0;
    }
    let n = unsafe {
        bpf_probe_read_kernel_str(
            data.add(pos & (PATH_MAX - 1)) as *mut c_void,
            max,
            ptr as *const c_void,
        )
    };
    if n <= 0 {
        0
    } else {
        (n as usize - 1) & (PATH_MAX - 1)
    }
}

/// Resolves the starting directory of name `index` (0 or 1) of the
/// request in `PENDING`: the root for an absolute one, the dirfd's file or
/// the cwd (read now, at submission) otherwise. A `bpf_loop` callback, so
/// the verifier checks it once rather than once per path to it.
#[inline(never)]
extern "C" fn base_step(index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(p), Some(buf)) = (PENDING.get_ptr_mut(0), scratch()) else {
        return 1;
    };
    let p = unsafe { &mut *p };
    let h = unsafe { &mut (*buf).header };
    let second = index != 0;
    let present = if second {
        p.uring_names & 4 != 0
    } else {
        p.uring_names & 8 != 0
    };
    if !present {
        return 0;
    }
    let absolute = p.uring_names & (1 << (index & 1)) != 0;
    let dfd = p.uring_dfd[(index & 1) as usize];
    let task = kernel::current_task_untyped();
    let fs = kernel::fs_of(task);
    let b = if absolute {
        Some(kernel::root_of(fs))
    } else if dfd == AT_FDCWD {
        Some(kernel::pwd_of(fs))
    } else {
        kernel::fd_path(task, dfd as i64)
    };
    let Some(b) = b else {
        h.flags |= if second {
            flags::BAD_DIRFD2
        } else {
            flags::BAD_DIRFD1
        };
        return 0;
    };
    if b.dentry == p.stop_dentry {
        return 0;
    }
    h.flags |= if second {
        flags::HAS_BASE2
    } else {
        flags::HAS_BASE1
    };
    if !absolute && !still_valid(&b) {
        let s = if second { 4 } else { 2 };
        h.sections[s].end = walk_end::STALE;
    } else if second {
        p.base2 = b;
    } else {
        p.base1 = b;
    }
    0
}

/// One step of decoding the request in `URING_WORK` into the scratch
/// record: 0 its fields (dirfds, flags, slot, a socket address), 1 its
/// first name, 2 its second. A `bpf_loop` callback (verified once);
/// returns 1 to stop when the request names nothing to record.
#[inline(never)]
extern "C" fn submit_step(index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(w), Some(p), Some(buf)) =
        (URING_WORK.get_ptr_mut(0), PENDING.get_ptr_mut(0), scratch())
    else {
        return 1;
    };
    let (w, p) = unsafe { (&mut *w, &mut *p) };
    let h = unsafe { &mut (*buf).header };
    let data = unsafe { (*buf).data.as_mut_ptr() };
    let (req, spec) = (w.req, w.spec);
    match index {
        0 => {
            if spec.class == uring_class::SOCKADDR {
                let len = field_u32(req, spec.name1) as u64;
                let (addr, family, first) = if spec.name2 != UringSpec::NONE {
                    // connect: the caller's own sockaddr, still mapped.
                    let addr = field_u64(req, spec.name2);
                    let family = unsafe { bpf_probe_read_user(addr as *const u16) }.unwrap_or(0);
                    let first =
                        unsafe { bpf_probe_read_user((addr + 2) as *const u8) }.unwrap_or(0);
                    w.sun_user = 1;
                    (addr, family as u32, first as u32)
                } else {
                    // bind: the kernel's copy in the async data, either the
                    // sockaddr itself (newer kernels) or inside a msghdr.
                    let data = read_u64(req + conf!(offsets.req_async_data) as u64);
                    let inner = data + conf!(offsets.msghdr_addr) as u64;
                    let addr = if read_u32(data) & 0xffff == 1 {
                        data
                    } else {
                        inner
                    };
                    (addr, read_u32(addr) & 0xffff, read_u32(addr + 2) & 0xff)
                };
                if family != 1 || len <= 2 || first == 0 {
                    // Not a filesystem socket: nothing to record.
                    w.skip = 1;
                    return 1;
                }
                w.sun = addr + 2;
                w.sun_len = if len - 2 > SUN_PATH {
                    SUN_PATH
                } else {
                    len - 2
                };
            }
            h.arg_flags = if spec.flags32 != 0 {
                field_u32(req, spec.flags) as u64
            } else {
                field_u64(req, spec.flags)
            };
            h.arg_flags2 = field_u64(req, spec.flags2);
            h.dirfd1 = dfd(req, spec.dfd1);
            h.dirfd2 = dfd(req, spec.dfd2);
            p.uring_dfd = [h.dirfd1, h.dirfd2];
            if spec.class == uring_class::OPEN && field_u32(req, spec.slot) != 0 {
                w.slot = 1;
                h.flags |= flags::FIXED_SLOT;
            }
        }
        1 => {
            let n1 = if w.sun != 0 && w.sun_user != 0 {
                let n = unsafe {
                    bpf_probe_read_user_str(
                        data as *mut c_void,
                        ((w.sun_len + 1) & 127) as u32,
                        w.sun as *const c_void,
                    )
                };
                if n <= 0 { 0 } else { (n as usize - 1) & 127 }
            } else if w.sun != 0 {
                read_name(data, 0, w.sun, ((w.sun_len + 1) & 127) as u32)
            } else {
                read_name(data, 0, filename(req, spec.name1), PATH_MAX as u32)
            };
            h.sections[0].len = n1 as u16;
            w.n1 = n1 as u64;
            if n1 > 0 {
                p.uring_names |= 8 | (unsafe { *data } == b'/') as u64;
            }
        }
        _ => {
            if w.sun != 0 {
                return 0;
            }
            let n1 = w.n1 as usize;
            let n2 = read_name(data, n1, filename(req, spec.name2), PATH_MAX as u32);
            h.sections[1].len = n2 as u16;
            w.n2 = n2 as u64;
            if spec.content2 != 0 {
                h.flags |= flags::RAW2_CONTENT;
            } else if n2 > 0 {
                let abs = unsafe { *data.add(n1 & (PATH_MAX - 1)) } == b'/';
                p.uring_names |= 4 | (abs as u64) << 1;
            }
        }
    }
    0
}

#[inline(always)]
pub fn on_submit(ctx: &RawTracePointContext) {
    if !in_scope() {
        return;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if conf!(offsets.uring_known) == 0 {
        // This kernel's io_uring structs are unknown: nothing can be read.
        count_unobserved(channel::IO_URING, 0xffff, pid);
        return;
    }
    let req: u64 = ctx.arg(0);
    let op = read_u32(req + conf!(offsets.req_opcode) as u64) as u8;
    let spec = uring_spec(op);
    match spec.class {
        uring_class::NO_PATH => return,
        uring_class::PATHS | uring_class::SOCKADDR | uring_class::OPEN => {}
        _ => {
            // An opcode newer than this table may name paths.
            count_unobserved(channel::IO_URING, op as u16, pid);
            return;
        }
    }
    let Some(w) = URING_WORK.get_ptr_mut(0) else {
        return;
    };
    let Some(_buf) = event::start(&event::Head {
        kind: kind::URING_SUBMIT,
        abi: 0,
        syscall: op as u16,
        dirfd1: AT_FDCWD,
        dirfd2: AT_FDCWD,
        ret: 0,
        arg_flags: 0,
        arg_flags2: 0,
        cookie: req,
    }) else {
        return;
    };
    let Some(p) = finish::pending() else {
        return;
    };
    let p = unsafe { &mut *p };
    p.no_dedup = 1;
    let task = kernel::current_task_untyped();
    let (stop, root_sb) = scope::walk_stop(&kernel::root_of(kernel::fs_of(task)));
    p.stop_dentry = stop;
    p.root_sb = root_sb;
    // This CPU's slot: the submit program does not run twice at once on
    // one CPU.
    let w = unsafe { &mut *w };
    *w = UringWork {
        req,
        spec,
        ..UringWork::default()
    };
    unsafe { bpf_loop(3, submit_step as *mut c_void, core::ptr::null_mut(), 0) };
    if w.skip != 0 {
        return;
    }
    unsafe { bpf_loop(2, base_step as *mut c_void, core::ptr::null_mut(), 0) };
    let open = if spec.class == uring_class::OPEN {
        1 << 8
    } else {
        0
    };
    let v = op as u32 | open | if w.slot != 0 { SLOT } else { 0 };
    if URING.insert(req, v, 0).is_err() {
        count_loss(loss::URING_FULL);
    }
    p.pos = w.n1 + w.n2;
    finish::tail_call(ctx);
}

#[inline(always)]
pub fn on_complete(ctx: &RawTracePointContext) {
    if !in_scope() {
        return;
    }
    let req: u64 = ctx.arg(1);
    let Some(v) = (unsafe { URING.get(req) }).copied() else {
        return;
    };
    let _ = URING.remove(req);
    let cqe: u64 = ctx.arg(2);
    let res = read_u32(cqe + conf!(offsets.cqe_res) as u64) as i32;
    let op = (v & 0xff) as u8;
    let Some(buf) = event::start(&event::Head {
        kind: kind::URING_COMPLETE,
        abi: 0,
        syscall: op as u16,
        dirfd1: AT_FDCWD,
        dirfd2: AT_FDCWD,
        ret: res as i64,
        arg_flags: 0,
        arg_flags2: 0,
        cookie: req,
    }) else {
        return;
    };
    let Some(p) = finish::pending() else {
        return;
    };
    let p = unsafe { &mut *p };
    p.no_dedup = 1;
    let task = kernel::current_task_untyped();
    let (stop, root_sb) = scope::walk_stop(&kernel::root_of(kernel::fs_of(task)));
    p.stop_dentry = stop;
    p.root_sb = root_sb;
    if v & SLOT != 0 {
        unsafe { (*buf).header.flags |= flags::FIXED_SLOT };
    } else if v & (1 << 8) != 0 && res >= 0 {
        match kernel::fd_path(task, res as i64) {
            Some(f) => p.obs = f,
            None => unsafe { (*buf).header.flags |= flags::OBS_GONE },
        }
    }
    finish::tail_call(ctx);
}
