//! The event ABI between the eBPF programs (`tracer-ebpf`) and the userspace
//! collector (`tracer`). Everything here is `#[repr(C)]` and plain data: the
//! kernel side writes it into the ring buffer, userspace decodes it.
//!
//! The kernel side knows no syscall numbers and no syscall names: the loader
//! hands it a table ([`SyscallSpec`] per ABI and number, built from
//! [`syscalls::TABLE`]) that says which arguments of a syscall hold paths,
//! directory descriptors and flags. So one eBPF object serves every
//! architecture and both ABIs of one (x86_64 and ia32).
#![cfg_attr(not(feature = "user"), no_std)]

#[cfg(feature = "user")]
pub mod abis;
pub mod syscalls;

/// Longest path the kernel accepts, NUL included.
pub const PATH_MAX: usize = 4096;
/// Longest single path component the kernel accepts, plus its NUL.
pub const NAME_BUF: usize = 256;
/// Record data is written at offsets masked with this, so the verifier can
/// bound every write; [`DATA_SIZE`] leaves room for the largest single read
/// (a raw path of [`PATH_MAX`]) past the largest masked offset.
pub const DATA_MASK: usize = 32767;
pub const DATA_SIZE: usize = DATA_MASK + 1 + PATH_MAX;
/// Where a directory walk stops to leave room for the sections after it.
pub const WALK_LIMIT: usize = DATA_MASK + 1 - 2 * PATH_MAX;
/// Bytes of argv recorded for an exec.
pub const ARGV_MAX: usize = 4096;
/// Deepest directory walk, in components plus mount crossings.
pub const WALK_MAX_DEPTH: u32 = 1024;

/// Syscall numbers per ABI in the spec table: 0..512.
pub const SYSCALL_NR_MAX: usize = 512;
/// Words of one ABI's syscall bitmap.
pub const SYSCALL_WORDS: usize = SYSCALL_NR_MAX / 64;

/// `AT_FDCWD` as passed by userspace in a dirfd argument.
pub const AT_FDCWD: i32 = -100;

/// Syscall ABIs of one architecture.
pub mod abi {
    /// x86_64 on x86_64, aarch64 on aarch64.
    pub const NATIVE: u8 = 0;
    /// ia32 on x86_64 (`-m32` binaries, `int 0x80`), aarch32 on aarch64.
    pub const COMPAT: u8 = 1;
    pub const COUNT: usize = 2;
}

/// What the kernel side does with a recorded syscall.
pub mod class {
    /// Paths and flags only.
    pub const PLAIN: u8 = 0;
    /// Returns a file descriptor: the file it refers to is observed.
    pub const FD_RESULT: u8 = 1;
    /// Acts on the descriptor in argument `dirfd1` (fchdir, getdents):
    /// that file is observed.
    pub const FD_ARG: u8 = 2;
    /// execve/execveat: reported by `sched_process_exec` when it succeeds.
    pub const EXEC: u8 = 3;
    /// connect/bind: `path1` is a `struct sockaddr *`, `aux` its length.
    pub const SOCKADDR: u8 = 4;
    /// openat2: like [`FD_RESULT`], flags and resolve come from the
    /// `struct open_how *` in argument `aux`.
    pub const OPENAT2: u8 = 5;
    /// mount: `path2` (the source) is a path only for a bind or a move.
    pub const MOUNT: u8 = 6;
    /// ia32 socketcall(call, args): bind (2) and connect (3) are decoded
    /// like [`SOCKADDR`] from the argument block; `arg_flags` is the call.
    pub const SOCKETCALL: u8 = 7;
    /// sendmsg/sendmmsg: `path1` is a `struct msghdr *` (the first
    /// `struct mmsghdr`'s for sendmmsg, whose `vlen` is in `aux`); its
    /// `msg_name` and `msg_namelen` are decoded like [`SOCKADDR`]. ia32
    /// socketcall's sendto (11), sendmsg (16) and sendmmsg (20) are
    /// decoded the same way.
    pub const MSGHDR: u8 = 8;
}

