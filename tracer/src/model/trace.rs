//! The trace file: what a run used, as versioned JSON (see README, "Trace
//! format"). Everything is sorted so that the same observations give the
//! same bytes.
use std::{collections::BTreeMap, os::unix::ffi::OsStrExt, path::Path};

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; readers reject other versions.
/// 2: observed names, requested paths with `..` kept, mounts, roles, the
/// new ops, per-ABI syscalls, `unobserved` and `incomplete_reasons`.
pub const FORMAT_VERSION: u32 = 2;
pub const FORMAT_NAME: &str = "trace";

/// Paths under these are runtime filesystems: what a trace saw there was
/// never part of the image.
pub const RUNTIME_PREFIXES: &[&str] = &["/proc/", "/sys/", "/dev/", "/run/"];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Trace {
    pub format: String,
    pub version: u32,
    /// `trace X.Y.Z` that wrote the file.
    pub tool: String,
    pub command: Vec<String>,
    pub exit: ExitInfo,
    pub scope: ScopeInfo,
    /// False when any event was lost, any path could not be recorded
    /// whole, or a channel was used that the capture can only count: the
    /// file list may then miss something. `incomplete_reasons` says why.
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete_reasons: Vec<String>,
    pub lost_events: LostEvents,
    /// Accesses the capture saw happen but could not record (an io_uring
    /// request it cannot decode, x32 syscalls): by channel, op and process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unobserved: Vec<Unobserved>,
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

impl Trace {
    /// Whether `path` cannot be the image's, whatever the access: it lies
    /// on a runtime filesystem or below a bind mount into the container.
    pub fn beyond_image(&self, path: &Path) -> bool {
        let bytes = path.as_os_str().as_bytes();
        RUNTIME_PREFIXES
            .iter()
            .any(|p| bytes.starts_with(p.as_bytes()))
            || self.scope.bind_mounts.iter().any(|b| path.starts_with(b))
    }
}

/// Syscalls by number and name, for one ABI.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Syscalls {
    /// `x86_64`, `aarch64`; `x86` (ia32) and `arm` (aarch32) for `compat`.
    pub arch: String,
    pub numbers: Vec<u32>,
    /// Names in the same order; `syscall_<n>` where the number is unknown.
    pub names: Vec<String>,
    /// The compat ABI's syscalls (ia32 on x86_64), when any were made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compat: Option<Box<Syscalls>>,
}

impl Syscalls {
    /// Names from the table of the ABI called `arch` (`syscall_<n>` for an
    /// ABI `trace` does not know).
    pub fn named(arch: &str, numbers: Vec<u32>) -> Syscalls {
        match tracer_common::abis::Abi::by_arch(arch) {
            Some(abi) => Syscalls::from_numbers(&abi, numbers),
            None => Syscalls {
                arch: arch.to_string(),
                names: numbers.iter().map(|n| format!("syscall_{n}")).collect(),
                numbers,
                compat: None,
            },
        }
    }

    /// Names from the ABI's own table (`syscalls` crate).
    pub fn from_numbers(abi: &tracer_common::abis::Abi, numbers: Vec<u32>) -> Syscalls {
        let names = numbers
            .iter()
            .map(|&n| match abi.name(n) {
                Some(name) => name.to_string(),
                None => format!("syscall_{n}"),
            })
            .collect();
        Syscalls {
            arch: abi.arch.to_string(),
            numbers,
            names,
            compat: None,
        }
    }
}

/// A count of accesses the capture could not record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unobserved {
    /// `io_uring`, `x32`; `cgroup`: a traced process moved out of the
    /// scope's cgroup.
    pub channel: String,
    /// The operation (`openat`, `op_63`, `syscall_2`).
    pub op: String,
    pub pid: u32,
    pub count: u64,
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
    /// The directory the command was chrooted into (`trace run --root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
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
    /// Relative paths whose directory was freed and reused between the
    /// syscall's entry and its exit, so they could not be named.
    #[serde(default)]
    pub stale_bases: u64,
    /// Files opened whose descriptor was closed by another thread before
    /// the syscall's exit could look at it.
    #[serde(default)]
    pub unobserved_results: u64,
    /// Events the kernel did not deliver because a program was already
    /// running on that CPU (preemption; `recursion_misses`).
    #[serde(default)]
    pub missed_by_kernel: u64,
    /// Requested paths that went on through a `/proc` magic link (another
    /// process's root, a working directory, a descriptor) to a file they
    /// do not name (see `capture::proc_links`).
    #[serde(default)]
    pub proc_link_paths: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Exec {
    /// The program path as the process named it, made absolute.
    pub path: String,
    /// `path`'s exact bytes in hex, present only when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// The filename argument as passed (or the kernel's copy of it).
    pub raw: String,
    /// The file the new image runs: symlinks resolved; for a `#!` script,
    /// the interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// `exe`'s exact bytes in hex, present only when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_hex: Option<String>,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    /// The interpreter a `#!` line named, as written there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    pub pid: u32,
    pub comm: String,
}

