//! The `finish` program, tail-called once a record's header and raw paths
//! are in scratch memory: it walks the directories and files into path
//! components, copies argv, drops a record identical to one already sent,
//! and submits. Its inputs come from map memory, so the verifier checks it
//! once instead of once per path through its callers.
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_loop, bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    programs::RawTracePointContext,
};
use tracer_common::{
    ARGV_MAX, DATA_MASK, EventBuf, PATH_MAX, Section, flags, loss, section, stats,
};

use crate::{
    event, kernel,
    maps::{
        FINISH, HASH, PENDING, Pending, count_loss, count_stat, dedup_has, dedup_mark, fast_mark,
        generation, salted, scratch,
    },
};

/// Hands the record over to `finish`; only returns if the tail call failed.
#[inline(always)]
pub fn tail_call(ctx: &RawTracePointContext) {
    unsafe { FINISH.tail_call(ctx, 0) };
    count_loss(loss::TAIL_CALL);
}

/// The per-CPU pending-work slot, reset: only what `run` reads before
/// it is set (a whole-struct reset compiles to a byte loop).
#[inline(always)]
pub fn pending() -> Option<*mut Pending> {
    let p = PENDING.get_ptr_mut(0)?;
    // Volatile: plain zero stores side by side are merged into a memset.
    use core::ptr::write_volatile as w;
    unsafe {
        w(&raw mut (*p).pos, 0);
        w(&raw mut (*p).base1.dentry, 0);
        w(&raw mut (*p).obs.dentry, 0);
        w(&raw mut (*p).base2.dentry, 0);
        w(&raw mut (*p).exe.dentry, 0);
        w(&raw mut (*p).stop_dentry, 0);
        w(&raw mut (*p).root_sb, 0);
        w(&raw mut (*p).argv_start, 0);
        w(&raw mut (*p).argv_end, 0);
        w(&raw mut (*p).interp, 0);
        w(&raw mut (*p).no_dedup, 0);
        w(&raw mut (*p).uring_dfd[0], 0);
        w(&raw mut (*p).uring_dfd[1], 0);
        w(&raw mut (*p).uring_names, 0);
        w(&raw mut (*p).fast, 0);
    }
    Some(p)
}

#[inline(always)]
pub fn run(_ctx: &RawTracePointContext) {
    let (Some(p), Some(buf)) = (PENDING.get_ptr_mut(0), scratch()) else {
        count_loss(loss::NO_SCRATCH);
        return;
    };
    let p = unsafe { &*p };
    let h = unsafe { &mut (*buf).header };
    let data = unsafe { (*buf).data.as_mut_ptr() };
    let mut pos = (p.pos as usize) & (2 * PATH_MAX - 1);

    if p.base1.dentry != 0 {
        let (end, s) = kernel::walk(pos, &p.base1, p.stop_dentry, p.root_sb);
        h.sections[section::BASE1] = s;
        pos = end;
    }
    if p.obs.dentry != 0 {
        let (end, s) = kernel::walk(pos, &p.obs, p.stop_dentry, p.root_sb);
        h.sections[section::OBS] = s;
        pos = end;
    }
    if p.base2.dentry != 0 {
        let (end, s) = kernel::walk(pos, &p.base2, p.stop_dentry, p.root_sb);
        h.sections[section::BASE2] = s;
        pos = end;
    }
    if p.exe.dentry != 0 {
        let (end, s) = kernel::walk(pos, &p.exe, p.stop_dentry, p.root_sb);
        h.sections[section::EXE] = s;
        pos = end;
    }
    if p.obs.dentry != 0 {
        h.flags |= flags::HAS_OBS;
    }
    if p.argv_end > p.argv_start {
        let mut len = (p.argv_end - p.argv_start) as usize;
        if len > ARGV_MAX {
            len = ARGV_MAX;
            h.flags |= flags::ARGV_TRUNCATED;
        }
        let rc = unsafe {
            bpf_probe_read_user(
                data.add(pos & DATA_MASK) as *mut c_void,
                len as u32,
                p.argv_start as *const c_void,
            )
        };
        if rc == 0 {
            h.sections[section::ARGV].len = len as u16;
            pos += len;
        }
    }
    if p.interp != 0 {
        let n = unsafe {
            bpf_probe_read_kernel_str(
                data.add(pos & DATA_MASK) as *mut c_void,
                PATH_MAX as u32,
                p.interp as *const c_void,
            )
        };
        if n > 0 {
            let len = (n as usize - 1) & (PATH_MAX - 1);
            h.sections[section::INTERP].len = len as u16;
            h.flags |= flags::HAS_INTERP;
            pos += len;
        }
    }
    // The record was started by this thread; if another task's record
    // replaced it meanwhile, drop it and say so.
    if h.tid != bpf_get_current_pid_tgid() as u32 {
        count_loss(loss::CLOBBERED);
        return;
    }
    let pos = pos & DATA_MASK;
    if p.no_dedup != 0 {
        event::submit(buf, pos);
        return;
    }
    let Some(key) = hash(buf, pos).map(salted) else {
        event::submit(buf, pos);
        return;
    };
    if dedup_has(&key) {
        count_stat(stats::DEDUPLICATED);
        // The same record came through another way: remember this one.
        if p.fast != 0 && generation() == p.fast_seen.generation {
            fast_mark(&p.fast_key, &p.fast_seen);
        }
        return;
    }
    // Marked only once sent: a record lost to a full ring buffer must not
    // hide the next identical access.
    if event::submit(buf, pos) {
        dedup_mark(&key);
        // The names walked are the ones the generation the key was made
        // under gives: if a rename or mount came in between, forget it.
        if p.fast != 0 && generation() == p.fast_seen.generation {
            fast_mark(&p.fast_key, &p.fast_seen);
        }
    }
}