/// Which arguments of a syscall hold what, for one ABI. Argument indexes
/// are 0..6; [`NONE`](SyscallSpec::NONE) means absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallSpec {
    /// Index + 1 into [`syscalls::TABLE`]; 0: not recorded.
    pub id: u16,
    pub class: u8,
    pub dirfd1: i8,
    pub path1: i8,
    pub dirfd2: i8,
    pub path2: i8,
    pub flags: i8,
    pub flags2: i8,
    pub aux: i8,
    /// [`spec_flags`] bits.
    pub spec_flags: u8,
    // Integers, not byte arrays: a byte array's copy or zeroing compiles
    // to a call of a byte loop in BPF.
    pub _pad: u8,
    pub _pad2: u32,
    /// Flags implied by the syscall itself (lstat means no-follow).
    pub fixed_flags: u64,
}

impl SyscallSpec {
    pub const NONE: i8 = -1;
}

/// Bits of [`SyscallSpec::spec_flags`].
pub mod spec_flags {
    /// `path2` is not looked up: it is the content of a new symlink (or a
    /// mount's filesystem type, when its source is not a path).
    pub const PATH2_CONTENT: u8 = 1 << 0;
    /// The syscall can change what existing names lead to (rename, mount,
    /// umount, move_mount, pivot_root): whoever makes it, names the kernel
    /// side remembered may be stale (`GEN`).
    pub const NS_CHANGE: u8 = 1 << 1;
    /// On success the file to observe is the caller's new working
    /// directory (chdir): what the kernel reached, even through a bind
    /// mount the name alone cannot show. The call changes it once: one
    /// step of `fs_struct.seq` (2) on success is its own.
    pub const RESULT_PWD: u8 = 1 << 2;
    /// On success the file to observe is the caller's new root (chroot).
    pub const RESULT_ROOT: u8 = 1 << 3;
    /// The syscall may change the cwd or root of tasks in any number of
    /// steps (fchdir, whose name is its descriptor's; pivot_root, every
    /// task's that had the old root): `fs_struct.seq` is not checked.
    pub const FS_CHANGE: u8 = 1 << 4;
}

/// Kinds of ring-buffer record.
pub mod kind {
    /// A syscall, reported at its exit.
    pub const SYSCALL: u8 = 1;
    /// A successful exec, from `sched_process_exec`.
    pub const EXEC: u8 = 2;
    /// An io_uring request with a path, at submission (`cookie` = request).
    pub const URING_SUBMIT: u8 = 3;
    /// The completion of a request reported by [`URING_SUBMIT`].
    pub const URING_COMPLETE: u8 = 4;
}

/// Sections of a record's variable data, in this order.
pub mod section {
    /// The first path argument as passed (no NUL).
    pub const RAW1: usize = 0;
    /// The second path argument (link and rename targets, mount sources).
    pub const RAW2: usize = 1;
    /// The directory a relative (or `RESOLVE_IN_ROOT`) `RAW1` starts from,
    /// or the task's root when that is not the scope's root: a walk.
    pub const BASE1: usize = 2;
    /// The file the syscall's result (or descriptor argument) refers to:
    /// the name the kernel itself holds for it. A walk.
    pub const OBS: usize = 3;
    pub const BASE2: usize = 4;
    /// Execs: the file the new image runs (`bprm->file`). A walk.
    pub const EXE: usize = 5;
    /// Execs: argv, NUL-separated as in `/proc/PID/cmdline`.
    pub const ARGV: usize = 6;
    /// Execs: the interpreter named by a `#!` line (`bprm->interp`).
    pub const INTERP: usize = 7;
    pub const COUNT: usize = 8;
}

/// How a directory walk ended ([`Section::end`]).
pub mod walk_end {
    /// Not a walk, or nothing walked.
    pub const NONE: u8 = 0;
    /// At the scope's root: the path is whole and relative to it.
    pub const ROOT: u8 = 1;
    /// At the top of the filesystem or mount tree without meeting the
    /// scope's root: the file is not below it. The names are relative to
    /// that top.
    pub const OUTSIDE: u8 = 2;
    /// Out of room or depth: the path is cut.
    pub const TRUNCATED: u8 = 3;
    /// The directory saved at syscall entry was gone by its exit (its
    /// dentry now holds another inode): nothing is recorded for it.
    pub const STALE: u8 = 4;
    /// A file with no place in any tree: a pipe, socket, memfd or other
    /// pseudo file, or a dentry disconnected from its parents (its own
    /// parent, not its mount's root). The names, if any, are those below
    /// that point.
    pub const UNNAMED: u8 = 5;
}