/// What makes two execs the same: the program (by its bytes, so names
/// that print alike stay apart), the name asked for, the file run and the
/// command line.
pub type ExecKey = (String, String, Option<String>, Vec<String>);

impl Exec {
    pub fn key(&self) -> ExecKey {
        (
            self.path_hex.clone().unwrap_or_else(|| self.path.clone()),
            self.raw.clone(),
            self.exe_hex.clone().or_else(|| self.exe.clone()),
            self.argv.clone(),
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute, normalized, as the traced process saw it.
    pub path: String,
    /// The exact bytes in hex, present only when `path` is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<Box<str>>,
    /// Some access named a path that could not be recorded whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(deserialize_with = "shrunk")]
    pub accesses: Vec<Access>,
    /// For a merged trace: which of the merged traces saw this path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen_in: Vec<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Open,
    Stat,
    Access,
    Readlink,
    Chdir,
    Exec,
    /// A directory listed (getdents).
    List,
    /// Extended attributes read (getxattr, listxattr).
    Xattr,
    /// Extended attributes changed (setxattr, removexattr).
    Setxattr,
    Statfs,
    /// inotify_add_watch, fanotify_mark.
    Watch,
    /// connect() to an `AF_UNIX` path.
    Connect,
    /// bind() to an `AF_UNIX` path (creates the socket file).
    Bind,
    Link,
    Rename,
    Mkdir,
    Rmdir,
    Unlink,
    Symlink,
    Mknod,
    Truncate,
    Utime,
    Chmod,
    Chown,
    Chroot,
    Mount,
    Umount,
    PivotRoot,
    MoveMount,
    /// name_to_handle_at, fspick: looked up like stat.
    Lookup,
    /// `trace attach`: in use by a process when the trace started (its
    /// executable, a mapped file, its cwd or root, an open file).
    Preexisting,
}

/// Which path of a two-path syscall an access is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// link, rename, move_mount, a bind mount's source: must exist.
    Source,
    /// link, rename, move_mount: the new name; mount: the mount point.
    Target,
    /// pivot_root's new root.
    NewRoot,
    /// pivot_root's put_old.
    PutOld,
}

/// The filesystem an access reached when it is not the scope's root
/// filesystem (the image): a tmpfs, /proc, a bind mount from the host.
/// Such files are never taken from the image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mount {
    /// Its type, from the superblock's magic (`tmpfs`, `proc`, `ext4`,
    /// or `0x...` when unknown).
    pub fs: String,
    /// Where it is mounted, as the process saw it.
    pub at: String,
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
    #[serde(deserialize_with = "interned")]
    pub syscall: Name,
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
    #[serde(deserialize_with = "interned")]
    pub result: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// The path argument exactly as passed, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Box<str>>,
    /// The path as the program asked for it, made absolute against the
    /// directory it started from (read at syscall entry), with `..` kept:
    /// present when it differs from the entry's path (through a symlink
    /// or `..`). `trace build` resolves it in the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<Box<str>>,
    /// `requested`'s exact bytes in hex, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_hex: Option<Box<str>>,
    /// Two-path syscalls: which path this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Not on the scope's root filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<Box<Mount>>,
    /// The file lies outside the scope's root (reached through a
    /// descriptor or mount from outside it): the path is relative to the
    /// top of its filesystem, not to the root.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outside_root: bool,
    /// The kernel named the file itself (the new descriptor's file, the
    /// program run): no lookup of ours is involved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observed: bool,
    /// `io_uring` when the access was an io_uring request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Box<str>>,
    /// `x86` (ia32) or `arm` (aarch32) for a compat-ABI syscall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<Box<str>>,
    /// A symlink's content, or the filesystem type of a mount whose source
    /// is not a path (and of an fsopen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Box<str>>,
}

