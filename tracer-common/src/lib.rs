//! The event ABI between the eBPF programs (`tracer-ebpf`) and the userspace
//! collector (`tracer`). Everything here is `#[repr(C)]` and plain data: the
//! kernel side writes it into the ring buffer, userspace decodes it.
#![no_std]

/// Longest path the kernel accepts, NUL included.
pub const PATH_MAX: usize = 4096;
/// Longest single path component the kernel accepts, plus its NUL.
pub const NAME_BUF: usize = 256;
/// Bytes of variable data after the header. The kernel writes path
/// components at offsets masked with [`DATA_WALK_MASK`] and reads at most
/// [`NAME_BUF`] (or [`ARGV_MAX`]) from there, so the buffer is sized to hold
/// the largest masked offset plus the largest read.
pub const DATA_SIZE: usize = 16384;
pub const DATA_WALK_MASK: usize = 8191;
/// Where the walk of a base directory must stop to leave room for the rest.
pub const DATA_WALK_LIMIT: usize = 8192 - NAME_BUF;
/// Bytes of argv recorded for an exec.
pub const ARGV_MAX: usize = 4096;
/// Deepest directory walk, in components plus mount crossings.
pub const WALK_MAX_DEPTH: u32 = 1024;
/// Bytes of a path used as the in-kernel deduplication key; longer paths are
/// never deduplicated (always reported).
pub const DEDUP_PATH: usize = 240;

/// Native syscall numbers of the recorded syscalls on the architectures
/// `trace` supports (`None`: the architecture has no such syscall).
pub mod nr {
    #[allow(unused_imports)]
    use super::Syscall;

    #[cfg(any(target_arch = "x86_64", bpf_target_arch = "x86_64"))]
    pub const TABLE: [(i64, Syscall); 17] = [
        (2, Syscall::Open),
        (257, Syscall::Openat),
        (437, Syscall::Openat2),
        (85, Syscall::Creat),
        (4, Syscall::Stat),
        (6, Syscall::Lstat),
        (262, Syscall::Newfstatat),
        (332, Syscall::Statx),
        (21, Syscall::Access),
        (269, Syscall::Faccessat),
        (439, Syscall::Faccessat2),
        (89, Syscall::Readlink),
        (267, Syscall::Readlinkat),
        (80, Syscall::Chdir),
        (81, Syscall::Fchdir),
        (59, Syscall::Execve),
        (322, Syscall::Execveat),
    ];

    /// The generic table (arm64, riscv64): no legacy open/stat/access.
    #[cfg(any(
        target_arch = "aarch64",
        target_arch = "riscv64",
        bpf_target_arch = "aarch64",
        bpf_target_arch = "riscv64"
    ))]
    pub const TABLE: [(i64, Syscall); 11] = [
        (56, Syscall::Openat),
        (437, Syscall::Openat2),
        (79, Syscall::Newfstatat),
        (291, Syscall::Statx),
        (48, Syscall::Faccessat),
        (439, Syscall::Faccessat2),
        (78, Syscall::Readlinkat),
        (49, Syscall::Chdir),
        (50, Syscall::Fchdir),
        (221, Syscall::Execve),
        (281, Syscall::Execveat),
    ];
}

/// Words of the per-CPU syscall bitmap: numbers 0..512.
pub const SYSCALL_WORDS: usize = 8;

/// `AT_FDCWD` as passed by userspace in a dirfd argument.
pub const AT_FDCWD: i32 = -100;

/// The syscalls `trace` records. The kernel reports this id, not the
/// architecture's syscall number, so the ABI is the same everywhere.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Open = 1,
    Openat = 2,
    Openat2 = 3,
    Creat = 4,
    Stat = 5,
    Lstat = 6,
    Newfstatat = 7,
    Statx = 8,
    Access = 9,
    Faccessat = 10,
    Faccessat2 = 11,
    Readlink = 12,
    Readlinkat = 13,
    Chdir = 14,
    Fchdir = 15,
    Execve = 16,
    Execveat = 17,
}

impl Syscall {
    pub const ALL: [Syscall; 17] = [
        Syscall::Open,
        Syscall::Openat,
        Syscall::Openat2,
        Syscall::Creat,
        Syscall::Stat,
        Syscall::Lstat,
        Syscall::Newfstatat,
        Syscall::Statx,
        Syscall::Access,
        Syscall::Faccessat,
        Syscall::Faccessat2,
        Syscall::Readlink,
        Syscall::Readlinkat,
        Syscall::Chdir,
        Syscall::Fchdir,
        Syscall::Execve,
        Syscall::Execveat,
    ];

    pub fn from_u8(v: u8) -> Option<Syscall> {
        Syscall::ALL.iter().copied().find(|s| *s as u8 == v)
    }