/// One section of a record's data. Walks are written as NUL-terminated
/// names, leaf first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub len: u16,
    /// Walks: offset in this section where the names above the first
    /// mount crossing start (the mount point's own path), or
    /// [`NO_CROSS`](Section::NO_CROSS) when the walk stayed on the scope's
    /// root filesystem.
    pub cross: u16,
    /// A [`walk_end`] value.
    pub end: u8,
    pub _pad: u8,
    pub _pad2: u16,
    /// Walks: `s_magic` of the filesystem the walk started on, when it is
    /// not the scope's root filesystem (0 otherwise).
    pub magic: u32,
}

impl Section {
    pub const NO_CROSS: u16 = u16::MAX;
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The first path argument did not fit in `PATH_MAX` and was cut.
    pub const RAW1_TRUNCATED: u32 = 1 << 0;
    /// The first path argument could not be read from the process.
    pub const RAW1_UNREADABLE: u32 = 1 << 1;
    pub const RAW2_TRUNCATED: u32 = 1 << 2;
    pub const RAW2_UNREADABLE: u32 = 1 << 3;
    /// `BASE1` holds the walk of the directory `RAW1` starts from.
    pub const HAS_BASE1: u32 = 1 << 4;
    /// `RAW1` starts from the directory that holds the `OBS` file: `BASE1`
    /// was not walked again, it is `OBS` without its last name.
    pub const BASE1_IS_OBS_PARENT: u32 = 1 << 5;
    pub const HAS_BASE2: u32 = 1 << 6;
    pub const BASE2_IS_OBS_PARENT: u32 = 1 << 7;
    pub const HAS_OBS: u32 = 1 << 8;
    pub const HAS_EXE: u32 = 1 << 9;
    pub const HAS_INTERP: u32 = 1 << 10;
    pub const ARGV_TRUNCATED: u32 = 1 << 11;
    /// A dirfd argument did not name an open file.
    pub const BAD_DIRFD1: u32 = 1 << 12;
    pub const BAD_DIRFD2: u32 = 1 << 13;
    /// `RAW2` is content (a symlink's target, a mount source that is not
    /// bound), not a path that was looked up.
    pub const RAW2_CONTENT: u32 = 1 << 14;
    /// io_uring: the file was opened into a fixed-file slot, so there is
    /// no descriptor to observe it through.
    pub const FIXED_SLOT: u32 = 1 << 15;
    /// The descriptor the result names was no longer open at syscall exit
    /// (closed by another thread in between).
    pub const OBS_GONE: u32 = 1 << 16;
    /// A sockaddr that is not a filesystem `AF_UNIX` address (abstract,
    /// unnamed, another family): nothing to record.
    pub const NOT_A_PATH: u32 = 1 << 17;
    /// `RAW1` is absolute but goes on past `/proc/self/cwd/` (or
    /// `/proc/thread-self/cwd/`), which the kernel follows to the working
    /// directory: `BASE1` is that directory's walk (absent when it is the
    /// scope's root), and the path goes on from it after the prefix.
    pub const BASE1_IS_CWD: u32 = 1 << 18;
    /// An exec's `RAW1` is the name the kernel made for execveat's relative
    /// (or empty) path, `/dev/fd/N[/name]`, and `BASE1` is descriptor N's
    /// file: not a path the program gave.
    pub const RAW1_IS_FDPATH: u32 = 1 << 19;
}