/// What an access says about its path in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The path existed: the image must have it.
    Exists,
    /// The program made the path: the image needs its parent directory.
    Parent,
    /// Nothing (a failed lookup, or not the image's file).
    Nothing,
}

impl Access {
    /// The requested path exactly (see `FileEntry::os_path`).
    pub fn requested_path(&self) -> Option<std::path::PathBuf> {
        let text = self.requested.as_deref()?;
        Some(exact(text, self.requested_hex.as_deref()))
    }

    /// A successful access with nothing else said.
    pub fn new(op: Op, syscall: &str) -> Access {
        Access {
            op,
            syscall: name(syscall),
            mode: None,
            create: false,
            nofollow: false,
            exe: false,
            result: Name::Borrowed("ok"),
            errno: None,
            raw: None,
            requested: None,
            requested_hex: None,
            role: None,
            mount: None,
            outside_root: false,
            observed: false,
            channel: None,
            abi: None,
            content: None,
        }
    }

    pub fn ok(&self) -> bool {
        self.errno.is_none()
    }

    /// Succeeded, or proved that the path exists all the same (readlink
    /// fails with EINVAL only on an existing path that is not a symlink).
    pub fn found(&self) -> bool {
        self.ok() || (self.op == Op::Readlink && self.errno == Some(libc::EINVAL))
    }

    /// The access created its path (or may have: O_CREAT).
    pub fn creates(&self) -> bool {
        match self.op {
            Op::Open => self.create,
            Op::Mkdir | Op::Mknod | Op::Symlink | Op::Bind => true,
            Op::Link | Op::Rename => self.role == Some(Role::Target),
            _ => false,
        }
    }

    /// What this access needs of the image (whether its path can be the
    /// image's at all is `closure::from_image`).
    pub fn need(&self) -> Need {
        if self.creates() {
            // An O_CREAT open of a file that was there keeps the file too:
            // `Exists` applies where the image has it (see closure).
            return if self.ok() {
                Need::Parent
            } else {
                Need::Nothing
            };
        }
        if self.found() {
            Need::Exists
        } else {
            Need::Nothing
        }
    }
}

/// The bytes a `*_hex` field holds (`None` when it is not hex).
fn unhex(hex: &str) -> Option<Vec<u8>> {
    let b = hex.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

fn exact(text: &str, hex: Option<&str>) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    match hex.and_then(unhex) {
        Some(bytes) => std::ffi::OsString::from_vec(bytes).into(),
        None => text.into(),
    }
}

/// A list read with no more room than it holds: serde grows a vector
/// from four slots, and most entries have one access (a million-file
/// trace held 1 KB of slots per entry, three of them empty).
fn shrunk<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Access>, D::Error> {
    let mut v = Vec::<Access>::deserialize(d)?;
    v.shrink_to_fit();
    Ok(v)
}

