//! The syscalls `trace` records, by name, with what their arguments hold.
//!
//! Names are the kernel's syscall-table names (`arch/*/entry/syscalls/*.tbl`,
//! as the `syscalls` crate spells them); the loader maps each to its
//! number on the running architecture, for the native and the compat ABI,
//! and hands the kernel side a [`SyscallSpec`] per number. A row applies to
//! every ABI that has a syscall of that name unless `abi` says otherwise.
use crate::{
    SyscallSpec, abi, class,
    fcntl::{O_RDWR, O_WRONLY},
    spec_flags,
};

/// What a recorded access means, whatever syscall made it.
pub mod op {
    pub const OPEN: u8 = 1;
    pub const STAT: u8 = 2;
    pub const ACCESS: u8 = 3;
    pub const READLINK: u8 = 4;
    pub const CHDIR: u8 = 5;
    pub const EXEC: u8 = 6;
    /// getdents: the directory was listed.
    pub const LIST: u8 = 7;
    /// getxattr/listxattr: extended attributes read.
    pub const XATTR: u8 = 8;
    /// setxattr/removexattr.
    pub const SETXATTR: u8 = 9;
    pub const STATFS: u8 = 10;
    /// inotify_add_watch, fanotify_mark.
    pub const WATCH: u8 = 11;
    /// connect to an `AF_UNIX` path.
    pub const CONNECT: u8 = 12;
    /// bind to an `AF_UNIX` path (creates the socket file).
    pub const BIND: u8 = 13;
    /// path1 the existing file, path2 the new name.
    pub const LINK: u8 = 14;
    /// path1 the old name, path2 the new.
    pub const RENAME: u8 = 15;
    pub const MKDIR: u8 = 16;
    pub const RMDIR: u8 = 17;
    pub const UNLINK: u8 = 18;
    /// path1 the new link, path2 its content.
    pub const SYMLINK: u8 = 19;
    pub const MKNOD: u8 = 20;
    pub const TRUNCATE: u8 = 21;
    pub const UTIME: u8 = 22;
    pub const CHMOD: u8 = 23;
    pub const CHOWN: u8 = 24;
    pub const CHROOT: u8 = 25;
    /// path1 the mount point, path2 a bind's (or move's) source.
    pub const MOUNT: u8 = 26;
    pub const UMOUNT: u8 = 27;
    /// path1 the new root, path2 where the old one goes.
    pub const PIVOT_ROOT: u8 = 28;
    /// move_mount: path1 the mount moved, path2 where to.
    pub const MOVE_MOUNT: u8 = 29;
    /// name_to_handle_at, fspick: a lookup, like stat.
    pub const LOOKUP: u8 = 30;
}

/// One recorded syscall.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// The kernel's table name (`newfstatat`, `stat64`).
    pub name: &'static str,
    /// The ABI this row is for, when the arguments differ per ABI.
    pub abi: Option<u8>,
    pub op: u8,
    pub class: u8,
    pub dirfd1: i8,
    pub path1: i8,
    pub dirfd2: i8,
    pub path2: i8,
    pub flags: i8,
    pub flags2: i8,
    pub aux: i8,
    pub spec_flags: u8,
    pub fixed_flags: u64,
}

const N: i8 = SyscallSpec::NONE;
/// `O_WRONLY | O_CREAT | O_TRUNC` as creat() implies them. The same bits
/// on every architecture `trace` supports (asm-generic/fcntl.h values;
/// x86 and arm64 do not override them).
pub const CREAT_FLAGS: u64 = 0o1 | 0o100 | 0o1000;
/// `AT_SYMLINK_NOFOLLOW`, generic.
pub const AT_SYMLINK_NOFOLLOW: u64 = 0x100;

const fn row(name: &'static str, op: u8) -> Row {
    Row {
        name,
        abi: None,
        op,
        class: class::PLAIN,
        dirfd1: N,
        path1: N,
        dirfd2: N,
        path2: N,
        flags: N,
        flags2: N,
        aux: N,
        spec_flags: 0,
        fixed_flags: 0,
    }
}