/// Fixed part of every ring-buffer record; the [`section`]s follow in
/// order, each `sections[i].len` bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// A [`kind`] value.
    pub kind: u8,
    /// An [`abi`] value.
    pub abi: u8,
    /// `SyscallSpec::id` (index + 1 into [`syscalls::TABLE`]); for io_uring
    /// records the `IORING_OP_*` opcode.
    pub syscall: u16,
    pub flags: u32,
    /// Process (thread group) id and thread id, in the initial namespace.
    pub pid: u32,
    pub tid: u32,
    /// The dirfd arguments, or `AT_FDCWD`.
    pub dirfd1: i32,
    pub dirfd2: i32,
    /// The syscall's return value: >= 0 success, -errno failure.
    pub ret: i64,
    /// `open` flags, `AT_*` flags or a mode, per syscall.
    pub arg_flags: u64,
    /// A second flags argument (faccessat2's `AT_*` flags, openat2's
    /// `resolve`, ...).
    pub arg_flags2: u64,
    /// io_uring: the request, which joins a submission to its completion.
    pub cookie: u64,
    pub sections: [Section; section::COUNT],
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
    /// The ring buffer was full: a record was dropped.
    pub const RINGBUF_FULL: u32 = 0;
    /// Too many syscalls in flight: one was not followed to its exit.
    pub const INFLIGHT_FULL: u32 = 1;
    /// Scratch memory was unavailable, or a syscall's registers could
    /// not be read (neither should happen).
    pub const NO_SCRATCH: u32 = 2;
    /// The tail call into the `finish` program failed.
    pub const TAIL_CALL: u32 = 3;
    /// Another task on the same CPU reused the scratch record while this
    /// one was being built (possible on preemptible kernels): dropped
    /// rather than sent mixed up.
    pub const CLOBBERED: u32 = 4;
    /// Too many io_uring requests in flight to follow one to completion.
    pub const URING_FULL: u32 = 5;
    /// The table of unobserved accesses was full: some went uncounted.
    pub const UNOBSERVED_FULL: u32 = 6;
    /// A process could not be added to the table of traced (or armed)
    /// processes: what it did from then on went unseen.
    pub const PROCESS_TABLE_FULL: u32 = 7;
    pub const COUNT: u32 = 8;
    pub const NAMES: [&str; COUNT as usize] = [
        "ringbuf_full",
        "inflight_full",
        "no_scratch",
        "tail_call_failed",
        "scratch_clobbered",
        "uring_inflight_full",
        "unobserved_table_full",
        "process_table_full",
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

/// Channels through which a process can reach files that the kernel side
/// could not record, only count ([`UnobservedKey`]).
pub mod channel {
    /// An io_uring request the kernel side cannot decode.
    pub const IO_URING: u8 = 1;
    /// x32 syscalls (x86_64 with `__X32_SYSCALL_BIT`).
    pub const X32: u8 = 2;
    /// A traced process moved to a cgroup outside the scope: what it does
    /// from then on is not seen. `op` is 0.
    pub const CGROUP_MOVE: u8 = 3;
    /// A sendmmsg message after the first that names an `AF_UNIX` path of
    /// its own: only the first message's is recorded. `op` is 0.
    pub const SENDMMSG: u8 = 4;
}

/// Key of the `UNOBSERVED` counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnobservedKey {
    pub channel: u8,
    pub _pad: u8,
    /// io_uring opcode, syscall number, socketcall call.
    pub op: u16,
    pub pid: u32,
}

/// How the kernel side decides whether the current task is traced.
pub mod scope_mode {
    /// Tasks whose cgroup v2 ancestor at `cgroup_level` is `cgroup_id`.
    pub const CGROUP: u32 = 1;
    /// Tasks whose thread group id is in the `SCOPE_PIDS` map; children
    /// are added on fork.
    pub const PIDS: u32 = 2;
}

