//! Maps and load-time globals shared by all programs.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, ProgramArray, RingBuf},
};
use tracer_common::{
    Config, EventBuf, KernelOffsets, RunConfig, SPECS_LEN, ScopeRoot, StartTime, SyscallSpec,
    URING_OPS, UnobservedKey, UringSpec, UringSpecs, abi, loss, stats,
};

const ZERO_OFFSETS: KernelOffsets = KernelOffsets {
    task_fs: 0,
    task_files: 0,
    task_mm: 0,
    mm_exe_file: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    fs_root: 0,
    fs_pwd: 0,
    path_mnt: 0,
    path_dentry: 0,
    dentry_parent: 0,
    dentry_name: 0,
    dentry_inode: 0,
    dentry_sb: 0,
    qstr_name: 0,
    qstr_hash_len: 0,
    sb_magic: 0,
    sb_root: 0,
    vfsmount_root: 0,
    mount_mnt: 0,
    mount_parent: 0,
    mount_mountpoint: 0,
    file_path: 0,
    files_fdt: 0,
    fdt_fd: 0,
    fdt_max_fds: 0,
    task_pid: 0,
    task_tgid: 0,
    task_start_boottime: 0,
    bprm_filename: 0,
    bprm_interp: 0,
    bprm_file: 0,
    regs_arg: [[0; 6]; abi::COUNT],
    regs_nr: 0,
    task_nsproxy: 0,
    nsproxy_mnt_ns: 0,
    mntns_inum: 0,
    compat_word: 0,
    compat_mask: 0,
    x32_bit: 0,
    req_opcode: 0,
    req_async_data: 0,
    msghdr_addr: 0,
    filename_name: 0,
    cqe_res: 0,
    uring_known: 0,
    cgroup_root: 0,
    root_hierarchy_id: 0,
    cgroup_level: 0,
    cgroup_ancestors: 0,
    cgroup_kn: 0,
    kn_id: 0,
    task_cgroups: 0,
    css_set_dfl_cgrp: 0,
    cgroup_known: 0,
    fs_seq: 0,
    fs_seq_known: 0,
};

/// Set by the loader (`override_global`). Read one field at a time with
/// [`conf!`]: a copy of the whole struct would not fit the 512-byte stack.
#[unsafe(no_mangle)]
pub static CONFIG: Config = Config {
    scope_mode: 0,
    cgroup_level: 0,
    ringbuf_wakeup_bytes: 0,
    arm: 0,
    host_mntns: 0,
    offsets: ZERO_OFFSETS,
};

/// Set by the loader: what each syscall number records.
#[unsafe(no_mangle)]
pub static SPECS: [SyscallSpec; SPECS_LEN] = [SyscallSpec {
    id: 0,
    class: 0,
    dirfd1: -1,
    path1: -1,
    dirfd2: -1,
    path2: -1,
    flags: -1,
    flags2: -1,
    aux: -1,
    spec_flags: 0,
    _pad: 0,
    _pad2: 0,
    fixed_flags: 0,
}; SPECS_LEN];

/// Set by the loader: what each io_uring opcode names.
#[unsafe(no_mangle)]
pub static URING_SPECS: UringSpecs = [UringSpec::UNKNOWN; URING_OPS];

/// The io_uring spec of `op`.
#[inline(always)]
pub fn uring_spec(op: u8) -> UringSpec {
    // SAFETY: the index is masked into the array.
    unsafe { core::ptr::read_volatile(URING_SPECS.as_ptr().add(op as usize & (URING_OPS - 1))) }
}

/// One field of [`CONFIG`], read so that the compiler cannot fold it to
/// the placeholder value above.
#[macro_export]
macro_rules! conf {
    ($($field:tt)+) => {{
        let p = &raw const $crate::maps::CONFIG.$($field)+;
        #[allow(unused_unsafe)]
        // SAFETY: a read of a plain integer of a static.
        let v = unsafe { core::ptr::read_volatile(p) };
        v
    }};
}

