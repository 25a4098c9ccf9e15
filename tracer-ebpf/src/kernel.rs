//! Reading kernel structures: the task's root, cwd, open files and mm, and
//! turning a (vfsmount, dentry) pair into path components relative to the
//! scope's root.
//!
//! Offsets come from BTF through `CONFIG.offsets`; every read goes through
//! `bpf_probe_read_kernel`, so a wrong offset yields garbage, never a crash.
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_current_task, bpf_loop, bpf_probe_read_kernel_str},
    },
};
use tracer_common::{DATA_MASK, NAME_BUF, Section, WALK_LIMIT, WALK_MAX_DEPTH, walk_end};

use crate::{
    conf,
    maps::{DentryLook, KRef, WALK, scratch},
};

#[inline(always)]
pub fn read_u64(addr: u64) -> u64 {
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

#[inline(always)]
pub fn read_u32(addr: u64) -> u32 {
    unsafe { bpf_probe_read_kernel(addr as *const u32) }.unwrap_or(0)
}

#[inline(always)]
pub fn current_task() -> u64 {
    unsafe { bpf_get_current_task() }
}

/// `N` consecutive words at `addr`; all zero if unreadable.
///
/// Each `bpf_probe_read_kernel` costs a helper call and an address check
/// (the programs' largest single cost on a stat-heavy workload), so
/// fields that lie side by side are read together. The layouts are checked against
/// the offsets from BTF: `CONFIG` is read-only, so the verifier keeps one
/// branch, and a kernel laid out otherwise gets the field-by-field reads.
#[inline(always)]
fn read_words<const N: usize>(addr: u64) -> [u64; N] {
    unsafe { bpf_probe_read_kernel(addr as *const [u64; N]) }.unwrap_or([0; N])
}

/// The words at `addr + a` and `addr + b`: one read when they lie side by
/// side (`b == a + 8`), as they do on the kernels `trace` knows.
#[inline(always)]
fn pair_at(addr: u64, a: u64, b: u64) -> (u64, u64) {
    if b == a + 8 {
        let [x, y] = read_words::<2>(addr + a);
        (x, y)
    } else {
        (read_u64(addr + a), read_u64(addr + b))
    }
}

/// A `struct path` at `addr`: (mnt, dentry).
#[inline(always)]
fn path_at(addr: u64) -> (u64, u64) {
    pair_at(
        addr,
        conf!(offsets.path_mnt) as u64,
        conf!(offsets.path_dentry) as u64,
    )
}

/// A `struct path` at `addr`, with its dentry's inode.
#[inline(always)]
fn read_path(addr: u64) -> KRef {
    let (mnt, dentry) = path_at(addr);
    KRef {
        mnt,
        dentry,
        inode: inode_of(dentry),
    }
}

/// The fields of a dentry that naming and looking at it need.
pub struct DentryHead {
    pub parent: u64,
    pub hash_len: u64,
    /// `d_name.name`.
    pub name: u64,
    pub inode: u64,
}

/// `d_parent`, `d_name` and `d_inode`: consecutive words on the kernels
/// `trace` knows, then one read.
#[inline(always)]
pub fn dentry_head(dentry: u64) -> DentryHead {
    let p = conf!(offsets.dentry_parent) as u64;
    let hash_len = (conf!(offsets.dentry_name) + conf!(offsets.qstr_hash_len)) as u64;
    let name = (conf!(offsets.dentry_name) + conf!(offsets.qstr_name)) as u64;
    let inode = conf!(offsets.dentry_inode) as u64;
    if hash_len == p + 8 && name == p + 16 && inode == p + 24 {
        let [parent, hash_len, name, inode] = read_words::<4>(dentry + p);
        DentryHead {
            parent,
            hash_len,
            name,
            inode,
        }
    } else {
        DentryHead {
            parent: read_u64(dentry + p),
            hash_len: read_u64(dentry + hash_len),
            name: read_u64(dentry + name),
            inode: read_u64(dentry + inode),
        }
    }
}

#[inline(always)]
pub fn inode_of(dentry: u64) -> u64 {
    if dentry == 0 {
        return 0;
    }
    read_u64(dentry + conf!(offsets.dentry_inode) as u64)
}

/// The dentry still holds the inode it held when `r` was saved: it was
/// not freed and reused for another file in between.
#[inline(always)]
pub fn still_valid(r: &KRef) -> bool {
    r.dentry != 0 && inode_of(r.dentry) == r.inode
}

/// What `dentry` looks like now (see `maps::DentryLook`); all zero for
/// no dentry.
#[inline(always)]
pub fn look(dentry: u64) -> DentryLook {
    if dentry == 0 {
        return DentryLook::default();
    }
    let h = dentry_head(dentry);
    DentryLook {
        inode: h.inode,
        parent: h.parent,
        hash_len: h.hash_len,
    }
}

#[inline(always)]
pub fn fs_of(task: u64) -> u64 {
    read_u64(task + conf!(offsets.task_fs) as u64)
}

/// The task's `fs_struct` and `files_struct` (side by side in
/// `task_struct`: one read for both).
#[inline(always)]
pub fn fs_and_files_of(task: u64) -> (u64, u64) {
    pair_at(
        task,
        conf!(offsets.task_fs) as u64,
        conf!(offsets.task_files) as u64,
    )
}

/// The task's root directory (what `/` means to it: differs in a chroot
/// or container). Its inode is not read: a task's root is pinned for as
/// long as it is the root, so it needs no check.
#[inline(always)]
pub fn root_of(fs: u64) -> KRef {
    let (mnt, dentry) = path_at(fs + conf!(offsets.fs_root) as u64);
    KRef {
        mnt,
        dentry,
        inode: 0,
    }
}

#[inline(always)]
pub fn pwd_of(fs: u64) -> KRef {
    read_path(fs + conf!(offsets.fs_pwd) as u64)
}

/// The `struct file *` open as `fd` in the descriptor table `files`, or 0.
#[inline(always)]
pub fn fd_file_in(files: u64, fd: i64) -> u64 {
    if fd < 0 || files == 0 {
        return 0;
    }
    let fdt = read_u64(files + conf!(offsets.files_fdt) as u64);
    let (max_off, fd_off) = (
        conf!(offsets.fdt_max_fds) as u64,
        conf!(offsets.fdt_fd) as u64,
    );
    // `unsigned int max_fds` in the low half of the word before `fd`
    // (little-endian: the architectures `trace` supports).
    let (max, fds) = if fd_off == max_off + 8 {
        let [max, fds] = read_words::<2>(fdt + max_off);
        (max & 0xffff_ffff, fds)
    } else {
        (read_u32(fdt + max_off) as u64, read_u64(fdt + fd_off))
    };
    if fd as u64 >= max {
        return 0;
    }
    read_u64(fds + (fd as u64) * 8)
}

/// The path of the file open as `fd` in the task, if any.
#[inline(always)]
pub fn fd_path(task: u64, fd: i64) -> Option<KRef> {
    if fd < 0 {
        return None;
    }
    fd_path_in(read_u64(task + conf!(offsets.task_files) as u64), fd)
}

/// [`fd_path`] in the descriptor table `files` (a task's own table does
/// not change under it during one of its syscalls).
#[inline(always)]
pub fn fd_path_in(files: u64, fd: i64) -> Option<KRef> {
    let file = fd_file_in(files, fd);
    if file == 0 {
        return None;
    }
    Some(file_path(file))
}

#[inline(always)]
pub fn file_path(file: u64) -> KRef {
    read_path(file + conf!(offsets.file_path) as u64)
}

/// The inode number of the task's mount namespace.
#[inline(always)]
pub fn mnt_ns(task: u64) -> u32 {
    let nsproxy = read_u64(task + conf!(offsets.task_nsproxy) as u64);
    let ns = read_u64(nsproxy + conf!(offsets.nsproxy_mnt_ns) as u64);
    read_u32(ns + conf!(offsets.mntns_inum) as u64)
}

/// `task->start_boottime`: with the pid, identifies one process for good.
#[inline(always)]
pub fn start_time(task: u64) -> u64 {
    read_u64(task + conf!(offsets.task_start_boottime) as u64)
}

#[inline(always)]
pub fn dentry_sb(dentry: u64) -> u64 {
    read_u64(dentry + conf!(offsets.dentry_sb) as u64)
}

#[inline(always)]
pub fn dentry_parent(dentry: u64) -> u64 {
    read_u64(dentry + conf!(offsets.dentry_parent) as u64)
}

/// The current syscall is a compat-ABI one (ia32 on x86_64).
#[inline(always)]
pub fn in_compat_syscall(task: u64) -> bool {
    let mask = conf!(offsets.compat_mask);
    mask != 0 && read_u32(task + conf!(offsets.compat_word) as u64) & mask != 0
}

/// User addresses of the task's argv block.
#[inline(always)]
pub fn arg_range(task: u64) -> (u64, u64) {
    let mm = read_u64(task + conf!(offsets.task_mm) as u64);
    (
        read_u64(mm + conf!(offsets.mm_arg_start) as u64),
        read_u64(mm + conf!(offsets.mm_arg_end) as u64),
    )
}

const END_RUNNING: u64 = 0;

/// One step of the walk: emit one name or cross one mount. Returns 1 to
/// stop. The walk's state lives in map memory (`WALK`), whose contents the
/// verifier does not track, so the callback converges after one pass
/// instead of being re-verified for every value `pos` could take.
///
/// On the scope's root filesystem the walk follows `d_parent` only and
/// ignores mounts: a file reached through a bind mount, a chroot, a
/// private mount namespace or a `pivot_root` is named where it lies in
/// that filesystem, which is where it lies in the image. On any other
/// filesystem (a tmpfs, /proc, a bind from the host) it crosses mounts the
/// way `d_path` does, so the name is the one the process saw, and it
/// records where it first crossed.
#[inline(never)]
extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(c), Some(buf)) = (WALK.get_ptr_mut(0), scratch()) else {
        return 1;
    };
    let c = unsafe { &mut *c };
    if c.dentry == c.stop_dentry {
        c.end = walk_end::ROOT as u64;
        return 1;
    }
    let head = dentry_head(c.dentry);
    let parent = head.parent;
    if c.on_root_sb == 0 {
        let sb = dentry_sb(c.dentry);
        if sb == c.root_sb && sb != 0 {
            c.on_root_sb = 1;
        } else {
            if c.first != 0 {
                c.magic = read_u32(sb + conf!(offsets.sb_magic) as u64) as u64;
            }
            c.first = 0;
            let mnt_root = read_u64(c.mnt + conf!(offsets.vfsmount_root) as u64);
            if c.dentry == mnt_root || c.dentry == parent {
                let mount_parent = read_u64(c.mount + conf!(offsets.mount_parent) as u64);
                if mount_parent == c.mount || mount_parent == 0 {
                    // The top of the mount tree, and the root was not on
                    // the way.
                    c.end = walk_end::OUTSIDE as u64;
                    return 1;
                }
                if c.cross == Section::NO_CROSS as u64 {
                    c.cross = c.pos - c.start;
                }
                c.dentry = read_u64(c.mount + conf!(offsets.mount_mountpoint) as u64);
                c.mount = mount_parent;
                c.mnt = mount_parent + conf!(offsets.mount_mnt) as u64;
                return 0;
            }
        }
    }
    c.first = 0;
    if c.on_root_sb != 0 && c.dentry == parent {
        // The top of the root filesystem without meeting the scope's root
        // (a file outside `--root`'s directory).
        c.end = walk_end::OUTSIDE as u64;
        return 1;
    }
    let pos = c.pos as usize;
    if pos > WALK_LIMIT - NAME_BUF {
        c.end = walk_end::TRUNCATED as u64;
        return 1;
    }
    let name = head.name;
    let n = unsafe {
        bpf_probe_read_kernel_str(
            (*buf).data.as_mut_ptr().add(pos & DATA_MASK) as *mut c_void,
            NAME_BUF as u32,
            name as *const c_void,
        )
    };
    if n <= 0 {
        c.end = walk_end::TRUNCATED as u64;
        return 1;
    }
    c.pos = (pos + ((n as usize) & (NAME_BUF * 2 - 1))) as u64;
    c.dentry = parent;
    0
}