/// When a task in scope starts being traced ([`Config::arm`]).
pub mod arm {
    /// At once (`trace attach`: the targets are already running).
    pub const ALWAYS: u32 = 0;
    /// From its first exec, or an ancestor's (`trace run`: what the child
    /// does before it execs the command is trace's own set-up).
    pub const ON_EXEC: u32 = 1;
    /// From its first exec in a mount namespace other than `host_mntns`,
    /// or an ancestor's, so the runtime's own work (`runc run`, `runc
    /// init`) is left out.
    pub const ON_FOREIGN_EXEC: u32 = 2;
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
    pub dentry_inode: u32,
    pub dentry_sb: u32,
    pub qstr_name: u32,
    /// `qstr.hash_len`: the name's hash and length in one word.
    pub qstr_hash_len: u32,
    pub sb_magic: u32,
    /// `super_block.s_root`: a dentry that is its own parent but not this
    /// is cut off from its parents.
    pub sb_root: u32,
    pub vfsmount_root: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub file_path: u32,
    pub files_fdt: u32,
    pub fdt_fd: u32,
    pub fdt_max_fds: u32,
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_start_boottime: u32,
    pub bprm_filename: u32,
    pub bprm_interp: u32,
    pub bprm_file: u32,
    /// Where syscall arguments 0..6 sit in `struct pt_regs`, per ABI.
    pub regs_arg: [[u32; 6]; abi::COUNT],
    /// Where the syscall number sits in `struct pt_regs` at exit
    /// (`orig_ax`, arm64's `syscallno`), to match an exit to its entry.
    pub regs_nr: u32,
    pub task_nsproxy: u32,
    pub nsproxy_mnt_ns: u32,
    /// `mnt_namespace.ns.inum`: the number `/proc/PID/ns/mnt` shows.
    pub mntns_inum: u32,
    /// The task's compat-ABI bit: `*(u32 *)(task + compat_word) &
    /// compat_mask` is set while it makes a compat syscall (x86:
    /// `thread_info.status & TS_COMPAT`). 0 mask: no compat ABI.
    pub compat_word: u32,
    pub compat_mask: u32,
    /// x86_64: `__X32_SYSCALL_BIT`; 0 elsewhere.
    pub x32_bit: u32,
    /// io_uring: `io_kiocb.opcode` and `io_kiocb.async_data` (where a
    /// connect's or bind's address is copied), `io_async_msghdr.addr`.
    pub req_opcode: u32,
    pub req_async_data: u32,
    pub msghdr_addr: u32,
    /// `struct filename.name`.
    pub filename_name: u32,
    /// `struct io_uring_cqe.res`.
    pub cqe_res: u32,
    /// 1 when the io_uring offsets above were found in BTF; 0: every
    /// io_uring request is counted as unobserved.
    pub uring_known: u32,
    /// `cgroup.root`, `cgroup_root.hierarchy_id`, `cgroup.level`,
    /// `cgroup.ancestors` (an array of `struct cgroup *`, Linux 6.1 on),
    /// `cgroup.kn` and `kernfs_node.id`: where a task was moved to, to tell
    /// a move out of the scope.
    pub cgroup_root: u32,
    pub root_hierarchy_id: u32,
    pub cgroup_level: u32,
    pub cgroup_ancestors: u32,
    pub cgroup_kn: u32,
    pub kn_id: u32,
    /// `task_struct.cgroups` and `css_set.dfl_cgrp`: the v2 cgroup a new
    /// child was born into (`clone3(CLONE_INTO_CGROUP)`).
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    /// 1 when those were found; 0: moves out of the scope go unseen.
    pub cgroup_known: u32,
    /// `fs_struct.seq`'s sequence count, which moves on each change of a
    /// task's cwd or root: read at a syscall's entry and exit, it tells
    /// whether another thread sharing them (`CLONE_FS`) changed them in
    /// between, when the kernel may have started from either.
    pub fs_seq: u32,
    /// 1 when `fs_seq` was found.
    pub fs_seq_known: u32,
}

/// Load-time configuration, a read-only global of the eBPF object.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub scope_mode: u32,
    pub cgroup_level: u32,
    /// Wake the reader when more than this many bytes are waiting; below
    /// it the reader finds records on its own polling timer.
    pub ringbuf_wakeup_bytes: u64,
    /// An [`arm`] value.
    pub arm: u32,
    pub host_mntns: u32,
    pub offsets: KernelOffsets,
}