/// Why an entry's path is refused (see [`FileEntry::check`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{0} {1:?} is not hex")]
    NotHex(&'static str, String),
    #[error("{0} {1:?} has an odd length")]
    OddHex(&'static str, String),
    #[error("{0} is not the bytes of {1}")]
    HexMismatch(&'static str, &'static str),
    #[error("{0} is not absolute")]
    Relative(&'static str),
    #[error("{0} has a NUL byte")]
    Nul(&'static str),
    #[error("{0} has an empty component")]
    Empty(&'static str),
    #[error("{0} has a {1:?} component")]
    Dots(&'static str, &'static str),
}

/// The bytes `text`/`hex` stand for, checked to be hex of an even length
/// whose lossy text is `text`.
fn exact_bytes(
    text: &str,
    hex: Option<&str>,
    names: (&'static str, &'static str),
) -> Result<Vec<u8>, PathError> {
    let Some(hex) = hex else {
        return Ok(text.as_bytes().to_vec());
    };
    if !hex.len().is_multiple_of(2) {
        return Err(PathError::OddHex(names.1, hex.to_string()));
    }
    let bytes = unhex(hex).ok_or_else(|| PathError::NotHex(names.1, hex.to_string()))?;
    if bytes.contains(&0) {
        return Err(PathError::Nul(names.1));
    }
    if String::from_utf8_lossy(&bytes) != text {
        return Err(PathError::HexMismatch(names.1, names.0));
    }
    Ok(bytes)
}

/// An entry's key: absolute, no NUL, no empty, `.` or `..` component.
fn check_canonical(bytes: &[u8], name: &'static str) -> Result<(), PathError> {
    if bytes.first() != Some(&b'/') {
        return Err(PathError::Relative(name));
    }
    if bytes.contains(&0) {
        return Err(PathError::Nul(name));
    }
    if bytes == b"/" {
        return Ok(());
    }
    for part in bytes[1..].split(|&b| b == b'/') {
        match part {
            b"" => return Err(PathError::Empty(name)),
            b"." => return Err(PathError::Dots(name, ".")),
            b".." => return Err(PathError::Dots(name, "..")),
            _ => {}
        }
    }
    Ok(())
}

impl FileEntry {
    /// Refuses what no capture writes: a path that is not canonical, hex
    /// that is not hex or not the path's bytes; a requested path (which
    /// keeps `..` on purpose) must still be absolute and free of NULs.
    pub fn check(&self) -> Result<(), PathError> {
        let bytes = exact_bytes(&self.path, self.path_hex.as_deref(), ("path", "path_hex"))?;
        let name = if self.path_hex.is_some() {
            "path_hex"
        } else {
            "path"
        };
        check_canonical(&bytes, name)?;
        for a in &self.accesses {
            let Some(text) = a.requested.as_deref() else {
                continue;
            };
            let names = ("requested path", "requested_hex");
            let bytes = exact_bytes(text, a.requested_hex.as_deref(), names)?;
            let name = if a.requested_hex.is_some() {
                names.1
            } else {
                names.0
            };
            if bytes.first() != Some(&b'/') {
                return Err(PathError::Relative(name));
            }
            if bytes.contains(&0) {
                return Err(PathError::Nul(name));
            }
        }
        Ok(())
    }

    /// The path exactly, `path_hex` decoded where the name is not UTF-8.
    pub fn os_path(&self) -> std::path::PathBuf {
        exact(&self.path, self.path_hex.as_deref())
    }

    /// The run read from (or executed, or probed) this path successfully.
    pub fn used(&self) -> bool {
        self.accesses.iter().any(Access::found)
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
    /// A failed lookup of a path the program did not then create.
    pub fn looked_up_missing(&self) -> bool {
        self.failed_only() && !self.accesses.iter().any(Access::creates)
    }
}

/// Error names for the errnos file lookups produce; others print as `E<n>`.
pub fn errno_name(errno: i32) -> String {
    match known_errno(errno) {
        Some(name) => name.to_string(),
        None => format!("E{errno}"),
    }
}

fn known_errno(errno: i32) -> Option<&'static str> {
    Some(match errno {
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
        libc::ENOTBLK => "ENOTBLK",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENOSPC => "ENOSPC",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EXDEV => "EXDEV",
        libc::ESTALE => "ESTALE",
        libc::EINTR => "EINTR",
        libc::ESRCH => "ESRCH",
        libc::ECHILD => "ECHILD",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ESPIPE => "ESPIPE",
        libc::EMLINK => "EMLINK",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENOLCK => "ENOLCK",
        libc::ENODATA => "ENODATA",
        libc::EILSEQ => "EILSEQ",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ECONNRESET => "ECONNRESET",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EDQUOT => "EDQUOT",
        libc::ENOMEDIUM => "ENOMEDIUM",
        libc::ECANCELED => "ECANCELED",
        libc::ENOKEY => "ENOKEY",
        libc::EUCLEAN => "EUCLEAN",
        _ => return None,
    })
}

/// A name from a small set (syscalls, results): the known ones are not
/// allocated per access (a million accesses held two strings each).
pub type Name = std::borrow::Cow<'static, str>;

/// `name` as a [`Name`], borrowed from the static tables when it is in one.
pub fn name(name: &str) -> Name {
    static KNOWN: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut k: std::collections::HashSet<&'static str> = tracer_common::syscalls::TABLE
            .iter()
            .map(|r| r.name)
            .collect();
        k.extend((1..200).filter_map(known_errno));
        k.insert("ok");
        k
    });
    match known.get(name) {
        Some(s) => Name::Borrowed(s),
        None => Name::Owned(name.to_string()),
    }
}

fn interned<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Name;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name, E> {
            Ok(name(v))
        }
    }
    d.deserialize_str(V)
}