/// `name(path, ...)`, flags in argument `flags` (or none).
const fn p(name: &'static str, op: u8, flags: i8) -> Row {
    let mut r = row(name, op);
    r.path1 = 0;
    r.flags = flags;
    r
}

/// `name(dirfd, path, ...)`, flags in argument `flags` (or none).
const fn at(name: &'static str, op: u8, flags: i8) -> Row {
    let mut r = row(name, op);
    r.dirfd1 = 0;
    r.path1 = 1;
    r.flags = flags;
    r
}

/// `name(old, new)`.
const fn two(name: &'static str, op: u8) -> Row {
    let mut r = row(name, op);
    r.path1 = 0;
    r.path2 = 1;
    r
}

/// `name(olddirfd, old, newdirfd, new, flags)`.
const fn two_at(name: &'static str, op: u8, flags: i8) -> Row {
    let mut r = row(name, op);
    r.dirfd1 = 0;
    r.path1 = 1;
    r.dirfd2 = 2;
    r.path2 = 3;
    r.flags = flags;
    r
}

const fn class_of(mut r: Row, class: u8) -> Row {
    r.class = class;
    r
}

const fn fixed(mut r: Row, fixed_flags: u64) -> Row {
    r.fixed_flags = fixed_flags;
    r
}

const fn flags2(mut r: Row, flags2: i8) -> Row {
    r.flags2 = flags2;
    r
}

const fn only(mut r: Row, abi: u8) -> Row {
    r.abi = Some(abi);
    r
}

const fn ns(mut r: Row) -> Row {
    r.spec_flags |= spec_flags::NS_CHANGE;
    r
}

/// What a successful call leaves to observe (`RESULT_PWD`, `RESULT_ROOT`),
/// or that it changes the cwd or root of tasks (`FS_CHANGE`).
const fn result_is(mut r: Row, flag: u8) -> Row {
    r.spec_flags |= flag;
    r
}

const NOFOLLOW: u64 = AT_SYMLINK_NOFOLLOW;