/// What changes from one capture to the next, in the `RUN` map rather
/// than in [`Config`], so that programs verified once can be kept loaded
/// and reused by later captures with other cgroups and targets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RunConfig {
    /// The scope's cgroup (`scope_mode::CGROUP`); 0 matches no task.
    pub cgroup_id: u64,
    /// `arm::ALWAYS`: the process whose root is the scope's root (the
    /// attach target); 0: the first traced task's.
    pub root_pid: u32,
    /// This capture's number, never 0 and never the previous capture's
    /// with the same kept programs: what an earlier capture left in the
    /// maps (in-flight entries, dedup slots) is told by its number.
    pub epoch: u32,
    /// `arm::ON_EXEC`: set by the kernel side at the command's first exec.
    /// Only `trace`'s own set-up precedes it in the scope, so from then on
    /// every task in the scope is the command's: no per-process lookup.
    pub armed: u32,
    pub _pad: u32,
}

/// What each syscall number records, per ABI: `SPECS[abi * 512 + nr]`, a
/// read-only global of its own beside [`Config`].
pub type Specs = [SyscallSpec; SPECS_LEN];
pub const SPECS_LEN: usize = abi::COUNT * SYSCALL_NR_MAX;

/// What the kernel side reads from an io_uring request of one opcode:
/// offsets into the request (whose start holds the op's own struct,
/// `io_open`, `io_rename`, ...), [`UringSpec::NONE`] where absent. Built by
/// the loader from BTF, so the kernel side has one code path for all.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UringSpec {
    /// A [`uring_class`] value.
    pub class: u16,
    /// `int` dirfd of path 1 and 2.
    pub dfd1: u16,
    pub dfd2: u16,
    /// `struct filename *` of path 1 and 2 (for [`uring_class::SOCKADDR`]:
    /// `name1` is the `int addr_len`).
    pub name1: u16,
    pub name2: u16,
    /// `u64` flags (`how.flags`), or a 32-bit one when `flags32` is set.
    pub flags: u16,
    pub flags32: u16,
    /// `u64` second flags (`how.resolve`).
    pub flags2: u16,
    /// `u32` fixed-file slot (`io_open.file_slot`).
    pub slot: u16,
    /// `name2` is a symlink's content.
    pub content2: u16,
}

impl UringSpec {
    pub const NONE: u16 = u16::MAX;
    pub const UNKNOWN: UringSpec = UringSpec {
        class: uring_class::UNKNOWN,
        dfd1: Self::NONE,
        dfd2: Self::NONE,
        name1: Self::NONE,
        name2: Self::NONE,
        flags: Self::NONE,
        flags32: 0,
        flags2: Self::NONE,
        slot: Self::NONE,
        content2: 0,
    };
}

/// Classes of io_uring opcode.
pub mod uring_class {
    /// Not one the loader knows: counted as unobserved.
    pub const UNKNOWN: u16 = 0;
    /// Known, and names no path (read, write, poll, ...).
    pub const NO_PATH: u16 = 1;
    /// Names paths through `struct filename`s.
    pub const PATHS: u16 = 2;
    /// connect/bind: an address in the request's async data.
    pub const SOCKADDR: u16 = 3;
    /// An open: its completion's result is a descriptor to observe.
    pub const OPEN: u16 = 4;
}

/// `IORING_OP_*` opcodes the table covers: 0..64.
pub const URING_OPS: usize = 64;
pub type UringSpecs = [UringSpec; URING_OPS];

/// The filesystem root paths are relative to: the root of the first task
/// armed (the container's root, `--root`'s directory, the host's root).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ScopeRoot {
    pub mnt: u64,
    pub dentry: u64,
    /// The dentry's superblock: files on it are in the image.
    pub sb: u64,
}

/// Value of `SCOPE_PIDS` and `ARMED`: when the process started
/// (`task->start_boottime`, ns), so userspace can tell the process that
/// was traced from a later one that reuses its pid.
pub type StartTime = u64;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SyscallSpec {}
    unsafe impl aya::Pod for super::UringSpec {}
    unsafe impl aya::Pod for super::UnobservedKey {}
    unsafe impl aya::Pod for super::ScopeRoot {}
    unsafe impl aya::Pod for super::RunConfig {}
}