    /// The kernel's name for it (`newstat`, as in `sys_enter_newstat`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Syscall::Open => "open",
            Syscall::Openat => "openat",
            Syscall::Openat2 => "openat2",
            Syscall::Creat => "creat",
            Syscall::Stat => "newstat",
            Syscall::Lstat => "newlstat",
            Syscall::Newfstatat => "newfstatat",
            Syscall::Statx => "statx",
            Syscall::Access => "access",
            Syscall::Faccessat => "faccessat",
            Syscall::Faccessat2 => "faccessat2",
            Syscall::Readlink => "readlink",
            Syscall::Readlinkat => "readlinkat",
            Syscall::Chdir => "chdir",
            Syscall::Fchdir => "fchdir",
            Syscall::Execve => "execve",
            Syscall::Execveat => "execveat",
        }
    }

    /// The name users know (`stat`, not `newstat`).
    pub fn name(self) -> &'static str {
        match self {
            Syscall::Stat => "stat",
            Syscall::Lstat => "lstat",
            other => other.kernel_name(),
        }
    }
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The path argument did not fit in `PATH_MAX` and was cut.
    pub const RAW_TRUNCATED: u16 = 1 << 0;
    /// The path argument could not be read from the process's memory.
    pub const RAW_UNREADABLE: u16 = 1 << 1;
    /// `base` holds the directory a relative path was resolved against.
    pub const HAS_BASE: u16 = 1 << 2;
    /// The walk of `base` stopped before the root (too deep or too long).
    pub const BASE_TRUNCATED: u16 = 1 << 3;
    /// `exe` holds the file the new program image runs (execs only).
    pub const HAS_EXE: u16 = 1 << 4;
    pub const EXE_TRUNCATED: u16 = 1 << 5;
    /// `argv` was longer than [`super::ARGV_MAX`] and was cut.
    pub const ARGV_TRUNCATED: u16 = 1 << 6;
    /// The dirfd did not name an open file.
    pub const BAD_DIRFD: u16 = 1 << 7;
    /// The base walk ended at the filesystem root of a mount that is not
    /// reachable from the process's root (e.g. a dirfd opened before chroot).
    pub const BASE_OUTSIDE_ROOT: u16 = 1 << 8;
}

/// Fixed part of every ring-buffer record. Variable data follows in this
/// order: `raw` (`raw_len` bytes, no NUL), `base` (`base_len` bytes of
/// NUL-terminated names, leaf first), `exe` (same form), `argv` (`argv_len`
/// bytes, NUL-separated as in `/proc/PID/cmdline`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// A [`Syscall`] id.
    pub syscall: u8,
    pub _pad: u8,
    pub flags: u16,
    /// Process (thread group) id and thread id, in the initial namespace.
    pub pid: u32,
    pub tid: u32,
    /// `dirfd` argument, or `AT_FDCWD`.
    pub dirfd: i32,
    /// The syscall's return value: >= 0 success, -errno failure.
    pub ret: i64,
    /// `open` flags, `AT_*` flags or the `access` mode, per syscall.
    pub arg_flags: u64,
    pub raw_len: u16,
    pub base_len: u16,
    pub exe_len: u16,
    pub argv_len: u16,
    pub comm: [u8; 16],
}

pub const HEADER_SIZE: usize = core::mem::size_of::<EventHeader>();

/// A whole record as built in per-CPU scratch memory before it is copied
/// (header plus the used part of `data`) into the ring buffer.
#[repr(C)]
pub struct EventBuf {
    pub header: EventHeader,
    pub data: [u8; DATA_SIZE],
}

/// Indexes of the per-CPU `LOSS` counters.
pub mod loss {
    /// The ring buffer was full: an event was dropped.
    pub const RINGBUF_FULL: u32 = 0;
    /// Too many syscalls in flight: one was not followed to its exit.
    pub const INFLIGHT_FULL: u32 = 1;
    /// Scratch memory was unavailable (should not happen).
    pub const NO_SCRATCH: u32 = 2;
    /// The tail call into the `finish` program failed.
    pub const TAIL_CALL: u32 = 3;
    /// Another task on the same CPU reused the scratch record while this
    /// one was being built (possible on preemptible kernels): dropped
    /// rather than sent mixed up.
    pub const CLOBBERED: u32 = 4;
    pub const COUNT: u32 = 5;
    pub const NAMES: [&str; COUNT as usize] = [
        "ringbuf_full",
        "inflight_full",
        "no_scratch",
        "tail_call_failed",
        "scratch_clobbered",
    ];
}

/// Indexes of the per-CPU `STATS` counters.
pub mod stats {
    /// Syscalls in scope that finished and were looked at.
    pub const SEEN: u32 = 0;
    /// Of those, dropped because the same access was already reported.
    pub const DEDUPLICATED: u32 = 1;
    /// Records written to the ring buffer.
    pub const EMITTED: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// How the kernel side decides whether the current task is traced.
pub mod scope_mode {
    /// Tasks whose cgroup v2 ancestor at `cgroup_level` is `cgroup_id`.
    pub const CGROUP: u32 = 1;
    /// Tasks whose thread group id is in the `SCOPE_PIDS` map; children
    /// are added on fork.
    pub const PIDS: u32 = 2;
}

/// Byte offsets of kernel struct members, read from BTF by the loader
/// (tracepoint programs cannot rely on CO-RE here).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOffsets {
    pub task_fs: u32,
    pub task_files: u32,
    pub task_mm: u32,
    pub mm_exe_file: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub fs_root: u32,
    pub fs_pwd: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_name: u32,
    pub qstr_name: u32,
    pub vfsmount_root: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub file_path: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    pub task_pid: u32,
    pub bprm_filename: u32,
    /// Where syscall arguments 0..6 sit in `struct pt_regs`.
    pub regs_arg: [u32; 6],
    pub task_nsproxy: u32,
    pub nsproxy_mnt_ns: u32,
    /// `mnt_namespace.ns.inum`: the number `/proc/PID/ns/mnt` shows.
    pub mntns_inum: u32,
    pub _pad: u32,
}

/// Load-time configuration, a read-only global of the eBPF object.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    pub scope_mode: u32,
    pub cgroup_level: u32,
    pub cgroup_id: u64,
    /// Wake the reader when more than this many bytes are waiting; below
    /// it the reader finds records on its own polling timer.
    pub ringbuf_wakeup_bytes: u64,
    /// Container mode: a task in scope is traced only once it (or an
    /// ancestor) has exec'd in a mount namespace other than `host_mntns`,
    /// so the runtime's own work (`runc run`, `runc init`) is left out.
    pub arm_on_foreign_exec: u32,
    pub host_mntns: u32,
    pub offsets: KernelOffsets,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding.
    unsafe impl aya::Pod for super::Config {}
}
