//! The trace file: what a run used, as versioned JSON (see README, "Trace
//! format"). Everything is sorted so that the same observations give the
//! same bytes.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; readers reject other versions.
pub const FORMAT_VERSION: u32 = 1;
pub const FORMAT_NAME: &str = "trace";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trace {
    pub format: String,
    pub version: u32,
    /// `trace X.Y.Z` that wrote the file.
    pub tool: String,
    pub command: Vec<String>,
    pub exit: ExitInfo,
    pub scope: ScopeInfo,
    /// False when any event was lost or any path could not be recorded
    /// whole: the file list may then miss something.
    pub complete: bool,
    pub lost_events: LostEvents,
    pub counters: Counters,
    /// The syscalls made in scope (for `trace seccomp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<Syscalls>,
    /// For a merged trace (`trace merge`): the labels of the traces it
    /// unites, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    pub execs: Vec<Exec>,
    pub files: Vec<FileEntry>,
}

/// Syscalls by number and name, for one architecture.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Syscalls {
    /// `x86_64`, as `uname -m` says.
    pub arch: String,
    pub numbers: Vec<u32>,
    /// Names in the same order; `syscall_<n>` where the number is unknown.
    pub names: Vec<String>,
}

impl Syscalls {
    pub fn from_numbers(arch: &str, numbers: Vec<u32>) -> Syscalls {
        let names = numbers
            .iter()
            .map(|&n| match super::syscall_names::X86_64.get(n as usize) {
                Some(name) if !name.is_empty() && arch == "x86_64" => name.to_string(),
                _ => format!("syscall_{n}"),
            })
            .collect();
        Syscalls {
            arch: arch.to_string(),
            numbers,
            names,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit status `trace run` itself returns (128+N for signal N).
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ScopeInfo {
    /// `cgroup` or `pids`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// Processes still alive in the scope after the wait, then killed.
    pub leftovers_killed: u32,
    /// The image the command ran in (`trace run --image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The container's id with the OCI runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Where host directories were bound into the container: what lies
    /// below them was never part of the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bind_mounts: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LostEvents {
    pub total: u64,
    pub per_cpu: Vec<u64>,
    /// Count by cause (`ringbuf_full`, `inflight_full`, ...).
    pub by_cause: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    /// Syscalls in scope that completed and were examined in the kernel.
    pub syscalls_seen: u64,
    /// Of those, repeats of an access already reported.
    pub deduplicated_in_kernel: u64,
    /// Records that reached userspace.
    pub records: u64,
    /// Records whose path could not be read (the syscall got a bad pointer).
    pub unreadable_paths: u64,
    /// Relative paths whose dirfd was not an open file (the syscall failed).
    pub unresolved_paths: u64,
    /// Paths flagged as cut (see `truncated` on the entries).
    pub truncated_paths: u64,
    /// Records userspace could not decode.
    pub malformed_records: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Exec {
    /// The program path as the process named it, made absolute.
    pub path: String,
    /// The filename argument as passed (or the kernel's copy of it).
    pub raw: String,
    /// The file the new image runs: symlinks resolved; for a `#!` script,
    /// the interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    pub pid: u32,
    pub comm: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute, normalized, as the traced process saw it.
    pub path: String,
    /// The exact bytes in hex, present only when `path` is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// Some access named a path that could not be recorded whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub accesses: Vec<Access>,
    /// For a merged trace: which of the merged traces saw this path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_in: Vec<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Open,
    Stat,
    Access,
    Readlink,
    Chdir,
    Exec,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum OpenMode {
    Read,
    Write,
    ReadWrite,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub op: Op,
    /// The syscall as users know it (`openat`, `stat`, `execve`, ...).
    pub syscall: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<OpenMode>,
    /// O_CREAT (or creat()).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
    /// Symlinks in the last component were not followed (lstat,
    /// AT_SYMLINK_NOFOLLOW, O_NOFOLLOW).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nofollow: bool,
    /// For execs: this is the file the kernel ran (symlink target or
    /// script interpreter) rather than the name passed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exe: bool,
    /// `ok`, or the errno name (`ENOENT`).
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// The path argument exactly as passed, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

impl Access {
    pub fn ok(&self) -> bool {
        self.errno.is_none()
    }
}

impl FileEntry {
    /// The run read from (or executed, or probed) this path successfully.
    pub fn used(&self) -> bool {
        self.accesses.iter().any(Access::ok)
    }
    pub fn written(&self) -> bool {
        self.accesses.iter().any(|a| {
            a.ok()
                && a.op == Op::Open
                && matches!(a.mode, Some(OpenMode::Write | OpenMode::ReadWrite))
        })
    }
    pub fn failed_only(&self) -> bool {
        !self.used()
    }
}

/// Error names for the errnos file lookups produce; others print as `E<n>`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EROFS => "EROFS",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ENOSYS => "ENOSYS",
        libc::EXDEV => "EXDEV",
        libc::ESTALE => "ESTALE",
        _ => return format!("E{errno}"),
    };
    name.to_string()
}