/// Open and `AT_*` flag values, per architecture (`asm-generic/fcntl.h`
/// and the architecture's overrides: arm64 moves O_DIRECTORY and
/// O_NOFOLLOW).
pub mod fcntl {
    pub const O_ACCMODE: u64 = 0o3;
    pub const O_WRONLY: u64 = 0o1;
    pub const O_RDWR: u64 = 0o2;
    pub const O_CREAT: u64 = 0o100;
    pub const O_EXCL: u64 = 0o200;
    pub const O_TRUNC: u64 = 0o1000;
    #[cfg(any(target_arch = "aarch64", bpf_target_arch = "aarch64"))]
    pub const O_DIRECTORY: u64 = 0o40000;
    #[cfg(any(target_arch = "aarch64", bpf_target_arch = "aarch64"))]
    pub const O_NOFOLLOW: u64 = 0o100000;
    #[cfg(not(any(target_arch = "aarch64", bpf_target_arch = "aarch64")))]
    pub const O_DIRECTORY: u64 = 0o200000;
    #[cfg(not(any(target_arch = "aarch64", bpf_target_arch = "aarch64")))]
    pub const O_NOFOLLOW: u64 = 0o400000;
    /// `__O_TMPFILE` (O_TMPFILE is this plus O_DIRECTORY).
    pub const O_TMPFILE_BIT: u64 = 0o20000000;
    pub const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
    pub const AT_REMOVEDIR: u64 = 0x200;
    pub const AT_SYMLINK_FOLLOW: u64 = 0x400;
    pub const AT_EMPTY_PATH: u64 = 0x1000;
    /// execveat: check that the file could be run, and return (6.14+).
    pub const AT_EXECVE_CHECK: u64 = 0x10000;
    /// openat2 `resolve` bits.
    pub const RESOLVE_IN_ROOT: u64 = 0x10;
    /// inotify_add_watch's IN_DONT_FOLLOW, fanotify_mark's
    /// FAN_MARK_DONT_FOLLOW, umount2's UMOUNT_NOFOLLOW.
    pub const IN_DONT_FOLLOW: u64 = 0x0200_0000;
    pub const FAN_MARK_DONT_FOLLOW: u64 = 0x04;
    pub const UMOUNT_NOFOLLOW: u64 = 0x8;
    /// mount(2) flags that make the source a path.
    pub const MS_BIND: u64 = 0x1000;
    pub const MS_MOVE: u64 = 0x2000;
    /// mount(2) flags that change an existing mount, whose source (and
    /// type) the kernel ignores: a remount, a propagation change.
    pub const MS_REMOUNT: u64 = 0x20;
    pub const MS_PROPAGATION: u64 = (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20);

    /// What mount(2) does with its `source` and `fstype` for these
    /// flags, in the kernel's order (`path_mount`): (source is a path,
    /// a new filesystem of type `fstype` is mounted).
    pub const fn mount_kind(flags: u64) -> (bool, bool) {
        if flags & MS_REMOUNT != 0 {
            (false, false)
        } else if flags & MS_BIND != 0 {
            (true, false)
        } else if flags & MS_PROPAGATION != 0 {
            (false, false)
        } else if flags & MS_MOVE != 0 {
            (true, false)
        } else {
            (false, true)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn mount_kind_follows_the_kernels_order() {
            const MS_RDONLY: u64 = 1;
            const MS_PRIVATE: u64 = 1 << 18;
            const MS_REC: u64 = 0x4000;
            assert_eq!(mount_kind(0), (false, true));
            assert_eq!(mount_kind(MS_BIND), (true, false));
            assert_eq!(mount_kind(MS_BIND | MS_REC), (true, false));
            assert_eq!(mount_kind(MS_MOVE), (true, false));
            assert_eq!(mount_kind(MS_REMOUNT | MS_BIND | MS_RDONLY), (false, false));
            assert_eq!(mount_kind(MS_PRIVATE | MS_REC), (false, false));
            // A bind wins over a propagation flag, which wins over a move.
            assert_eq!(mount_kind(MS_BIND | MS_PRIVATE), (true, false));
            assert_eq!(mount_kind(MS_MOVE | MS_PRIVATE), (false, false));
        }
    }
}
