//! Reading kernel structures: the task's root, cwd, open files and mm, and
//! turning a (vfsmount, dentry) pair into path components.
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
use tracer_common::{DATA_WALK_LIMIT, DATA_WALK_MASK, KernelOffsets, NAME_BUF, WALK_MAX_DEPTH};

use crate::maps::{CONFIG, SCRATCH, WALK, WalkCursor};

/// How a [`walk`] ended.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WalkEnd {
    /// At the task's root: the path is whole.
    Root,
    /// At the top of the mount tree without meeting the root.
    OutsideRoot,
    /// Out of room or depth: the path is cut.
    Truncated,
}

/// A `struct path`: the mount and the dentry within it.
#[derive(Clone, Copy)]
pub struct KPath {
    pub mnt: u64,
    pub dentry: u64,
}

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    CONFIG.load().offsets
}

#[inline(always)]
fn read_u64(addr: u64) -> u64 {
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

#[inline(always)]
fn read_u32(addr: u64) -> u32 {
    unsafe { bpf_probe_read_kernel(addr as *const u32) }.unwrap_or(0)
}

#[inline(always)]
fn read_path(o: &KernelOffsets, addr: u64) -> KPath {
    KPath {
        mnt: read_u64(addr + o.path_mnt as u64),
        dentry: read_u64(addr + o.path_dentry as u64),
    }
}

#[inline(always)]
pub fn current_task() -> u64 {
    unsafe { bpf_get_current_task() }
}

/// The task's root directory (what `/` means to it: differs in a chroot
/// or container) and its working directory.
#[inline(always)]
pub fn root_and_pwd(o: &KernelOffsets, task: u64) -> (KPath, KPath) {
    let fs = read_u64(task + o.task_fs as u64);
    (
        read_path(o, fs + o.fs_root as u64),
        read_path(o, fs + o.fs_pwd as u64),
    )
}

/// The path of the file open as `fd` in the task, if any.
#[inline(always)]
pub fn fd_path(o: &KernelOffsets, task: u64, fd: i32) -> Option<KPath> {
    if fd < 0 {
        return None;
    }
    let files = read_u64(task + o.task_files as u64);
    let fdt = read_u64(files + o.files_fdt as u64);
    let max = read_u32(fdt + o.fdt_max_fds as u64);
    if fd as u32 >= max {
        return None;
    }
    let fds = read_u64(fdt + o.fdt_fd as u64);
    let file = read_u64(fds + (fd as u64) * 8);
    if file == 0 {
        return None;
    }
    Some(read_path(o, file + o.file_path as u64))
}

/// The file the task's current program image runs (`/proc/self/exe`).
#[inline(always)]
pub fn exe_path(o: &KernelOffsets, task: u64) -> Option<KPath> {
    let mm = read_u64(task + o.task_mm as u64);
    let file = read_u64(mm + o.mm_exe_file as u64);
    if file == 0 {
        return None;
    }
    Some(read_path(o, file + o.file_path as u64))
}

/// The inode number of the task's mount namespace.
#[inline(always)]
pub fn mnt_ns(o: &KernelOffsets, task: u64) -> u32 {
    let nsproxy = read_u64(task + o.task_nsproxy as u64);
    let ns = read_u64(nsproxy + o.nsproxy_mnt_ns as u64);
    read_u32(ns + o.mntns_inum as u64)
}

/// User addresses of the task's argv block.
#[inline(always)]
pub fn arg_range(o: &KernelOffsets, task: u64) -> (u64, u64) {
    let mm = read_u64(task + o.task_mm as u64);
    (
        read_u64(mm + o.mm_arg_start as u64),
        read_u64(mm + o.mm_arg_end as u64),
    )
}

const END_ROOT: u64 = 0;
const END_OUTSIDE: u64 = 1;
const END_TRUNCATED: u64 = 2;

/// One step of the walk: emit one name or cross one mount. Returns 1 to
/// stop. The walk's state lives in map memory (`WALK`), whose contents the
/// verifier does not track, so the callback converges after one pass
/// instead of being re-verified for every value `pos` could take.
#[inline(never)]
extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(c), Some(buf)) = (WALK.get_ptr_mut(0), SCRATCH.get_ptr_mut(0)) else {
        return 1;
    };
    let c = unsafe { &mut *c };
    let o = offsets();
    if c.dentry == c.root_dentry && c.mnt == c.root_mnt {
        c.end = END_ROOT;
        return 1;
    }
    let mnt_root = read_u64(c.mnt + o.vfsmount_root as u64);
    let parent = read_u64(c.dentry + o.dentry_parent as u64);
    if c.dentry == mnt_root || c.dentry == parent {
        let mount_parent = read_u64(c.mount + o.mount_parent as u64);
        if mount_parent == c.mount || mount_parent == 0 {
            // The top of the namespace, and the root was not on the way.
            c.end = END_OUTSIDE;
            return 1;
        }
        c.dentry = read_u64(c.mount + o.mount_mountpoint as u64);
        c.mount = mount_parent;
        c.mnt = mount_parent + o.mount_mnt as u64;
        return 0;
    }
    let pos = c.pos as usize;
    if pos > DATA_WALK_LIMIT {
        c.end = END_TRUNCATED;
        return 1;
    }
    let name = read_u64(c.dentry + (o.dentry_name + o.qstr_name) as u64);
    let n = unsafe {
        bpf_probe_read_kernel_str(
            (*buf).data.as_mut_ptr().add(pos & DATA_WALK_MASK) as *mut c_void,
            NAME_BUF as u32,
            name as *const c_void,
        )
    };
    if n <= 0 {
        c.end = END_TRUNCATED;
        return 1;
    }
    c.pos = (pos + ((n as usize) & (NAME_BUF * 2 - 1))) as u64;
    c.dentry = parent;
    0
}

/// Writes the names of `at` and its ancestors, leaf first, each with its
/// NUL, into the scratch record's data from `pos`, stopping at the task's
/// `root`. Mount points are crossed the way `d_path` does. Returns the new
/// position and how the walk ended.
#[inline(always)]
pub fn walk(o: &KernelOffsets, pos: usize, at: KPath, root: KPath) -> (usize, WalkEnd) {
    let Some(c) = WALK.get_ptr_mut(0) else {
        return (pos, WalkEnd::Truncated);
    };
    unsafe {
        *c = WalkCursor {
            pos: pos as u64,
            mnt: at.mnt,
            dentry: at.dentry,
            mount: at.mnt - o.mount_mnt as u64,
            root_mnt: root.mnt,
            root_dentry: root.dentry,
            // Stays so if the iterations run out before an end is met.
            end: END_TRUNCATED,
        };
        bpf_loop(
            WALK_MAX_DEPTH,
            walk_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    let (end, new_pos) = unsafe { ((*c).end, (*c).pos as usize) };
    let how = match end {
        END_ROOT => WalkEnd::Root,
        END_OUTSIDE => WalkEnd::OutsideRoot,
        _ => WalkEnd::Truncated,
    };
    if new_pos < pos || new_pos > DATA_WALK_LIMIT + NAME_BUF {
        return (pos, WalkEnd::Truncated);
    }
    (new_pos, how)
}