/// The spec for syscall `nr` of `abi`; `id == 0` when it is not recorded.
#[inline(always)]
pub fn spec(abi: u8, nr: u64) -> SyscallSpec {
    let index =
        (usize::from(abi & 1) * tracer_common::SYSCALL_NR_MAX + nr as usize) & (SPECS_LEN - 1);
    // SAFETY: the index is masked into the array.
    unsafe { core::ptr::read_volatile(SPECS.as_ptr().add(index)) }
}

/// A kernel `struct path` plus the inode its dentry held when it was
/// saved, to tell later whether the dentry still names the same file.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct KRef {
    pub mnt: u64,
    pub dentry: u64,
    pub inode: u64,
}

/// A syscall seen at entry, waiting for its exit. Keyed by pid_tgid.
/// Everything a relative path resolves against is read here, at entry:
/// a thread sharing the working directory (CLONE_FS) may change it
/// before the syscall returns.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Inflight {
    pub spec: SyscallSpec,
    pub abi: u8,
    pub _pad: u8,
    pub _pad1: u16,
    /// The thread this entry belongs to (0: the slot is free).
    pub tid: u32,
    /// The syscall number, to check at exit that this entry is its own
    /// (an entry whose exit was never seen must not be taken for a later
    /// syscall's).
    pub nr: u32,
    /// The capture that saved it (`RunConfig::epoch`): the slots of kept
    /// programs may still hold an earlier capture's entries.
    pub epoch: u32,
    pub dirfd1: i32,
    pub dirfd2: i32,
    pub bad_dirfd: u32,
    /// `fs_struct.seq` at entry (`kernel::fs_seq_of`).
    pub fs_seq: u32,
    /// User pointers to the path arguments (0: none).
    pub path1: u64,
    pub path2: u64,
    pub flags: u64,
    pub flags2: u64,
    /// Class-specific: `struct open_how *`, sockaddr length, socketcall
    /// argument block.
    pub aux: u64,
    /// Where a relative `path1` / `path2` starts.
    pub base1: KRef,
    pub base2: KRef,
    /// The task's root at entry (where an absolute path starts).
    pub root: KRef,
    /// FD_ARG: the file the descriptor argument names.
    pub file: KRef,
}

/// What the entry steps work from (sys_enter's own per-CPU slot).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct EntryWork {
    /// The thread's `INFLIGHT` slot being filled.
    pub slot: u32,
    pub _pad: u32,
    /// The first 16 words of the syscall's `struct pt_regs`.
    pub regs: [u64; 16],
}

#[map]
pub static ENTRY: PerCpuArray<EntryWork> = PerCpuArray::with_max_entries(1, 0);

/// Work for the `finish` program, in map memory so that `finish` is
/// verified once whatever led to it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Pending {
    /// Where the data written so far ends.
    pub pos: u64,
    /// Walks still to do, in section order (dentry 0: none).
    pub base1: KRef,
    pub obs: KRef,
    pub base2: KRef,
    pub exe: KRef,
    /// Where walks stop: the scope's root (or the task's root while the
    /// scope's is not known yet) and its superblock.
    pub stop_dentry: u64,
    pub root_sb: u64,
    pub argv_start: u64,
    pub argv_end: u64,
    /// Kernel string: a `#!` interpreter's name.
    pub interp: u64,
    /// Not deduplicated (io_uring halves, which only make sense together).
    pub no_dedup: u32,
    pub _pad: u32,
    /// io_uring: the dirfds its two names start from and whether each name
    /// is absolute (bit 0: first, bit 1: second; bit 2: second present).
    pub uring_dfd: [i32; 2],
    pub uring_names: u64,
    /// `FAST`: the key to mark once the record is sent (`fast` 0: none).
    pub fast: u64,
    pub fast_key: [u64; 2],
    pub fast_seen: FastSeen,
}

/// A directory walk in progress (see `kernel::walk`).
#[repr(C)]
pub struct WalkCursor {
    pub pos: u64,
    pub start: u64,
    pub mnt: u64,
    pub dentry: u64,
    pub mount: u64,
    pub stop_dentry: u64,
    pub root_sb: u64,
    pub on_root_sb: u64,
    pub end: u64,
    pub cross: u64,
    pub magic: u64,
    pub first: u64,
}