/// Writes the names of `at` and its ancestors, leaf first, each with its
/// NUL, into the scratch record's data from `pos`, up to `stop_dentry`
/// (the scope's root). Returns the new position and the section's walk
/// facts (`len` is filled in; `end`, `cross`, `magic`).
#[inline(always)]
pub fn walk(pos: usize, at: &KRef, stop_dentry: u64, root_sb: u64) -> (usize, Section) {
    let mut section = Section {
        len: 0,
        cross: Section::NO_CROSS,
        end: walk_end::TRUNCATED,
        _pad: 0,
        _pad2: 0,
        magic: 0,
    };
    let Some(c) = WALK.get_ptr_mut(0) else {
        return (pos, section);
    };
    // Field by field, the zeros volatile: merged zero stores become a
    // call to a byte-loop memset.
    use core::ptr::write_volatile as w;
    unsafe {
        (*c).pos = pos as u64;
        (*c).start = pos as u64;
        (*c).mnt = at.mnt;
        (*c).dentry = at.dentry;
        (*c).mount = at.mnt - conf!(offsets.mount_mnt) as u64;
        (*c).stop_dentry = stop_dentry;
        (*c).root_sb = root_sb;
        w(&raw mut (*c).on_root_sb, 0);
        w(&raw mut (*c).end, END_RUNNING);
        (*c).cross = Section::NO_CROSS as u64;
        w(&raw mut (*c).magic, 0);
        (*c).first = 1;
        bpf_loop(
            WALK_MAX_DEPTH,
            walk_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    let (end, new_pos, cross, magic) =
        unsafe { ((*c).end, (*c).pos as usize, (*c).cross, (*c).magic) };
    if new_pos < pos || new_pos > WALK_LIMIT {
        return (pos, section);
    }
    // Iterations ran out before an end was met: the path is cut.
    section.end = if end == END_RUNNING {
        walk_end::TRUNCATED
    } else {
        end as u8
    };
    section.len = (new_pos - pos) as u16;
    section.cross = if cross > u16::MAX as u64 {
        Section::NO_CROSS
    } else {
        cross as u16
    };
    section.magic = magic as u32;
    (new_pos, section)
}
