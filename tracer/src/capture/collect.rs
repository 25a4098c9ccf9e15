//! Folding decoded events into a [`Trace`].
//!
//! Each record names up to two paths. A path is the file the kernel itself
//! holds (an open's new descriptor, a listed directory, the program an exec
//! ran: `observed`) or, for everything else, the path as the program asked
//! for it, joined onto the directory it started from as the kernel saw that
//! directory at syscall entry. Symlinks and `..` in what the program asked
//! for are not resolved here: `trace build` resolves them in the image.
use std::collections::{BTreeMap, HashMap};

use tracer_common::{
    fcntl::{
        AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, FAN_MARK_DONT_FOLLOW, IN_DONT_FOLLOW,
        O_ACCMODE, O_CREAT, O_NOFOLLOW, O_RDWR, O_TMPFILE_BIT, O_WRONLY, UMOUNT_NOFOLLOW,
    },
    flags,
    syscalls::{Row, op, row_of},
};

use tracer_common::abis as abi;

use super::{
    Totals,
    decode::{Event, Kind, Walk, WalkEnd},
    mounts_made::{self, Doubt, MountsMade},
    proc_links,
    store::{AccessStore, Entries},
};
use crate::model::{
    path::normalize,
    trace::{
        Access, Counters, Exec, ExecKey, ExitInfo, FORMAT_NAME, FORMAT_VERSION, FileEntry, Mount,
        Op, OpenMode, Role, ScopeInfo, Trace, Unobserved, errno_name,
    },
};

/// A syscall's result as the program sees it: the kernel's restart codes
/// (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK),
/// which a signal's arrival leaves at the syscall's exit, end as EINTR or
/// as the same syscall made again (and recorded again).
fn as_seen(ret: i64) -> i64 {
    const EINTR: i64 = 4;
    if matches!(-ret, 512 | 513 | 514 | 516) {
        -EINTR
    } else {
        ret
    }
}

/// quotactl's `Q_QUOTAON` (the cmd's upper bits; `QCMD(cmd, type)`).
const Q_QUOTAON: u64 = 0x80_0002;

/// Everything userspace learned during a run, before the run's metadata
/// is known.
#[derive(Default)]
pub struct Collector {
    /// Every access, kept compact (a run may touch millions of files).
    files: AccessStore,
    execs: BTreeMap<ExecKey, Exec>,
    counters: Counters,
    /// io_uring submissions waiting for their completion, by request.
    uring: HashMap<u64, Event>,
    /// Successful syscalls whose path could not be read.
    unreadable_ok: u64,
    unobserved: BTreeMap<(String, String, u32), u64>,
    /// The first path counted in `proc_link_paths`, for the reason.
    proc_link_example: Option<String>,
    /// Bind mounts and roots the traced programs made.
    mounts: MountsMade,
    /// The first name counted for each kind of doubt, for the reason.
    doubt_example: BTreeMap<&'static str, String>,
}