/// Every recorded syscall. The order is the record ABI (`SyscallSpec::id`
/// is the index + 1): append, never reorder.
pub const TABLE: &[Row] = &[
    // fd-returning opens: the new descriptor's file is observed.
    class_of(p("open", op::OPEN, 1), class::FD_RESULT),
    class_of(at("openat", op::OPEN, 2), class::FD_RESULT),
    {
        let mut r = class_of(at("openat2", op::OPEN, N), class::OPENAT2);
        r.aux = 2;
        r
    },
    fixed(
        class_of(p("creat", op::OPEN, N), class::FD_RESULT),
        CREAT_FLAGS,
    ),
    {
        // open_by_handle_at(mount_fd, handle, flags): no path at all.
        let mut r = class_of(row("open_by_handle_at", op::OPEN), class::FD_RESULT);
        r.flags = 2;
        r
    },
    class_of(at("open_tree", op::OPEN, 2), class::FD_RESULT),
    class_of(at("open_tree_attr", op::OPEN, 2), class::FD_RESULT),
    // Probes.
    p("stat", op::STAT, N),
    fixed(p("lstat", op::STAT, N), NOFOLLOW),
    p("oldstat", op::STAT, N),
    fixed(p("oldlstat", op::STAT, N), NOFOLLOW),
    p("stat64", op::STAT, N),
    fixed(p("lstat64", op::STAT, N), NOFOLLOW),
    at("newfstatat", op::STAT, 3),
    at("fstatat64", op::STAT, 3),
    at("statx", op::STAT, 2),
    p("access", op::ACCESS, 1),
    at("faccessat", op::ACCESS, 2),
    flags2(at("faccessat2", op::ACCESS, 2), 3),
    p("readlink", op::READLINK, N),
    at("readlinkat", op::READLINK, N),
    at("name_to_handle_at", op::LOOKUP, 4),
    at("fspick", op::LOOKUP, 2),
    // Working directory, root, exec.
    result_is(p("chdir", op::CHDIR, N), spec_flags::RESULT_PWD),
    {
        let mut r = class_of(row("fchdir", op::CHDIR), class::FD_ARG);
        r.dirfd1 = 0;
        r.spec_flags = spec_flags::FS_CHANGE;
        r
    },
    result_is(p("chroot", op::CHROOT, N), spec_flags::RESULT_ROOT),
    class_of(p("execve", op::EXEC, N), class::EXEC),
    class_of(at("execveat", op::EXEC, 4), class::EXEC),
    // Directory listings.
    {
        let mut r = class_of(row("getdents64", op::LIST), class::FD_ARG);
        r.dirfd1 = 0;
        r
    },
    {
        let mut r = class_of(row("getdents", op::LIST), class::FD_ARG);
        r.dirfd1 = 0;
        r
    },
    // Extended attributes.
    p("getxattr", op::XATTR, N),
    fixed(p("lgetxattr", op::XATTR, N), NOFOLLOW),
    p("listxattr", op::XATTR, N),
    fixed(p("llistxattr", op::XATTR, N), NOFOLLOW),
    at("getxattrat", op::XATTR, 2),
    at("listxattrat", op::XATTR, 2),
    p("setxattr", op::SETXATTR, N),
    fixed(p("lsetxattr", op::SETXATTR, N), NOFOLLOW),
    p("removexattr", op::SETXATTR, N),
    fixed(p("lremovexattr", op::SETXATTR, N), NOFOLLOW),
    at("setxattrat", op::SETXATTR, 2),
    at("removexattrat", op::SETXATTR, 2),
    at("file_getattr", op::XATTR, 4),
    at("file_setattr", op::SETXATTR, 4),
    // Filesystem facts and watches.
    p("statfs", op::STATFS, N),
    p("statfs64", op::STATFS, N),
    {
        // inotify_add_watch(fd, path, mask): relative to the cwd.
        let mut r = row("inotify_add_watch", op::WATCH);
        r.path1 = 1;
        r.flags = 2;
        r
    },
    {
        // fanotify_mark(fd, flags, u64 mask, dirfd, path).
        let mut r = only(row("fanotify_mark", op::WATCH), abi::NATIVE);
        r.flags = 1;
        r.dirfd1 = 3;
        r.path1 = 4;
        r
    },
    {
        // The compat ABI splits the 64-bit mask over two arguments.
        let mut r = only(row("fanotify_mark", op::WATCH), abi::COMPAT);
        r.flags = 1;
        r.dirfd1 = 4;
        r.path1 = 5;
        r
    },
    // Unix sockets: connect(fd, addr, len), bind(fd, addr, len).
    {
        let mut r = class_of(row("connect", op::CONNECT), class::SOCKADDR);
        r.path1 = 1;
        r.aux = 2;
        r
    },
    {
        let mut r = class_of(row("bind", op::BIND), class::SOCKADDR);
        r.path1 = 1;
        r.aux = 2;
        r
    },
    {
        // ia32 socketcall(call, unsigned long *args): the address and its
        // length are args[1] and args[2].
        let mut r = class_of(row("socketcall", op::CONNECT), class::SOCKETCALL);
        r.flags = 0;
        r.aux = 1;
        r
    },
    // Namespace changes.
    two("link", op::LINK),
    two_at("linkat", op::LINK, 4),
    ns(two("rename", op::RENAME)),
    ns(two_at("renameat", op::RENAME, N)),
    ns(two_at("renameat2", op::RENAME, 4)),
    p("mkdir", op::MKDIR, 1),
    at("mkdirat", op::MKDIR, 2),
    p("rmdir", op::RMDIR, N),
    p("unlink", op::UNLINK, N),
    at("unlinkat", op::UNLINK, 2),
    {
        // symlink(target, linkpath): the link is looked up (created),
        // the target is only stored.
        let mut r = row("symlink", op::SYMLINK);
        r.path1 = 1;
        r.path2 = 0;
        r.spec_flags = spec_flags::PATH2_CONTENT;
        r
    },
    {
        // symlinkat(target, newdirfd, linkpath).
        let mut r = row("symlinkat", op::SYMLINK);
        r.dirfd1 = 1;
        r.path1 = 2;
        r.path2 = 0;
        r.spec_flags = spec_flags::PATH2_CONTENT;
        r
    },
    p("mknod", op::MKNOD, 1),
    at("mknodat", op::MKNOD, 2),
    // Metadata changes.
    p("truncate", op::TRUNCATE, N),
    p("truncate64", op::TRUNCATE, N),
    p("utime", op::UTIME, N),
    p("utimes", op::UTIME, N),
    at("futimesat", op::UTIME, N),
    at("utimensat", op::UTIME, 3),
    at("utimensat_time64", op::UTIME, 3),
    p("chmod", op::CHMOD, 1),
    at("fchmodat", op::CHMOD, 2),
    flags2(at("fchmodat2", op::CHMOD, 2), 3),
    p("chown", op::CHOWN, N),
    fixed(p("lchown", op::CHOWN, N), NOFOLLOW),
    p("chown32", op::CHOWN, N),
    fixed(p("lchown32", op::CHOWN, N), NOFOLLOW),
    flags2(at("fchownat", op::CHOWN, N), 4),
    // Mounts.
    {
        // mount(source, target, fstype, flags, data); `aux` the fstype,
        // kept instead of a source that is not a path.
        let mut r = ns(class_of(row("mount", op::MOUNT), class::MOUNT));
        r.path1 = 1;
        r.path2 = 0;
        r.flags = 3;
        r.aux = 2;
        r
    },
    ns(p("umount", op::UMOUNT, N)),
    ns(p("umount2", op::UMOUNT, 1)),
    // pivot_root moves the cwd and root of every task that had the old root.
    result_is(ns(two("pivot_root", op::PIVOT_ROOT)), spec_flags::FS_CHANGE),
    ns(two_at("move_mount", op::MOVE_MOUNT, 4)),
    // An AF_UNIX datagram's address is looked up as connect's is:
    // sendto(fd, buf, len, flags, addr, addrlen).
    {
        let mut r = class_of(row("sendto", op::CONNECT), class::SOCKADDR);
        r.path1 = 4;
        r.aux = 5;
        r
    },
    {
        // sendmsg(fd, msghdr, flags).
        let mut r = class_of(row("sendmsg", op::CONNECT), class::MSGHDR);
        r.path1 = 1;
        r
    },
    {
        // sendmmsg(fd, mmsghdr *vec, vlen, flags).
        let mut r = class_of(row("sendmmsg", op::CONNECT), class::MSGHDR);
        r.path1 = 1;
        r.aux = 2;
        r
    },
    // Files the kernel opens by name for privileged calls: acct opens
    // its file for writing, swapon and swapoff read-write; uselib opens a
    // library to map it.
    fixed(p("acct", op::OPEN, N), O_WRONLY),
    fixed(p("swapon", op::OPEN, N), O_RDWR),
    fixed(p("swapoff", op::OPEN, N), O_RDWR),
    p("uselib", op::OPEN, N),
    {
        // quotactl(cmd, special, id, addr): the block device is looked up.
        // The cmd is kept: Q_QUOTAON's quota file (addr) is not recorded.
        let mut r = row("quotactl", op::LOOKUP);
        r.path1 = 1;
        r.flags = 0;
        r
    },
    // mount_setattr(dirfd, path, flags, attr, size).
    at("mount_setattr", op::LOOKUP, 2),
    {
        // fsopen(fsname, flags): the filesystem type is kept (`content`),
        // as overlayfs looks up paths given in its options later.
        let mut r = row("fsopen", op::MOUNT);
        r.path2 = 0;
        r.spec_flags = spec_flags::PATH2_CONTENT;
        r
    },
];

impl Row {
    /// The spec the kernel side gets for this row (`index` in [`TABLE`]).
    pub const fn spec(&self, index: usize) -> SyscallSpec {
        SyscallSpec {
            id: index as u16 + 1,
            class: self.class,
            dirfd1: self.dirfd1,
            path1: self.path1,
            dirfd2: self.dirfd2,
            path2: self.path2,
            flags: self.flags,
            flags2: self.flags2,
            aux: self.aux,
            spec_flags: self.spec_flags,
            _pad: 0,
            _pad2: 0,
            fixed_flags: self.fixed_flags,
        }
    }
}

/// The row a record's `syscall` id names.
pub fn row_of(id: u16) -> Option<&'static Row> {
    TABLE.get(usize::from(id).checked_sub(1)?)
}
