//! Maps and load-time globals shared by all programs.
use aya_ebpf::{
    Global,
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{HashMap, PerCpuArray, ProgramArray, RingBuf},
};
use tracer_common::{Config, DEDUP_PATH, EventBuf, loss, stats};

#[unsafe(no_mangle)]
pub static CONFIG: Global<Config> = Global::new(Config {
    scope_mode: 0,
    cgroup_level: 0,
    cgroup_id: 0,
    ringbuf_wakeup_bytes: 0,
    arm_on_foreign_exec: 0,
    host_mntns: 0,
    offsets: tracer_common::KernelOffsets {
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
        qstr_name: 0,
        vfsmount_root: 0,
        mount_mnt: 0,
        mount_parent: 0,
        mount_mountpoint: 0,
        file_path: 0,
        files_fdt: 0,
        fdt_fd: 0,
        fdt_max_fds: 0,
        task_pid: 0,
        bprm_filename: 0,
        regs_arg: [0; 6],
        task_nsproxy: 0,
        nsproxy_mnt_ns: 0,
        mntns_inum: 0,
        _pad: 0,
    },
});

/// A syscall seen at entry, waiting for its exit. Keyed by pid_tgid.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Inflight {
    pub syscall: u8,
    pub _pad: [u8; 3],
    pub dirfd: i32,
    /// User pointer to the path argument (0 for fchdir).
    pub path: u64,
    pub flags: u64,
    /// Syscall-specific: `struct open_how *` for openat2.
    pub aux: u64,
    /// chdir only: the working directory before the call, which a
    /// relative argument is resolved against (at exit it has changed).
    pub cwd_mnt: u64,
    pub cwd_dentry: u64,
}

/// Identity of one access for deduplication: the same path string,
/// resolved from the same directory, with the same kind and result.
#[repr(C)]
pub struct DedupKey {
    /// Dentry of the base directory (relative paths) or of the root.
    pub base: u64,
    /// Syscall class and intent, see `syscalls::dedup_kind`.
    pub kind: u32,
    /// 0 on success, -errno on failure.
    pub ret: i32,
    pub path: [u8; DEDUP_PATH],
}

/// Work left for the `finish` program: directory walks and argv. Kept
/// in map memory so `finish` is verified once, whatever path led to it.
#[repr(C)]
pub struct Pending {
    /// Where the variable data written so far ends.
    pub pos: u64,
    pub root_mnt: u64,
    pub root_dentry: u64,
    /// Base directory of a relative path (dentry 0: none).
    pub base_mnt: u64,
    pub base_dentry: u64,
    /// File the new image runs (dentry 0: none).
    pub exe_mnt: u64,
    pub exe_dentry: u64,
    pub argv_start: u64,
    pub argv_end: u64,
}

/// A directory walk in progress (see `kernel::walk`).
#[repr(C)]
pub struct WalkCursor {
    pub pos: u64,
    pub mnt: u64,
    pub dentry: u64,
    pub mount: u64,
    pub root_mnt: u64,
    pub root_dentry: u64,
    pub end: u64,
}

#[map]
pub static WALK: PerCpuArray<WalkCursor> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static PENDING: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: the `finish` program.
#[map]
pub static FINISH: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map]
pub static INFLIGHT: HashMap<u64, Inflight> = HashMap::with_max_entries(16384, 0);

#[map]
/// Not preallocated: creating a preallocated map of this size cost ~9 ms
/// of every run's start-up. When it is full, new accesses are simply not
/// deduplicated (reported every time), never lost.
pub static DEDUP: HashMap<DedupKey, u8> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// Container mode: thread groups that have exec'd inside the container
/// (see `Config::arm_on_foreign_exec`), and their descendants.
#[map]
pub static ARMED: HashMap<u32, u8> = HashMap::with_max_entries(32768, 0);

#[map]
pub static SCOPE_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(32768, 0);

#[map]
pub static SCRATCH: PerCpuArray<EventBuf> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static KEY_SCRATCH: PerCpuArray<DedupKey> = PerCpuArray::with_max_entries(1, 0);

/// Every syscall number made in scope, one bit each (per CPU; userspace
/// ORs them).
#[map]
pub static SYSCALL_BITS: PerCpuArray<[u64; tracer_common::SYSCALL_WORDS]> =
    PerCpuArray::with_max_entries(1, 0);

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