/// The running hash of a record (see `finish::hash`).
#[repr(C)]
pub struct HashState {
    pub h1: u64,
    pub h2: u64,
    pub len: u64,
}

#[map]
pub static WALK: PerCpuArray<WalkCursor> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static HASH: PerCpuArray<HashState> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// A syscall's exit in progress: its saved entry, copied out of
/// `INFLIGHT`, and what the steps of `syscalls::exit_step` found.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ExitWork {
    /// The thread's `INFLIGHT` slot (its saved entry).
    pub slot: u32,
    pub _pad0: u32,
    pub ret: i64,
    pub arg_flags2: u64,
    /// The first path (for socketcall, the sockaddr it points to).
    pub path1: u64,
    pub sock_len: u64,
    pub fl: u32,
    /// What another thread changed while the syscall ran, so that a base
    /// saved at entry may not be the kernel's (`MOVED_*` bits).
    pub moved: u32,
    pub raw1: u64,
    pub raw2: u64,
    pub abs1: u64,
    /// Set when the syscall turned out to name nothing to record.
    pub skip: u64,
    /// The first path's length plus one when `fast_key` has already read
    /// it whole into the scratch record (0: not read yet).
    pub read1: u64,
    /// The `FAST` key and what its dentries look like, when this syscall
    /// can be looked up there (`fast` 0: it cannot).
    pub fast: u64,
    pub fast_key: [u64; 2],
    pub fast_seen: FastSeen,
    /// The file a new descriptor names, when `fast_key` has read it
    /// already (dentry 0: not read): six kernel reads not made twice.
    pub obs: KRef,
}

/// sys_exit's own per-CPU slot.
#[map]
pub static EXITING: PerCpuArray<ExitWork> = PerCpuArray::with_max_entries(1, 0);

/// An io_uring submission being decoded (the submit program's own
/// per-CPU slot).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UringWork {
    pub req: u64,
    pub spec: UringSpec,
    pub sun: u64,
    pub sun_len: u64,
    /// `sun` is the caller's memory, not the kernel's copy.
    pub sun_user: u64,
    pub slot: u64,
    pub n1: u64,
    pub n2: u64,
    pub skip: u64,
}

impl Default for UringWork {
    fn default() -> UringWork {
        UringWork {
            req: 0,
            spec: UringSpec::UNKNOWN,
            sun: 0,
            sun_len: 0,
            sun_user: 0,
            slot: 0,
            n1: 0,
            n2: 0,
            skip: 0,
        }
    }
}

#[map]
pub static URING_WORK: PerCpuArray<UringWork> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: the `finish` program.
#[map]
pub static FINISH: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Syscalls between entry and exit, one slot per thread id modulo the
/// size: an array, not a hash map, because three hash operations per
/// syscall were a tenth of the cost of tracing. Thread ids are handed out
/// in order, so two threads share a slot only when they are 16384 ids
/// apart and both inside a syscall at once; the later entry then takes the
/// slot and the loss is counted (`loss::INFLIGHT_FULL`), never silent.
pub const INFLIGHT_SLOTS: u32 = 16384;

#[map]
pub static INFLIGHT: Array<Inflight> = Array::with_max_entries(INFLIGHT_SLOTS, 0);

/// The `INFLIGHT` slot of thread `tid`.
#[inline(always)]
pub fn inflight_slot(tid: u32) -> Option<*mut Inflight> {
    INFLIGHT.get_ptr_mut(tid & (INFLIGHT_SLOTS - 1))
}

/// Records already sent, by a 128-bit hash of everything they say but
/// who said it: a direct-mapped cache (slot = low bits of the hash, the
/// whole hash stored). Marked only once a record is in the ring buffer.
/// A plain array rather than a hash map: a hash map insert allocates and
/// takes a bucket lock, and was half the programs' time on file-heavy
/// work. Two records sharing a slot evict each other; an evicted record
/// is only sent again (userspace keeps each once), never lost.
#[map]
pub static DEDUP: Array<[u64; 2]> = Array::with_max_entries(DEDUP_SLOTS, 0);
pub const DEDUP_SLOTS: u32 = 1 << 18;