/// What the run itself tells, added when the trace is finished.
pub struct RunInfo {
    pub command: Vec<String>,
    pub exit: ExitInfo,
    pub scope: ScopeInfo,
    /// What the kernel side counted.
    pub totals: Totals,
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hex(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes)
        .is_err()
        .then(|| bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Filesystem names for the superblock magics a trace usually meets.
fn fs_name(magic: u32) -> String {
    match magic {
        0xef53 => "ext4",
        0x0102_1994 => "tmpfs",
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x1cd1 => "devpts",
        0x794c_7630 => "overlay",
        0x6367_7270 => "cgroup2",
        0x0027_e0eb => "cgroup",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x6462_6720 => "debugfs",
        0x7472_6163 => "tracefs",
        0xcafe_4a11 => "bpf",
        0x6573_5546 => "fuse",
        0x0000_6969 => "nfs",
        0x7363_6673 => "securityfs",
        0x4249_4e4d => "binfmt_misc",
        0x1980_0202 => "mqueue",
        0x5346_4e43 => "nsfs",
        0x5049_5045 => "pipefs",
        0x5345_4d4d => "sockfs",
        0x6e73_6673 => "nsfs",
        0x0957_8546 => "squashfs",
        0xe0f5_e1e2 => "erofs",
        0x2fc1_2fc1 => "zfs",
        _ => return format!("0x{magic:x}"),
    }
    .to_string()
}

/// Joins `raw` onto `base` as the kernel's lookup starts: an absolute raw
/// path from the root, a relative one from the base. Nothing is folded
/// but empty and `.` components (which the kernel skips too).
fn join(base: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(base.len() + raw.len() + 1);
    let mut push = |part: &[u8]| {
        for c in part.split(|&b| b == b'/') {
            if c.is_empty() || c == b"." {
                continue;
            }
            out.push(b'/');
            out.extend_from_slice(c);
        }
    };
    push(base);
    push(raw);
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

fn dirname(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/",
        Some(i) => &path[..i],
    }
}

/// Facts about where a path lies, taken from the walk that named it.
#[derive(Clone, Default)]
struct Place {
    mount: Option<Mount>,
    outside: bool,
    truncated: bool,
}

impl Place {
    fn of(w: &Walk) -> Place {
        Place {
            mount: w.mount.as_ref().map(|(at, magic)| Mount {
                fs: fs_name(*magic),
                at: text(at),
            }),
            outside: w.end == WalkEnd::Outside,
            truncated: w.end == WalkEnd::Truncated,
        }
    }
}

/// A path of a record, ready to become an entry.
struct Named {
    /// The entry's key: the observed path, or the requested one folded.
    key: Vec<u8>,
    /// The requested path, exact, when it differs from `key`.
    requested: Option<Vec<u8>>,
    raw: Option<Vec<u8>>,
    place: Place,
    observed: bool,
    /// The file an exec ran, under another name than the one asked for.
    exe: bool,
    /// The name asked for stands for the file and may be wrong: a `..`
    /// above the caller's root (`mounts_made::at_root`), or one to check
    /// against the mounts made (`MountsMade::doubt`).
    past_root: bool,
    check_doubt: bool,
}

/// Why a path of a record could not be named.
enum Unnamed {
    /// No path was given (or it was empty: an fd-only call).
    Absent,
    Unreadable,
    BadDirfd,
    Stale,
}

/// A path as the program asked for it.
struct Asked {
    /// Where the lookup started: the root's or the base's path.
    base: Vec<u8>,
    /// `raw` joined onto `base`, unfolded.
    exact: Vec<u8>,
    raw: Vec<u8>,
    place: Place,
    /// `raw` went on past `/proc/self/cwd/`, and the base is the working
    /// directory the kernel followed that to (`flags::BASE1_IS_CWD`).
    via_cwd: bool,
    /// An absolute `raw` climbs `..` above the root it started from.
    past_root: bool,
}

/// The prefixes `flags::BASE1_IS_CWD` stands for.
const CWD_LINKS: [&[u8]; 2] = [b"/proc/self/cwd/", b"/proc/thread-self/cwd/"];

/// The requested path of `raw` from the record's base (or the scope's
/// root when there is none); `via_cwd` as the kernel found it.
fn requested(
    raw: Option<&[u8]>,
    unreadable: bool,
    has_base: bool,
    base: Option<&Walk>,
    obs_parent: Option<&Walk>,
    bad_dirfd: bool,
    via_cwd: bool,
) -> Result<Asked, Unnamed> {
    let raw = match raw {
        Some(r) => r,
        None if unreadable => return Err(Unnamed::Unreadable),
        None => return Err(Unnamed::Absent),
    };
    if bad_dirfd {
        return Err(Unnamed::BadDirfd);
    }
    let (base_path, place) = if !has_base {
        (b"/".to_vec(), Place::default())
    } else if let Some(obs) = obs_parent {
        let parent = dirname(&obs.path).to_vec();
        let mut place = Place::of(obs);
        // The parent is below the mount only if the mount point is above it.
        if let Some(m) = &place.mount
            && m.at.as_bytes() == parent.as_slice()
        {
            place.mount = None;
        }
        (parent, place)
    } else if let Some(b) = base {
        if b.end == WalkEnd::Stale {
            return Err(Unnamed::Stale);
        }
        if b.end == WalkEnd::Unnamed {
            // A pipe or socket as a dirfd: the call failed ENOTDIR.
            return Err(Unnamed::BadDirfd);
        }
        (b.path.clone(), Place::of(b))
    } else {
        return Err(Unnamed::Stale);
    };
    // Past the link, the path goes on from the working directory.
    let rest = via_cwd
        .then(|| CWD_LINKS.iter().find_map(|l| raw.strip_prefix(*l)))
        .flatten();
    // An absolute path from a root that is not the scope's (a chroot, or
    // openat2's RESOLVE_IN_ROOT): the kernel's `..` stops at that root.
    let (from, past_root) = match rest {
        None if has_base && raw.first() == Some(&b'/') => mounts_made::at_root(raw),
        _ => (rest.unwrap_or(raw).into(), false),
    };
    Ok(Asked {
        exact: join(&base_path, &from),
        base: base_path,
        raw: raw.to_vec(),
        place,
        via_cwd: rest.is_some(),
        past_root,
    })
}

/// The magic link `a` goes on through, if it does. An absolute path
/// starts at the caller's root, where its `/proc` is; a relative one is
/// looked at from the scope's root, and from its base's mount when that
/// is a procfs.
fn proc_link(a: &Asked) -> Option<proc_links::Through> {
    const PROC: &[&[u8]] = &[b"proc"];
    if a.via_cwd {
        // Named from the directory the kernel followed the link to.
        return None;
    }
    if a.raw.first() == Some(&b'/') {
        return proc_links::through(&a.raw, PROC);
    }
    if let Some(t) = proc_links::through(&a.exact, PROC) {
        return Some(t);
    }
    let at = a.place.mount.as_ref().filter(|m| m.fs == "proc")?;
    let parts: Vec<&[u8]> = at
        .at
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    proc_links::through(&a.exact, &parts)
}

impl Named {
    fn from_requested(exact: Vec<u8>, raw: Vec<u8>, place: Place) -> Named {
        let key = normalize(&exact);
        Named {
            requested: (key != exact).then_some(exact),
            key,
            raw: Some(raw),
            place,
            observed: false,
            exe: false,
            past_root: false,
            check_doubt: true,
        }
    }

    fn from_observed(obs: &Walk, requested: Option<Vec<u8>>, raw: Option<Vec<u8>>) -> Named {
        Named {
            requested: requested.filter(|r| *r != obs.path),
            key: obs.path.clone(),
            raw,
            place: Place::of(obs),
            observed: true,
            exe: false,
            past_root: false,
            check_doubt: false,
        }
    }

    fn from_asked(a: Asked) -> Named {
        let mut n = Named::from_requested(a.exact, a.raw, a.place);
        n.past_root = a.past_root;
        n
    }
}

/// The model's op for a table row (socketcall by its call).
fn op_of(row: &Row, e: &Event) -> Op {
    match row.op {
        op::OPEN => Op::Open,
        op::STAT => Op::Stat,
        op::ACCESS => Op::Access,
        op::READLINK => Op::Readlink,
        op::CHDIR => Op::Chdir,
        op::EXEC => Op::Exec,
        op::LIST => Op::List,
        op::XATTR => Op::Xattr,
        op::SETXATTR => Op::Setxattr,
        op::STATFS => Op::Statfs,
        op::WATCH => Op::Watch,
        op::CONNECT if row.name == "socketcall" && e.arg_flags == 2 => Op::Bind,
        op::CONNECT => Op::Connect,
        op::BIND => Op::Bind,
        op::LINK => Op::Link,
        op::RENAME => Op::Rename,
        op::MKDIR => Op::Mkdir,
        op::RMDIR => Op::Rmdir,
        op::UNLINK if e.arg_flags & AT_REMOVEDIR != 0 => Op::Rmdir,
        op::UNLINK => Op::Unlink,
        op::SYMLINK => Op::Symlink,
        op::MKNOD => Op::Mknod,
        op::TRUNCATE => Op::Truncate,
        op::UTIME => Op::Utime,
        op::CHMOD => Op::Chmod,
        op::CHOWN => Op::Chown,
        op::CHROOT => Op::Chroot,
        op::MOUNT => Op::Mount,
        op::UMOUNT => Op::Umount,
        op::PIVOT_ROOT => Op::PivotRoot,
        op::MOVE_MOUNT => Op::MoveMount,
        _ => Op::Lookup,
    }
}

/// io_uring opcodes with paths, as (op, syscall name).
fn uring_op(opcode: u16, e: &Event) -> Option<(Op, &'static str)> {
    Some(match opcode {
        16 => (Op::Connect, "connect"),
        18 => (Op::Open, "openat"),
        21 => (Op::Stat, "statx"),
        28 => (Op::Open, "openat2"),
        35 => (Op::Rename, "renameat"),
        36 if e.arg_flags & AT_REMOVEDIR != 0 => (Op::Rmdir, "unlinkat"),
        36 => (Op::Unlink, "unlinkat"),
        37 => (Op::Mkdir, "mkdirat"),
        38 => (Op::Symlink, "symlinkat"),
        39 => (Op::Link, "linkat"),
        42 => (Op::Setxattr, "setxattr"),
        44 => (Op::Xattr, "getxattr"),
        56 => (Op::Bind, "bind"),
        _ => return None,
    })
}

/// Whether symlinks in the last component of path 1 (`second`: path 2)
/// were followed.
fn nofollow(op: Op, row_name: &str, second: bool, f: u64, f2: u64) -> bool {
    match op {
        Op::Open if row_name.starts_with("open_tree") => f & AT_SYMLINK_NOFOLLOW != 0,
        Op::Open => f & O_NOFOLLOW != 0,
        Op::Stat | Op::Xattr | Op::Setxattr | Op::Utime => f & AT_SYMLINK_NOFOLLOW != 0,
        Op::Access | Op::Chmod => f2 & AT_SYMLINK_NOFOLLOW != 0,
        Op::Chown => (f | f2) & AT_SYMLINK_NOFOLLOW != 0,
        Op::Lookup if row_name == "name_to_handle_at" => f & AT_SYMLINK_FOLLOW == 0,
        Op::Lookup => f & AT_SYMLINK_NOFOLLOW != 0,
        Op::Watch if row_name == "inotify_add_watch" => f & IN_DONT_FOLLOW != 0,
        Op::Watch => f & FAN_MARK_DONT_FOLLOW != 0,
        Op::Umount => f & UMOUNT_NOFOLLOW != 0,
        // The source of linkat is followed only when asked.
        Op::Link if !second => f & AT_SYMLINK_FOLLOW == 0,
        // These act on the name itself, never on what a symlink names.
        Op::Readlink
        | Op::Link
        | Op::Rename
        | Op::Mkdir
        | Op::Rmdir
        | Op::Unlink
        | Op::Symlink
        | Op::Mknod
        | Op::Bind => true,
        _ => false,
    }
}

fn role(op: Op, second: bool) -> Option<Role> {
    match (op, second) {
        (Op::Link | Op::Rename | Op::MoveMount, false) => Some(Role::Source),
        (Op::Link | Op::Rename | Op::MoveMount, true) => Some(Role::Target),
        (Op::Mount, false) => Some(Role::Target),
        (Op::Mount, true) => Some(Role::Source),
        (Op::PivotRoot, false) => Some(Role::NewRoot),
        (Op::PivotRoot, true) => Some(Role::PutOld),
        _ => None,
    }
}

/// The parts of an access that come from its record, not its path.
struct Shape {
    op: Op,
    pid: u32,
    syscall: String,
    arg_flags: u64,
    arg_flags2: u64,
    ret: i64,
    channel: Option<String>,
    abi: Option<String>,
    content: Option<String>,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    pub fn malformed_record(&mut self) {
        self.counters.malformed_records += 1;
    }

    pub fn add(&mut self, e: Event) {
        self.counters.records += 1;
        match e.kind {
            Kind::Syscall => self.add_syscall(&e),
            Kind::Exec => self.add_exec(&e),
            Kind::UringSubmit => {
                self.uring.insert(e.cookie, e);
            }
            Kind::UringComplete => {
                if let Some(sub) = self.uring.remove(&e.cookie) {
                    self.add_uring(&sub, &e);
                }
            }
        }
    }

    fn count_unnamed(&mut self, why: Unnamed, ret: i64) {
        match why {
            Unnamed::Absent => {}
            Unnamed::Unreadable => {
                self.counters.unreadable_paths += 1;
                if ret >= 0 {
                    self.unreadable_ok += 1;
                }
            }
            Unnamed::BadDirfd => self.counters.unresolved_paths += 1,
            Unnamed::Stale => self.counters.stale_bases += 1,
        }
    }

    fn add_syscall(&mut self, e: &Event) {
        let Some(row) = row_of(e.syscall) else {
            self.counters.malformed_records += 1;
            return;
        };
        let op = op_of(row, e);
        if row.name == "quotactl" && e.arg_flags >> 8 == Q_QUOTAON {
            // Its quota file (`addr`) is a path the record does not hold.
            self.count_unobserved("quotactl", "Q_QUOTAON quota file".into(), e.pid, 1);
        }
        let shape = Shape {
            op,
            pid: e.pid,
            syscall: row.name.to_string(),
            arg_flags: e.arg_flags,
            arg_flags2: e.arg_flags2,
            ret: as_seen(e.ret),
            channel: None,
            abi: (e.abi != tracer_common::abi::NATIVE)
                .then(|| abi::of_record(e.abi).map(|a| a.arch.to_string()))
                .flatten(),
            content: (e.has(flags::RAW2_CONTENT))
                .then(|| e.raw2.as_deref().map(text))
                .flatten(),
        };
        self.add_paths(e, &shape);
    }

    fn add_uring(&mut self, sub: &Event, done: &Event) {
        let Some((op, name)) = uring_op(sub.syscall, sub) else {
            return;
        };
        let mut merged = sub.clone();
        merged.ret = done.ret;
        merged.obs = done.obs.clone();
        merged.flags |= done.flags & (flags::HAS_OBS | flags::OBS_GONE | flags::FIXED_SLOT);
        let shape = Shape {
            op,
            pid: sub.pid,
            syscall: name.to_string(),
            arg_flags: sub.arg_flags,
            arg_flags2: sub.arg_flags2,
            ret: done.ret,
            channel: Some("io_uring".into()),
            abi: None,
            content: sub
                .has(flags::RAW2_CONTENT)
                .then(|| sub.raw2.as_deref().map(text))
                .flatten(),
        };
        if merged.has(flags::FIXED_SLOT) && done.ret >= 0 {
            // Opened into a fixed-file slot: no descriptor to observe it
            // through; the requested path stands for it.
            self.counters.unobserved_results += 1;
        }
        self.add_paths(&merged, &shape);
    }

    /// Records the record's path(s) as accesses.
    fn add_paths(&mut self, e: &Event, s: &Shape) {
        let tmpfile = s.op == Op::Open && s.arg_flags & O_TMPFILE_BIT != 0;
        let req1 = requested(
            e.raw1.as_deref(),
            e.has(flags::RAW1_UNREADABLE),
            e.has(flags::HAS_BASE1),
            e.base1.as_ref(),
            e.has(flags::BASE1_IS_OBS_PARENT)
                .then_some(e.obs.as_ref())
                .flatten(),
            e.has(flags::BAD_DIRFD1),
            e.has(flags::BASE1_IS_CWD),
        );
        // A file with no path (the pipe behind /dev/stdin, a memfd) is
        // known only by the name asked for.
        let nameless = e.obs.as_ref().is_some_and(|o| o.end == WalkEnd::Unnamed);
        let obs = e.obs.as_ref().filter(|_| !nameless);
        // The path the result names (an O_TMPFILE has no name yet: the
        // directory it was made in is what was looked up).
        let first = match (obs, req1) {
            (Some(obs), req) if !tmpfile => {
                let (req, raw) = match req {
                    // A request through a magic link cannot be followed
                    // in an image; the observed name is where the file is.
                    Ok(a) => {
                        let keep = a.exact != obs.path && proc_link(&a).is_none();
                        (keep.then_some(a.exact), Some(a.raw))
                    }
                    Err(_) => (None, e.raw1.clone()),
                };
                Some(Named::from_observed(obs, req, raw))
            }
            (_, Ok(a)) => {
                if e.has(flags::OBS_GONE) {
                    self.counters.unobserved_results += 1;
                }
                let a = self.past_proc_link(a, e.ret >= 0, false);
                Some(Named::from_asked(a))
            }
            (_, Err(why)) => {
                if nameless && e.ret >= 0 && matches!(why, Unnamed::Absent) {
                    // Opened by handle (a dentry cut off from its
                    // parents): which file is not known.
                    self.count_unobserved("unnamed", s.syscall.clone(), e.pid, 1);
                }
                self.count_unnamed(why, e.ret);
                None
            }
        };
        let first_at = first.as_ref().map(|n| (n.key.clone(), n.place.clone()));
        if let Some(n) = first {
            self.add_access(n, s, false, e.has(flags::RAW1_TRUNCATED));
        }
        if e.has(flags::RAW2_CONTENT) || e.raw2.is_none() && !e.has(flags::RAW2_UNREADABLE) {
            self.note_mount(s, first_at, None);
            return;
        }
        let second = match requested(
            e.raw2.as_deref(),
            e.has(flags::RAW2_UNREADABLE),
            e.has(flags::HAS_BASE2),
            e.base2.as_ref(),
            None,
            e.has(flags::BAD_DIRFD2),
            false,
        ) {
            Ok(a) => {
                let a = self.past_proc_link(a, e.ret >= 0, false);
                let n = Named::from_asked(a);
                let key = n.key.clone();
                self.add_access(n, s, true, e.has(flags::RAW2_TRUNCATED));
                Some(key)
            }
            Err(why) => {
                self.count_unnamed(why, e.ret);
                None
            }
        };
        self.note_mount(s, first_at, second);
    }

    /// What a successful mount, chroot or pivot_root changes about the
    /// names asked for later (`MountsMade`), and an overlay's options,
    /// which name directories the record does not hold.
    fn note_mount(&mut self, s: &Shape, first: Option<(Vec<u8>, Place)>, second: Option<Vec<u8>>) {
        if s.ret < 0 {
            return;
        }
        match s.op {
            Op::Mount => {
                if s.content
                    .as_deref()
                    .is_some_and(|t| mounts_made::reads_paths_from_options(t.as_bytes()))
                {
                    self.count_unobserved("mount options", s.syscall.clone(), s.pid, 1);
                }
                // A bind or a move: the source is a path.
                if let (Some((target, _)), Some(source)) = (first, second) {
                    self.mounts.add_mount(Some(&source), &target);
                }
            }
            Op::MoveMount => {
                // What is moved shows the image's files only if it lies on
                // the root's filesystem (not a new tmpfs from fsmount).
                if let (Some((source, place)), Some(target)) = (first, second)
                    && place.mount.is_none()
                    && !place.outside
                {
                    self.mounts.add_mount(Some(&source), &target);
                }
            }
            Op::Chroot | Op::PivotRoot => {
                if let Some((root, _)) = first {
                    self.mounts.add_root(&root);
                }
            }
            _ => {}
        }
    }

    /// The requested path of `a`, made the file the kernel reached when
    /// it went on through the caller's own root in `/proc` (and the call
    /// succeeded: a failure may be `/proc`'s own); other magic links are
    /// counted, as the file is not known, unless the record names it
    /// otherwise (`known`).
    fn past_proc_link(&mut self, mut a: Asked, ok: bool, known: bool) -> Asked {
        if a.via_cwd && !ok {
            // /proc itself may be what was missing: the name asked for
            // stands, and the file is not known.
            a.exact = join(b"/", &a.raw);
            self.count_proc_link(&a.exact);
            return a;
        }
        let Some(t) = proc_link(&a) else {
            return a;
        };
        if t.link == proc_links::Link::OwnRoot && ok && a.raw.first() == Some(&b'/') {
            a.exact = join(&a.base, &t.rest);
        } else if !known {
            self.count_proc_link(&a.exact);
        }
        a
    }

    /// Accesses seen but not recorded, by channel, what and process.
    fn count_unobserved(&mut self, channel: &str, op: String, pid: u32, n: u64) {
        *self
            .unobserved
            .entry((channel.to_string(), op, pid))
            .or_default() += n;
    }

    fn count_proc_link(&mut self, exact: &[u8]) {
        self.counters.proc_link_paths += 1;
        self.proc_link_example.get_or_insert_with(|| text(exact));
    }

    fn add_access(&mut self, n: Named, s: &Shape, second: bool, raw_truncated: bool) {
        // readlink's EINVAL proves the path exists, as a success does.
        let found = s.ret >= 0 || (s.op == Op::Readlink && s.ret == -i64::from(libc::EINVAL));
        if n.check_doubt && found && mounts_made::reads_existing(s.op, second) {
            let doubt = if n.past_root {
                Some(Doubt::PastRoot)
            } else {
                let exact = n.requested.as_deref().unwrap_or(&n.key);
                let relative = n.raw.as_deref().is_some_and(|r| r.first() != Some(&b'/'));
                self.mounts.doubt(&n.key, exact, relative, n.place.outside)
            };
            if let Some(d) = doubt {
                self.count_unobserved(d.channel(), s.syscall.clone(), s.pid, 1);
                self.doubt_example
                    .entry(d.channel())
                    .or_insert_with(|| text(n.requested.as_deref().unwrap_or(&n.key)));
            }
        }
        let truncated = raw_truncated || n.place.truncated;
        if truncated {
            self.counters.truncated_paths += 1;
        }
        let f = s.arg_flags;
        let (result, errno) = if s.ret < 0 {
            let e = (-s.ret) as i32;
            (errno_name(e), Some(e))
        } else {
            ("ok".to_string(), None)
        };
        let tmpfile = s.op == Op::Open && f & O_TMPFILE_BIT != 0;
        // open_tree takes AT_* and OPEN_TREE_* flags, not open flags: its
        // descriptor is for a mount tree, not for reading or writing.
        let with_open_flags = s.op == Op::Open && !s.syscall.starts_with("open_tree");
        let access = Access {
            op: s.op,
            syscall: crate::model::trace::name(&s.syscall),
            mode: with_open_flags.then_some(match f & O_ACCMODE {
                O_WRONLY => OpenMode::Write,
                O_RDWR => OpenMode::ReadWrite,
                _ => OpenMode::Read,
            }),
            create: with_open_flags && f & O_CREAT != 0 && !tmpfile,
            nofollow: nofollow(s.op, &s.syscall, second, f, s.arg_flags2),
            exe: n.exe,
            result: crate::model::trace::name(&result),
            errno,
            raw: n.raw.as_deref().map(|r| text(r).into()),
            requested: n.requested.as_deref().map(|r| text(r).into()),
            requested_hex: n.requested.as_deref().and_then(hex).map(Into::into),
            role: role(s.op, second),
            mount: n.place.mount.map(Box::new),
            outside_root: n.place.outside,
            observed: n.observed,
            channel: s.channel.as_deref().map(Into::into),
            abi: s.abi.as_deref().map(Into::into),
            content: if second {
                None
            } else {
                s.content.as_deref().map(Into::into)
            },
        };
        self.files.add(&n.key, truncated, &access);
    }

    fn add_exec(&mut self, e: &Event) {
        let row = row_of(e.syscall);
        let syscall = row.map_or("execve", |r| r.name);
        // execveat of a relative path names the program /dev/fd/N[/name]:
        // the descriptor's file was walked as the base.
        let mut raw = e.raw1.clone();
        let mut base_is_file = false;
        // The file run has no path (a memfd): it is only what was asked.
        let exe = e.exe.as_ref().filter(|x| x.end != WalkEnd::Unnamed);
        let base_nameless = e.base1.as_ref().is_some_and(|b| b.end == WalkEnd::Unnamed);
        if e.has(flags::RAW1_IS_FDPATH)
            && !base_nameless
            && let Some(r) = &raw
            && let Some(rest) = r.strip_prefix(b"/dev/fd/")
        {
            // The kernel's name for a relative (or empty) path from the
            // dirfd. An absolute path the program gave (`/dev/fd/5`, with
            // any dirfd) is its own: it goes through a magic link, as an
            // execve's would.
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let tail = &rest[digits..];
            if tail.is_empty() {
                base_is_file = true;
                raw = Some(Vec::new());
            } else if let Some(name) = tail.strip_prefix(b"/") {
                raw = Some(name.to_vec());
            }
        }
        let asked = if base_is_file {
            match &e.base1 {
                Some(b) if b.end != WalkEnd::Stale => {
                    Ok((b.path.clone(), Vec::new(), Place::of(b), false))
                }
                _ => Err(Unnamed::Stale),
            }
        } else {
            requested(
                raw.as_deref(),
                e.has(flags::RAW1_UNREADABLE),
                e.has(flags::HAS_BASE1) && !base_nameless,
                e.base1.as_ref().filter(|_| !base_nameless),
                None,
                false,
                false,
            )
            .map(|a| {
                // A binary's own file is observed (`exe`); a script's is
                // known only by its name.
                let known = exe.is_some() && e.interp.is_none();
                let a = self.past_proc_link(a, true, known);
                (a.exact, a.raw, a.place, a.past_root)
            })
        };
        let (exact, raw_bytes, place, past_root) = match asked {
            Ok(x) => x,
            Err(why) => {
                // The program is still known by the file the kernel ran.
                self.count_unnamed(why, 0);
                match exe {
                    Some(x) => (x.path.clone(), Vec::new(), Place::of(x), false),
                    None => return,
                }
            }
        };
        let path = normalize(&exact);
        let argv = e.argv.clone().unwrap_or_default();
        let exec = Exec {
            path: text(&path),
            path_hex: hex(&path),
            raw: text(e.raw1.as_deref().unwrap_or_default()),
            exe: exe.map(|x| text(&x.path)),
            exe_hex: exe.and_then(|x| hex(&x.path)),
            argv: argv.iter().map(|a| text(a)).collect(),
            argv_truncated: e.has(flags::ARGV_TRUNCATED),
            interpreter: e.interp.as_deref().map(text),
            pid: e.pid,
            comm: text(&e.comm),
        };
        // The same command line run again (a loop, a long attach) is one
        // entry, with the first pid that ran it.
        self.execs.entry(exec.key()).or_insert(exec);
        let shape = Shape {
            op: Op::Exec,
            pid: e.pid,
            syscall: syscall.to_string(),
            arg_flags: e.arg_flags,
            arg_flags2: 0,
            ret: 0,
            channel: None,
            abi: (e.abi != tracer_common::abi::NATIVE)
                .then(|| abi::of_record(e.abi).map(|a| a.arch.to_string()))
                .flatten(),
            content: None,
        };
        let named = if base_is_file {
            Named {
                key: path.clone(),
                requested: None,
                raw: None,
                place,
                observed: true,
                exe: false,
                past_root: false,
                check_doubt: false,
            }
        } else {
            let mut n = Named::from_requested(exact, raw_bytes, place);
            n.past_root = past_root;
            // A binary's own file is observed (`exe`): its name is known.
            n.check_doubt = !(exe.is_some() && e.interp.is_none());
            n
        };
        self.add_access(named, &shape, false, e.has(flags::RAW1_TRUNCATED));
        if let Some(exe) = exe
            && exe.path != path
        {
            let mut n = Named::from_observed(exe, None, None);
            n.exe = true;
            self.add_access(n, &shape, false, false);
        }
    }

    /// What a process held when `trace attach` started (see
    /// `capture::preexisting`): its program, mapped files, cwd, root and
    /// open files, as the kernel names them.
    pub fn add_preexisting(&mut self, held: &[super::preexisting::Held]) {
        for h in held {
            let access = Access {
                observed: true,
                ..Access::new(Op::Preexisting, h.how)
            };
            self.files.add(&h.path, false, &access);
        }
    }

    /// The trace of the run, its files included.
    pub fn finish(self, run: RunInfo) -> Trace {
        let (mut trace, files) = self.finish_streamed(run);
        files.collect_into(&mut trace);
        trace
    }

    /// The trace of the run with `files` empty, and its files one at a time
    /// in path order: what a run that touched millions of files writes
    /// without holding them all.
    pub fn finish_streamed(mut self, run: RunInfo) -> (Trace, Files) {
        let t = run.totals;
        // Submissions whose completion never came: what they did is unknown.
        for (_, sub) in std::mem::take(&mut self.uring) {
            let name = uring_op(sub.syscall, &sub).map_or("unknown", |(_, n)| n);
            self.count_unobserved("io_uring", format!("{name} (no completion)"), sub.pid, 1);
        }
        for u in &t.unobserved {
            self.count_unobserved(&u.channel, u.op.clone(), u.pid, u.count);
        }
        let mut counters = self.counters;
        counters.syscalls_seen = t.seen;
        counters.deduplicated_in_kernel = t.deduplicated;
        counters.missed_by_kernel = t.missed_by_kernel;
        let files = match std::mem::take(&mut self.files).into_entries() {
            Ok(entries) => Files {
                entries: Some(entries),
                error: None,
                drop: None,
            },
            Err(e) => Files {
                entries: None,
                error: Some(e),
                drop: None,
            },
        };
        let unobserved: Vec<Unobserved> = self
            .unobserved
            .into_iter()
            .map(|((channel, op, pid), count)| Unobserved {
                channel,
                op,
                pid,
                count,
            })
            .collect();
        let mut reasons = Vec::new();
        if t.lost.total > 0 {
            let causes: Vec<String> = t
                .lost
                .by_cause
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            reasons.push(format!(
                "{} events lost ({})",
                t.lost.total,
                causes.join(", ")
            ));
        }
        if counters.missed_by_kernel > 0 {
            reasons.push(format!(
                "{} events not delivered by the kernel (a program was already running on that CPU)",
                counters.missed_by_kernel
            ));
        }
        if counters.truncated_paths > 0 {
            reasons.push(format!(
                "{} paths could not be recorded whole",
                counters.truncated_paths
            ));
        }
        if counters.stale_bases > 0 {
            reasons.push(format!(
                "{} paths started from a directory that was freed, or from a working directory or root another thread changed, during the syscall",
                counters.stale_bases
            ));
        }
        if counters.proc_link_paths > 0 {
            reasons.push(format!(
                "{} paths went on through a /proc magic link (a process's cwd, root or descriptor), so the file the kernel reached is not named (first: {})",
                counters.proc_link_paths,
                self.proc_link_example.as_deref().unwrap_or("?")
            ));
        }
        if self.unreadable_ok > 0 {
            reasons.push(format!(
                "{} successful syscalls had a path that could not be read",
                self.unreadable_ok
            ));
        }
        if counters.malformed_records > 0 {
            reasons.push(format!(
                "{} records could not be decoded",
                counters.malformed_records
            ));
        }
        let mut by_channel: BTreeMap<&str, u64> = BTreeMap::new();
        for u in &unobserved {
            *by_channel.entry(u.channel.as_str()).or_default() += u.count;
        }
        for (channel, n) in by_channel {
            reasons.push(match channel {
                "cgroup" => format!(
                    "{n} traced process(es) moved to a cgroup outside the scope; what they did after was not traced"
                ),
                "unnamed" => format!(
                    "{n} files opened by handle had no path (a dentry cut off from its parents); they are not named"
                ),
                "sendmmsg" => format!(
                    "{n} sendmmsg calls sent to AF_UNIX paths besides the first message's, which alone is recorded"
                ),
                "bind mount" => format!(
                    "{n} successful lookups went through a bind or move mount made during the run, so the name asked for is not where the file lies (first: {})",
                    self.doubt_example.get(channel).map_or("?", String::as_str)
                ),
                "root" => format!(
                    "{n} successful lookups climbed `..` out of a root or a bind mount's source made during the run, where the kernel's `..` may not go where the name says (first: {})",
                    self.doubt_example.get(channel).map_or("?", String::as_str)
                ),
                "mount options" => format!(
                    "{n} overlay mounts take their directories from mount options, which are not recorded"
                ),
                _ => format!("{n} {channel} accesses seen but not recorded"),
            });
        }
        let trace = Trace {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            tool: format!("trace {}", env!("CARGO_PKG_VERSION")),
            command: run.command,
            exit: run.exit,
            scope: run.scope,
            complete: reasons.is_empty(),
            incomplete_reasons: reasons,
            lost_events: t.lost,
            unobserved,
            counters,
            syscalls: (!t.syscalls.arch.is_empty()).then_some(t.syscalls),
            merged_from: Vec::new(),
            execs: self.execs.into_values().collect(),
            files: Vec::new(),
        };
        (trace, files)
    }
}

/// The files of a finished run, in path order (see
/// `Collector::finish_streamed`).
pub struct Files {
    entries: Option<Entries>,
    error: Option<std::io::Error>,
    /// A path that belongs to the runtime, not the run.
    drop: Option<String>,
}

impl Files {
    /// Leaves `path` out (the engine's init, bind-mounted from the host).
    pub fn without(mut self, path: Option<&str>) -> Files {
        self.drop = path.map(str::to_string);
        self
    }

    /// Puts the files into `trace`; if they cannot be read back, the trace
    /// says so.
    pub fn collect_into(self, trace: &mut Trace) {
        match self.collect::<std::io::Result<Vec<FileEntry>>>() {
            Ok(f) => trace.files = f,
            Err(e) => {
                trace.complete = false;
                trace
                    .incomplete_reasons
                    .push(format!("the recorded accesses could not be read back: {e}"));
            }
        }
    }
}

impl Iterator for Files {
    type Item = std::io::Result<FileEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        loop {
            let next = self.entries.as_mut()?.next_entry();
            let (path, truncated, accesses) = match next {
                Ok(Some(e)) => e,
                Ok(None) => return None,
                Err(e) => {
                    self.entries = None;
                    return Some(Err(e));
                }
            };
            let entry = FileEntry {
                path: text(&path),
                path_hex: hex(&path).map(Into::into),
                truncated,
                accesses,
                seen_in: Vec::new(),
            };
            if self.drop.as_deref() != Some(entry.path.as_str()) {
                return Some(Ok(entry));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::capture::decode::tests::{header, record};
    use tracer_common::{EventHeader, Section, kind, section, syscalls::TABLE, walk_end};

    fn id(name: &str) -> u16 {
        TABLE.iter().position(|r| r.name == name).unwrap() as u16 + 1
    }

    fn ev(h: EventHeader, parts: [&[u8]; section::COUNT]) -> Event {
        Event::decode(&record(h, parts)).unwrap()
    }

    fn sys(name: &str, ret: i64, fl: u32, arg_flags: u64) -> EventHeader {
        let mut h = header(kind::SYSCALL, id(name), ret, fl);
        h.arg_flags = arg_flags;
        h
    }

    pub(crate) fn run_info() -> RunInfo {
        RunInfo {
            command: vec!["x".into()],
            exit: ExitInfo::default(),
            scope: ScopeInfo::default(),
            totals: Totals::default(),
        }
    }

    const E: &[u8] = b"";

    fn paths(t: &Trace) -> Vec<&str> {
        t.files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn open_is_named_by_the_observed_file_with_the_request_beside_it() {
        let mut c = Collector::new();
        // open("link/../x") from /w, where link -> real/sub: the kernel
        // opened /w/real/x.
        c.add(ev(
            sys("openat", 3, flags::HAS_BASE1 | flags::HAS_OBS, 0),
            [b"link/../x", E, b"w\0", b"x\0real\0w\0", E, E, E, E],
        ));
        let t = c.finish(run_info());
        assert_eq!(t.files.len(), 1);
        let f = &t.files[0];
        assert_eq!(f.path, "/w/real/x");
        let a = &f.accesses[0];
        assert!(a.observed);
        assert_eq!(a.requested.as_deref(), Some("/w/link/../x"));
        assert_eq!(a.raw.as_deref(), Some("link/../x"));
        assert_eq!(a.mode, Some(OpenMode::Read));
        assert!(t.complete);
    }

    #[test]
    fn own_root_in_proc_is_the_root_an_absolute_path_starts_at() {
        let mut c = Collector::new();
        // Chrooted at /r: its /proc/self/root is /r.
        c.add(ev(
            sys("newfstatat", 0, flags::HAS_BASE1, 0),
            [b"/proc/self/root/etc/../etc/x", E, b"r\0", E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        assert_eq!(paths(&t), ["/r/etc/x"]);
        let a = &t.files[0].accesses[0];
        assert_eq!(a.requested.as_deref(), Some("/r/etc/../etc/x"));
        assert_eq!(a.raw.as_deref(), Some("/proc/self/root/etc/../etc/x"));
        assert!(t.complete);
    }

    #[test]
    fn past_the_cwd_link_a_path_goes_on_from_the_working_directory() {
        let mut c = Collector::new();
        let cwd = flags::HAS_BASE1 | flags::BASE1_IS_CWD;
        c.add(ev(
            sys("newfstatat", 0, cwd, 0),
            [b"/proc/self/cwd/../x", E, b"d\0w\0", E, E, E, E, E],
        ));
        // The cwd is the scope's root: no walk.
        c.add(ev(
            sys("newfstatat", 0, flags::BASE1_IS_CWD, 0),
            [b"/proc/thread-self/cwd/etc/y", E, E, E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        assert_eq!(paths(&t), ["/etc/y", "/w/x"]);
        assert_eq!(
            t.files[1].accesses[0].requested.as_deref(),
            Some("/w/d/../x")
        );
        assert!(t.complete);
        // Failed: /proc itself may be what is missing.
        let mut c = Collector::new();
        c.add(ev(
            sys("newfstatat", -2, cwd, 0),
            [b"/proc/self/cwd/z", E, b"d\0w\0", E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        assert_eq!(paths(&t), ["/proc/self/cwd/z"]);
        assert!(!t.complete);
    }

    #[test]
    fn other_proc_links_and_failures_are_counted_not_renamed() {
        let mut c = Collector::new();
        // Failed: /proc itself may be what is missing.
        c.add(ev(
            sys("newfstatat", -2, 0, 0),
            [b"/proc/self/root/etc/y", E, E, E, E, E, E, E],
        ));
        // Relative, from a cwd in /proc.
        c.add(ev(
            sys("newfstatat", 0, flags::HAS_BASE1, 0),
            [b"self/cwd/x", E, b"proc\0", E, E, E, E, E],
        ));
        // Ends at the link: an lstat of the /proc entry itself.
        c.add(ev(
            sys("lstat", 0, 0, 0),
            [b"/proc/self/cwd", E, E, E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        assert_eq!(
            paths(&t),
            [
                "/proc/self/cwd",
                "/proc/self/cwd/x",
                "/proc/self/root/etc/y"
            ]
        );
        assert_eq!(t.counters.proc_link_paths, 2);
        assert!(!t.complete);
        assert!(
            t.incomplete_reasons[0].contains("(first: /proc/self/root/etc/y)"),
            "{:?}",
            t.incomplete_reasons
        );
    }

    #[test]
    fn quotactl_names_its_device_and_counts_a_quota_file() {
        let mut c = Collector::new();
        // QCMD(Q_GETQUOTA, USRQUOTA), then QCMD(Q_QUOTAON, GRPQUOTA).
        c.add(ev(
            sys("quotactl", 0, 0, 0x80_0007 << 8),
            [b"/dev/vda", E, E, E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        assert_eq!(paths(&t), ["/dev/vda"]);
        assert!(t.complete);
        let mut c = Collector::new();
        c.add(ev(
            sys("quotactl", 0, 0, 0x80_0002 << 8 | 1),
            [b"/dev/vda", E, E, E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        assert_eq!(paths(&t), ["/dev/vda"]);
        assert!(!t.complete);
        assert_eq!(t.unobserved[0].channel, "quotactl");
    }

    #[test]
    fn failed_lookup_keeps_dotdot_in_the_request() {
        let mut c = Collector::new();
        c.add(ev(
            sys("newfstatat", -2, flags::HAS_BASE1, 0),
            [b"link/../x", E, b"w\0", E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        let f = &t.files[0];
        // Folded for the entry's key only; the request is exact.
        assert_eq!(f.path, "/w/x");
        assert_eq!(f.accesses[0].requested.as_deref(), Some("/w/link/../x"));
        assert_eq!(f.accesses[0].result, "ENOENT");
        assert!(f.failed_only());
    }

    #[test]
    fn base_that_is_the_observed_parent_is_not_walked_twice() {
        let mut c = Collector::new();
        c.add(ev(
            sys(
                "openat",
                3,
                flags::HAS_BASE1 | flags::BASE1_IS_OBS_PARENT | flags::HAS_OBS,
                0o1101,
            ),
            [b"out.txt", E, E, b"out.txt\0tmp\0", E, E, E, E],
        ));
        let t = c.finish(run_info());
        let a = &t.files[0].accesses[0];
        assert_eq!(t.files[0].path, "/tmp/out.txt");
        assert_eq!(a.requested, None);
        assert_eq!(a.mode, Some(OpenMode::Write));
        assert!(a.create && a.creates());
        assert!(t.files[0].written());
    }

    #[test]
    fn foreign_mounts_and_outside_files_are_marked() {
        let mut c = Collector::new();
        let mut h = sys("openat", 3, flags::HAS_OBS, 0);
        h.sections[section::OBS].cross = 2;
        h.sections[section::OBS].magic = 0x0102_1994;
        c.add(ev(h, [b"/tmp/x", E, E, b"x\0tmp\0", E, E, E, E]));
        let mut h = sys("openat", 4, flags::HAS_OBS, 0);
        h.sections[section::OBS].end = walk_end::OUTSIDE;
        c.add(ev(h, [b"/y", E, E, b"y\0host\0", E, E, E, E]));
        let mut info = run_info();
        info.scope.image = Some("img".into());
        let t = c.finish(info);
        let x = t.files.iter().find(|f| f.path == "/tmp/x").unwrap();
        let m = x.accesses[0].mount.as_ref().unwrap();
        assert_eq!((m.fs.as_str(), m.at.as_str()), ("tmpfs", "/tmp"));
        // Not the image's file, though it exists.
        assert_eq!(x.accesses[0].need(), crate::model::trace::Need::Exists);
        assert!(!crate::closure::from_image(&t, &x.path, &x.accesses[0]));
        let y = t.files.iter().find(|f| f.path == "/host/y").unwrap();
        assert!(y.accesses[0].outside_root);
        assert!(t.complete);
    }

    #[test]
    fn two_path_syscalls_record_both_with_roles() {
        let mut c = Collector::new();
        c.add(ev(
            sys("rename", 0, 0, 0),
            [b"/a/old", b"/a/new", E, E, E, E, E, E],
        ));
        c.add(ev(
            sys("symlink", 0, flags::RAW2_CONTENT, 0),
            [b"/a/link", b"../target", E, E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        let get = |p: &str| &t.files.iter().find(|f| f.path == p).unwrap().accesses[0];
        assert_eq!(get("/a/old").role, Some(Role::Source));
        assert_eq!(get("/a/old").need(), crate::model::trace::Need::Exists);
        assert_eq!(get("/a/new").role, Some(Role::Target));
        assert_eq!(get("/a/new").need(), crate::model::trace::Need::Parent);
        assert_eq!(get("/a/link").content.as_deref(), Some("../target"));
        assert!(t.files.iter().all(|f| f.path != "/a/../target"));
    }

    #[test]
    fn readlink_einval_proves_the_path_exists() {
        let mut c = Collector::new();
        c.add(ev(
            sys("readlink", -22, 0, 0),
            [b"/etc/x", E, E, E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        assert!(t.files[0].used());
        assert_eq!(
            t.files[0].accesses[0].need(),
            crate::model::trace::Need::Exists
        );
    }

    #[test]
    fn stale_base_and_unobserved_make_the_trace_incomplete() {
        let mut c = Collector::new();
        let mut h = sys("newfstatat", 0, flags::HAS_BASE1, 0);
        h.sections[section::BASE1].end = walk_end::STALE;
        c.add(ev(h, [b"x", E, E, E, E, E, E, E]));
        let t = c.finish(run_info());
        assert!(t.files.is_empty());
        assert_eq!(t.counters.stale_bases, 1);
        assert!(!t.complete);
        assert!(
            t.incomplete_reasons[0].contains("freed"),
            "{:?}",
            t.incomplete_reasons
        );

        let mut info = run_info();
        info.totals.unobserved.push(Unobserved {
            channel: "io_uring".into(),
            op: "op_70".into(),
            pid: 5,
            count: 4,
        });
        let t = Collector::new().finish(info);
        assert!(!t.complete);
        assert_eq!(t.unobserved[0].count, 4);
        assert_eq!(
            t.incomplete_reasons,
            vec!["4 io_uring accesses seen but not recorded"]
        );
    }

    #[test]
    fn uring_submission_joins_its_completion() {
        let mut c = Collector::new();
        let mut h = header(kind::URING_SUBMIT, 18, 0, 0);
        h.cookie = 0xabc;
        c.add(ev(h, [b"/etc/hostname", E, E, E, E, E, E, E]));
        let mut h = header(kind::URING_COMPLETE, 18, 5, flags::HAS_OBS);
        h.cookie = 0xabc;
        c.add(ev(h, [E, E, E, b"hostname\0etc\0", E, E, E, E]));
        // A submission that never completes is counted, not recorded.
        let mut h = header(kind::URING_SUBMIT, 21, 0, 0);
        h.cookie = 0xdef;
        c.add(ev(h, [b"/etc/passwd", E, E, E, E, E, E, E]));
        let t = c.finish(run_info());
        let f = t.files.iter().find(|f| f.path == "/etc/hostname").unwrap();
        assert_eq!(f.accesses[0].channel.as_deref(), Some("io_uring"));
        assert!(f.accesses[0].observed);
        assert!(t.files.iter().all(|f| f.path != "/etc/passwd"));
        assert!(!t.complete);
        assert_eq!(t.unobserved[0].op, "statx (no completion)");
    }

    #[test]
    fn execveat_of_a_descriptor_names_its_file() {
        let mut c = Collector::new();
        let mut h = header(
            kind::EXEC,
            id("execveat"),
            0,
            flags::HAS_BASE1 | flags::HAS_EXE | flags::HAS_INTERP | flags::RAW1_IS_FDPATH,
        );
        h.dirfd1 = 3;
        c.add(ev(
            h,
            [
                b"/dev/fd/3/run.sh",
                E,
                b"d\0w\0",
                E,
                E,
                b"dash\0bin\0usr\0",
                b"run.sh\0",
                b"/bin/sh",
            ],
        ));
        let t = c.finish(run_info());
        assert_eq!(t.execs[0].path, "/w/d/run.sh");
        assert_eq!(t.execs[0].interpreter.as_deref(), Some("/bin/sh"));
        let dash = t.files.iter().find(|f| f.path == "/usr/bin/dash").unwrap();
        assert!(dash.accesses[0].exe);
        assert!(t.files.iter().any(|f| f.path == "/w/d/run.sh"));
        assert!(t.files.iter().all(|f| !f.path.starts_with("/dev/fd")));
    }

    #[test]
    fn a_syscall_a_signal_interrupted_is_eintr_as_the_program_sees_it() {
        let mut c = Collector::new();
        c.add(ev(
            sys("openat", -512, 0, 0),
            [b"/fifo", E, E, E, E, E, E, E],
        ));
        let t = c.finish(run_info());
        let a = &t.files[0].accesses[0];
        assert_eq!((&*a.result, a.errno), ("EINTR", Some(4)));
    }

    #[test]
    fn an_exec_of_a_name_that_is_not_utf8_keeps_its_bytes() {
        let mut c = Collector::new();
        let h = header(kind::EXEC, id("execve"), 0, flags::HAS_EXE);
        c.add(ev(
            h,
            [b"/opt/caf\xe9", E, E, E, E, b"caf\xe9\0opt\0", b"x\0", E],
        ));
        let t = c.finish(run_info());
        assert_eq!(t.execs[0].path_hex.as_deref(), Some("2f6f70742f636166e9"));
        assert_eq!(t.execs[0].exe_hex.as_deref(), Some("2f6f70742f636166e9"));
    }

    #[test]
    fn an_absolute_dev_fd_path_given_to_execveat_is_the_programs_own() {
        let mut c = Collector::new();
        // execveat(3, "/dev/fd/4/run.sh"): the kernel ignores the dirfd.
        let mut h = header(
            kind::EXEC,
            id("execveat"),
            0,
            flags::HAS_EXE | flags::HAS_INTERP,
        );
        h.dirfd1 = 3;
        c.add(ev(
            h,
            [
                b"/dev/fd/4/run.sh",
                E,
                E,
                E,
                E,
                b"dash\0bin\0usr\0",
                b"run.sh\0",
                b"/bin/sh",
            ],
        ));
        let t = c.finish(run_info());
        assert_eq!(t.execs[0].path, "/dev/fd/4/run.sh");
        // Through a magic link to a file it does not name: counted.
        assert_eq!(t.counters.proc_link_paths, 1);
        assert!(!t.complete);
    }

    #[test]
    fn a_file_with_no_path_is_named_as_asked_never_as_the_root() {
        let mut c = Collector::new();
        // open("/dev/stdin") of a pipe: the walk ends at once, unnamed.
        let mut h = sys("openat", 3, flags::HAS_OBS, 0);
        h.sections[section::OBS].end = walk_end::UNNAMED;
        h.sections[section::OBS].magic = 0x5049_5045;
        c.add(ev(h, [b"/dev/stdin", E, E, E, E, E, E, E]));
        // fexecve of a memfd.
        let mut h = header(
            kind::EXEC,
            id("execveat"),
            0,
            flags::HAS_BASE1 | flags::HAS_EXE | flags::RAW1_IS_FDPATH,
        );
        h.dirfd1 = 4;
        h.sections[section::BASE1].end = walk_end::UNNAMED;
        h.sections[section::EXE].end = walk_end::UNNAMED;
        c.add(ev(h, [b"/dev/fd/4", E, E, E, E, E, b"payload\0", E]));
        let t = c.finish(run_info());
        assert_eq!(paths(&t), ["/dev/fd/4", "/dev/stdin"]);
        let stdin = &t.files[1].accesses[0];
        assert!(!stdin.observed && !stdin.outside_root);
        assert_eq!(t.execs[0].path, "/dev/fd/4");
        assert_eq!(t.execs[0].exe, None);
        assert!(t.complete);
    }

    #[test]
    fn a_handle_opened_with_no_path_makes_the_trace_incomplete() {
        let mut c = Collector::new();
        let mut h = sys("open_by_handle_at", 3, flags::HAS_OBS, 0);
        h.sections[section::OBS].end = walk_end::UNNAMED;
        c.add(ev(h, [E, E, E, b"f\0", E, E, E, E]));
        let t = c.finish(run_info());
        assert!(t.files.is_empty());
        assert!(!t.complete);
        assert_eq!(t.unobserved[0].channel, "unnamed");
    }

    #[test]
    fn same_access_twice_is_one_entry() {
        let mut c = Collector::new();
        for _ in 0..3 {
            c.add(ev(
                sys("open", 3, 0, 0),
                [b"/etc/passwd", E, E, E, E, E, E, E],
            ));
        }
        let t = c.finish(run_info());
        assert_eq!(t.files.len(), 1);
        assert_eq!(t.files[0].accesses.len(), 1);
        assert_eq!(t.counters.records, 3);
    }

    #[test]
    fn compat_syscalls_say_their_abi() {
        let mut c = Collector::new();
        let mut h = sys("stat64", 0, 0, 0);
        h.abi = tracer_common::abi::COMPAT;
        c.add(ev(h, [b"/etc/x", E, E, E, E, E, E, E]));
        let t = c.finish(run_info());
        assert_eq!(t.files[0].accesses[0].syscall, "stat64");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(t.files[0].accesses[0].abi.as_deref(), Some("x86"));
        let _ = Section::NO_CROSS;
    }
}