/// Data up to this many bytes is hashed inline.
const SHORT: usize = 64;
const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;

#[inline(always)]
fn mix(h: u64, w: u64, k: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(k);
    x ^ (x >> 29)
}

/// One word of data into the running hash; the last word is masked to
/// the record's length (the scratch buffer holds stale bytes past it).
#[inline(never)]
extern "C" fn hash_step(index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(s), Some(buf)) = (HASH.get_ptr_mut(0), scratch()) else {
        return 1;
    };
    let s = unsafe { &mut *s };
    let mut j = 0;
    while j < STEP_WORDS {
        let at = (index as usize * STEP_WORDS + j) * 8;
        if at >= s.len as usize {
            break;
        }
        let off = at & DATA_MASK;
        let mut w =
            unsafe { core::ptr::read_unaligned((*buf).data.as_ptr().add(off) as *const u64) };
        let left = s.len as usize - at;
        if left < 8 {
            w &= (1u64 << (left * 8)) - 1;
        }
        s.h1 = mix(s.h1, w, K1);
        s.h2 = mix(s.h2, w.rotate_left(17), K2);
        j += 1;
    }
    0
}

/// Words hashed by one `hash_step` call: a callback costs more than
/// hashing a word, and four keep the callback small to verify.
const STEP_WORDS: usize = 4;

/// A 128-bit hash of everything a record says except who said it (pid,
/// tid, comm), the descriptor numbers (the directories they named are in
/// the walks) and a successful result's value (a new fd's number).
#[inline(always)]
fn hash(buf: *mut EventBuf, len: usize) -> Option<[u64; 2]> {
    let h = unsafe { &(*buf).header };
    hash_parts(
        &RecordKey {
            kind: h.kind,
            abi: h.abi,
            syscall: h.syscall,
            flags: h.flags,
            ret: h.ret,
            arg_flags: h.arg_flags,
            arg_flags2: h.arg_flags2,
        },
        &h.sections,
        len,
    )
}

/// The header fields a record's hash covers.
pub struct RecordKey {
    pub kind: u8,
    pub abi: u8,
    pub syscall: u16,
    pub flags: u32,
    pub ret: i64,
    pub arg_flags: u64,
    pub arg_flags2: u64,
}

/// The hash of a record with these header fields and sections whose
/// `len` bytes of data are in this CPU's scratch record.
#[inline(always)]
pub fn hash_parts(
    k: &RecordKey,
    sections: &[Section; section::COUNT],
    len: usize,
) -> Option<[u64; 2]> {
    let s = HASH.get_ptr_mut(0)?;
    let ret = if k.ret < 0 { k.ret as u64 } else { 0 };
    let head = [
        k.kind as u64 | (k.abi as u64) << 8 | (k.syscall as u64) << 16 | (k.flags as u64) << 32,
        ret,
        k.arg_flags,
        k.arg_flags2,
        len as u64,
    ];
    let (mut h1, mut h2) = (K2, K1);
    for w in head {
        h1 = mix(h1, w, K1);
        h2 = mix(h2, w.rotate_left(17), K2);
    }
    for sec in sections {
        let w = sec.len as u64
            | (sec.cross as u64) << 16
            | (sec.end as u64) << 32
            | (sec.magic as u64).rotate_left(40);
        h1 = mix(h1, w, K1);
        h2 = mix(h2, w.rotate_left(17), K2);
    }
    let _ = s;
    hash_data(h1, h2, len)
}

/// Continues the hash `(h1, h2)` over `words`, then over the first `len`
/// bytes of this CPU's scratch record's data.
#[inline(always)]
pub fn hash_with(words: &[u64], len: usize) -> Option<[u64; 2]> {
    let (mut h1, mut h2) = (K1, K2);
    for &w in words {
        h1 = mix(h1, w, K1);
        h2 = mix(h2, w.rotate_left(17), K2);
    }
    hash_data(h1, h2, len)
}

#[inline(always)]
fn hash_data(mut h1: u64, mut h2: u64, len: usize) -> Option<[u64; 2]> {
    if len <= SHORT {
        // Most records are short: hashed inline, without a callback per
        // word.
        let buf = scratch()?;
        let d = unsafe { (*buf).data.as_ptr() };
        let mut i = 0;
        while i < SHORT / 8 && i * 8 < len {
            let mut w = unsafe { core::ptr::read_unaligned(d.add(i * 8) as *const u64) };
            let left = len - i * 8;
            if left < 8 {
                w &= (1u64 << (left * 8)) - 1;
            }
            h1 = mix(h1, w, K1);
            h2 = mix(h2, w.rotate_left(17), K2);
            i += 1;
        }
        return Some([h1, h2]);
    }
    let s = HASH.get_ptr_mut(0)?;
    unsafe {
        (*s).h1 = h1;
        (*s).h2 = h2;
        (*s).len = len as u64;
        bpf_loop(
            len.div_ceil(8 * STEP_WORDS) as u32,
            hash_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        Some([(*s).h1, (*s).h2])
    }
}