/// A key as `DEDUP` and `FAST` keep it: mixed with this capture's number,
/// so that what an earlier capture of kept programs sent is not taken for
/// sent by this one (and its slot is told apart at the first compare).
#[inline(always)]
pub fn salted(hash: [u64; 2]) -> [u64; 2] {
    [
        hash[0] ^ u64::from(epoch()).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        hash[1],
    ]
}

/// The record with this hash was sent (and its slot not taken since).
#[inline(always)]
pub fn dedup_has(key: &[u64; 2]) -> bool {
    // An empty slot holds zeros: a zero hash is never taken as seen.
    if key[0] | key[1] == 0 {
        return false;
    }
    let Some(s) = DEDUP.get_ptr(key[0] as u32 & (DEDUP_SLOTS - 1)) else {
        return false;
    };
    unsafe { (*s)[0] == key[0] && (*s)[1] == key[1] }
}

#[inline(always)]
pub fn dedup_mark(key: &[u64; 2]) {
    if let Some(s) = DEDUP.get_ptr_mut(key[0] as u32 & (DEDUP_SLOTS - 1)) {
        unsafe {
            (*s)[0] = key[0];
            (*s)[1] = key[1];
        }
    }
}

/// Slot 0: bumped whenever any task on the machine makes a syscall that
/// can change what existing names lead to (`spec_flags::NS_CHANGE`, an
/// io_uring rename): what `FAST` remembers holds only under one value.
#[map]
pub static GEN: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn generation() -> u64 {
    GEN.get(0).copied().unwrap_or(0)
}

#[inline(always)]
pub fn bump_generation() {
    if let Some(g) = GEN.get_ptr_mut(0) {
        // A lost increment under a race still changes the value.
        unsafe { *g += 1 };
    }
}

/// What a dentry looked like when a record naming it was sent: if it
/// still does, and no name changed anywhere since (`GEN`), a walk of it
/// gives the same names again.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct DentryLook {
    pub inode: u64,
    pub parent: u64,
    pub hash_len: u64,
}

/// Value of `FAST`.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct FastSeen {
    pub generation: u64,
    pub obs: DentryLook,
    pub base: DentryLook,
}

/// Records already sent, by a key of what determines them before any
/// walk: the header's fields, the path as passed, and the identity of the
/// dentries its walks would start from (see `syscalls::fast_key`). A hit
/// whose dentries still look the same and whose generation is current is
/// a repeat, dropped before the record is built. Marked only once sent.
/// Direct-mapped like `DEDUP`. A slot holds the key and a 64-bit hash of
/// the key with what the dentries looked like (`FastSeen`): a hit needs
/// both to match. A slot read while another CPU rewrites it (the key of
/// one record, the hash of another) matches nothing; an empty one
/// neither (the hash is never 0).
#[map]
pub static FAST: Array<FastSlot> = Array::with_max_entries(FAST_SLOTS, 0);
pub const FAST_SLOTS: u32 = 1 << 16;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct FastSlot {
    pub key: [u64; 2],
    pub seen: u64,
}

#[inline(always)]
fn seen_hash(key: &[u64; 2], seen: &FastSeen) -> u64 {
    let words = [
        key[0],
        key[1],
        seen.generation,
        seen.obs.inode,
        seen.obs.parent,
        seen.obs.hash_len,
        seen.base.inode,
        seen.base.parent,
        seen.base.hash_len,
    ];
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for w in words {
        let x = (h ^ w).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        h = x ^ (x >> 29);
    }
    h | 1
}

/// A record with this key was sent while its dentries looked as they do
/// now (`seen`).
#[inline(always)]
pub fn fast_hit(key: &[u64; 2], seen: &FastSeen) -> bool {
    let Some(s) = FAST.get_ptr(key[0] as u32 & (FAST_SLOTS - 1)) else {
        return false;
    };
    let s = unsafe { &*s };
    s.key[0] == key[0] && s.key[1] == key[1] && s.seen == seen_hash(key, seen)
}

#[inline(always)]
pub fn fast_mark(key: &[u64; 2], seen: &FastSeen) {
    let Some(s) = FAST.get_ptr_mut(key[0] as u32 & (FAST_SLOTS - 1)) else {
        return;
    };
    unsafe {
        (*s).key[0] = key[0];
        (*s).key[1] = key[1];
        (*s).seen = seen_hash(key, seen);
    }
}

/// Thread groups being traced (`Config::arm`), by tgid, with their start
/// time. Children of armed processes are armed at fork.
// Inserted at fork and exec only: not preallocated, which would cost
// start-up time for room rarely used.
#[map]
pub static ARMED: HashMap<u32, StartTime> = HashMap::with_max_entries(32768, BPF_F_NO_PREALLOC);

#[map]
pub static SCOPE_PIDS: HashMap<u32, StartTime> =
    HashMap::with_max_entries(32768, BPF_F_NO_PREALLOC);

/// Slot 0: this capture's cgroup and target, written by the loader
/// before anything is attached.
#[map]
pub static RUN: Array<RunConfig> = Array::with_max_entries(1, 0);

/// This capture's [`RunConfig`] (zeros if unreadable: no cgroup, no
/// target).
#[inline(always)]
pub fn run() -> RunConfig {
    RUN.get(0).copied().unwrap_or_default()
}

/// [`RunConfig::epoch`].
#[inline(always)]
pub fn epoch() -> u32 {
    RUN.get(0).map_or(0, |r| r.epoch)
}

/// Slot 0: the scope's root, set once by the first armed exec (or by
/// `Config::root_pid`'s first event).
#[map]
pub static ROOT: Array<ScopeRoot> = Array::with_max_entries(1, 0);

/// io_uring requests submitted with a path, waiting for completion:
/// request address -> opcode | slot flag << 16.
#[map]
pub static URING: HashMap<u64, u32> = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// Accesses that could only be counted, not recorded.
#[map]
pub static UNOBSERVED: HashMap<UnobservedKey, u64> =
    HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

/// One record under construction per CPU, indexed by CPU number. A plain
/// array, not a per-CPU one: a per-CPU value is limited to 32 KiB, and a
/// record with two raw paths, three walks and argv needs more. The loader
/// sizes it to the machine's possible CPUs; programs do not migrate while
/// they run.
#[map]
pub static SCRATCH: Array<EventBuf> = Array::with_max_entries(1, 0);

/// This CPU's scratch record.
#[inline(always)]
pub fn scratch() -> Option<*mut EventBuf> {
    let cpu = unsafe { aya_ebpf::helpers::generated::bpf_get_smp_processor_id() };
    SCRATCH.get_ptr_mut(cpu)
}

/// Every syscall number made in scope, one bit each, per ABI (per CPU;
/// userspace ORs them).
#[map]
pub static SYSCALL_BITS: PerCpuArray<[u64; tracer_common::SYSCALL_WORDS]> =
    PerCpuArray::with_max_entries(abi::COUNT as u32, 0);

#[map]
pub static LOSS: PerCpuArray<u64> = PerCpuArray::with_max_entries(loss::COUNT, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT, 0);

#[inline(always)]
fn bump(map: &PerCpuArray<u64>, index: u32) {
    if let Some(p) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn count_loss(index: u32) {
    bump(&LOSS, index);
}

#[inline(always)]
pub fn count_stat(index: u32) {
    bump(&STATS, index);
}

/// Counts an access that could not be recorded.
#[inline(always)]
pub fn count_unobserved(channel: u8, op: u16, pid: u32) {
    let key = UnobservedKey {
        channel,
        _pad: 0,
        op,
        pid,
    };
    if let Some(n) = UNOBSERVED.get_ptr_mut(key) {
        // SAFETY: map value; a lost increment under a race still leaves
        // the count above zero, which is what makes the trace incomplete.
        unsafe { *n += 1 };
        return;
    }
    if UNOBSERVED.insert(key, 1, 0).is_err() {
        count_loss(loss::UNOBSERVED_FULL);
    }
}
