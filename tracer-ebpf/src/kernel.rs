//! Reading kernel structures: the task's root, cwd, open files and mm, and
//! turning a (vfsmount, dentry) pair into path components relative to the
//! scope's root.
//!
//! Offsets come from BTF through `CONFIG.offsets`. In `sys_enter` and
//! `sys_exit`, what hangs off the current task is read with typed loads
//! ([`Typed`]); everything else goes through `bpf_probe_read_kernel`
//! ([`Untyped`] and the plain reads). Either way a wrong address reads
//! zero, never a crash.
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_probe_read_kernel,
        generated::{
            bpf_get_current_task, bpf_get_current_task_btf, bpf_loop, bpf_probe_read_kernel_str,
            bpf_task_pt_regs,
        },
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

/// A kernel pointer and the way its fields are read: [`Typed`] on the
/// per-syscall path, [`Untyped`] elsewhere.
pub trait Kptr: Copy {
    /// The 64-bit field at `off`.
    fn word(self, off: u32) -> u64;
    /// The 32-bit field (or the low half of a 64-bit one) at `off`.
    fn half(self, off: u32) -> u32;
    /// The struct pointer at `off`, read the same way.
    fn field(self, off: u32) -> Self;
    /// The pointer's value, to store, compare or read through a helper.
    fn addr(self) -> u64;
}

/// A kernel pointer whose type the verifier knows from BTF: the current
/// task, and the struct pointers read from it. A field at an offset fixed
/// at load time (`CONFIG` is read-only, so the offsets are constants to
/// the verifier) is one plain load, which the JIT guards so that a bad
/// address reads zero, where `bpf_probe_read_kernel` costs a helper call
/// (the largest single cost of the programs). The verifier checks every
/// such load against the kernel's BTF and allows no arithmetic on the
/// pointer but adding a constant, so the value is only ever stored,
/// compared or handed to a helper. Raw tracepoints may call
/// `bpf_get_current_task_btf` (Linux 5.11) even where `tp_btf` and
/// fentry, whose arguments would be typed too, cannot load.
///
/// The price is paid at load: the verifier checks a pointer loaded
/// straight from the task (or from an RCU-protected pointer) with
/// searches of the kernel's BTF by name, once per path that reaches the
/// load (the cgroup chain alone: ~0.4 ms of a fresh load per program).
#[derive(Clone, Copy)]
pub struct Typed(*const u8);

impl Kptr for Typed {
    /// Loads stay inside one field: the verifier refuses one that runs
    /// past the field it starts in.
    #[inline(always)]
    fn word(self, off: u32) -> u64 {
        unsafe { core::ptr::read_volatile(self.0.add(off as usize) as *const u64) }
    }

    #[inline(always)]
    fn half(self, off: u32) -> u32 {
        unsafe { core::ptr::read_volatile(self.0.add(off as usize) as *const u32) }
    }

    #[inline(always)]
    fn field(self, off: u32) -> Typed {
        Typed(self.word(off) as *const u8)
    }

    #[inline(always)]
    fn addr(self) -> u64 {
        self.0 as u64
    }
}

/// A kernel pointer the verifier knows as a number: every field is a
/// `bpf_probe_read_kernel` call. For the programs that do not run on
/// every syscall (exec, io_uring), where typed loads would cost more to
/// verify than they save.
#[derive(Clone, Copy)]
pub struct Untyped(u64);

impl Kptr for Untyped {
    #[inline(always)]
    fn word(self, off: u32) -> u64 {
        read_u64(self.0 + off as u64)
    }

    #[inline(always)]
    fn half(self, off: u32) -> u32 {
        read_u32(self.0 + off as u64)
    }

    #[inline(always)]
    fn field(self, off: u32) -> Untyped {
        Untyped(self.word(off))
    }

    #[inline(always)]
    fn addr(self) -> u64 {
        self.0
    }
}

/// The current task, typed (see [`Typed`]).
#[inline(always)]
pub fn current_task() -> Typed {
    Typed(unsafe { bpf_get_current_task_btf() } as *const u8)
}

/// The current task, untyped (see [`Untyped`]).
#[inline(always)]
pub fn current_task_untyped() -> Untyped {
    Untyped(unsafe { bpf_get_current_task() })
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

/// A `struct path` at `addr`: (mnt, dentry), in one read when the two
/// lie side by side, as they do on the kernels `trace` knows.
#[inline(always)]
fn path_at(addr: u64) -> (u64, u64) {
    let (a, b) = (
        conf!(offsets.path_mnt) as u64,
        conf!(offsets.path_dentry) as u64,
    );
    if b == a + 8 {
        let [mnt, dentry] = read_words::<2>(addr + a);
        (mnt, dentry)
    } else {
        (read_u64(addr + a), read_u64(addr + b))
    }
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

/// The `struct path` at `off` in the struct `at`, with its dentry's inode
/// when `inode` is set.
#[inline(always)]
fn path_in<P: Kptr>(at: P, off: u32, inode: bool) -> KRef {
    let dentry = at.field(off + conf!(offsets.path_dentry));
    KRef {
        mnt: at.word(off + conf!(offsets.path_mnt)),
        dentry: dentry.addr(),
        inode: if inode {
            dentry.word(conf!(offsets.dentry_inode))
        } else {
            0
        },
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
pub fn fs_of<P: Kptr>(task: P) -> P {
    task.field(conf!(offsets.task_fs))
}

#[inline(always)]
pub fn files_of<P: Kptr>(task: P) -> P {
    task.field(conf!(offsets.task_files))
}

/// The task's root directory (what `/` means to it: differs in a chroot
/// or container). Its inode is not read: a task's root is pinned for as
/// long as it is the root, so it needs no check.
#[inline(always)]
pub fn root_of<P: Kptr>(fs: P) -> KRef {
    path_in(fs, conf!(offsets.fs_root), false)
}

/// `fs_struct.seq`'s count (0 when its offset is not known, see
/// [`fs_seq_known`]): a change between two reads means the cwd or root
/// changed in between.
#[inline(always)]
pub fn fs_seq_of<P: Kptr>(fs: P) -> u32 {
    if !fs_seq_known() || fs.addr() == 0 {
        return 0;
    }
    fs.half(conf!(offsets.fs_seq))
}

#[inline(always)]
pub fn fs_seq_known() -> bool {
    conf!(offsets.fs_seq_known) != 0
}

#[inline(always)]
pub fn pwd_of<P: Kptr>(fs: P) -> KRef {
    path_in(fs, conf!(offsets.fs_pwd), true)
}

/// The `struct file *` open as `fd` in the descriptor table `files`, or 0.
#[inline(always)]
pub fn fd_file_in<P: Kptr>(files: P, fd: i64) -> u64 {
    if fd < 0 || files.addr() == 0 {
        return 0;
    }
    let fdt = files.field(conf!(offsets.files_fdt));
    let max = fdt.half(conf!(offsets.fdt_max_fds));
    // `struct file **`: typed loads stop here (a pointer to a pointer),
    // and the index is not a constant.
    let fds = fdt.word(conf!(offsets.fdt_fd));
    if fd as u64 >= max as u64 {
        return 0;
    }
    read_u64(fds + (fd as u64) * 8)
}

/// `file->f_path.dentry`.
#[inline(always)]
pub fn file_dentry(file: u64) -> u64 {
    read_u64(file + (conf!(offsets.file_path) + conf!(offsets.path_dentry)) as u64)
}

/// Whether descriptor `dirfd` names another file than `saved` now. A
/// descriptor closed since is not counted: the kernel took its file, or
/// failed with EBADF.
#[inline(always)]
pub fn dirfd_moved<P: Kptr>(files: P, dirfd: i32, saved: &KRef) -> bool {
    if dirfd < 0 || saved.dentry == 0 {
        return false;
    }
    // The dentry alone: one read past the table, where a whole path and
    // its inode cost the verifier far more states.
    let file = fd_file_in(files, dirfd as i64);
    file != 0 && file_dentry(file) != saved.dentry
}

/// The path of the file open as `fd` in the task, if any.
#[inline(always)]
pub fn fd_path<P: Kptr>(task: P, fd: i64) -> Option<KRef> {
    if fd < 0 {
        return None;
    }
    fd_path_in(files_of(task), fd)
}

/// [`fd_path`] in the descriptor table `files`.
#[inline(always)]
pub fn fd_path_in<P: Kptr>(files: P, fd: i64) -> Option<KRef> {
    fd_path_looked(files, fd).map(|(r, _)| r)
}

/// [`fd_path_in`], and what the file's dentry looks like: the inode comes
/// with the dentry's head, one read instead of two.
#[inline(always)]
pub fn fd_path_looked<P: Kptr>(files: P, fd: i64) -> Option<(KRef, DentryLook)> {
    let file = fd_file_in(files, fd);
    if file == 0 {
        return None;
    }
    let (mnt, dentry) = path_at(file + conf!(offsets.file_path) as u64);
    let l = look(dentry);
    Some((
        KRef {
            mnt,
            dentry,
            inode: l.inode,
        },
        l,
    ))
}

#[inline(always)]
pub fn file_path(file: u64) -> KRef {
    read_path(file + conf!(offsets.file_path) as u64)
}

/// The inode number of the task's mount namespace.
#[inline(always)]
pub fn mnt_ns<P: Kptr>(task: P) -> u32 {
    let nsproxy = task.field(conf!(offsets.task_nsproxy));
    let ns = nsproxy.field(conf!(offsets.nsproxy_mnt_ns));
    ns.half(conf!(offsets.mntns_inum))
}

/// The id of the task's cgroup on the v2 hierarchy (what
/// `bpf_get_current_cgroup_id` gives).
#[inline(always)]
pub fn cgroup_id(task: Typed) -> u64 {
    let css = task.field(conf!(offsets.task_cgroups));
    let cgrp = css.field(conf!(offsets.css_set_dfl_cgrp));
    cgrp.field(conf!(offsets.cgroup_kn))
        .word(conf!(offsets.kn_id))
}

/// `task->start_boottime`: with the pid, identifies one process for good.
/// For a task a tracepoint names (an untyped pointer).
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

/// The number of the syscall the current task is in (the low half of
/// `orig_ax` on x86_64, `syscallno` on arm64, which is 32 bits: a typed
/// load may not run past its field). Its user registers, typed, are one
/// helper call away, where the raw tracepoint's own `pt_regs` argument is
/// an untyped number.
#[inline(always)]
pub fn syscall_nr(task: Typed) -> u32 {
    let regs = unsafe { bpf_task_pt_regs(task.0 as *mut _) };
    Typed(regs as *const u8).half(conf!(offsets.regs_nr))
}

/// The current syscall is a compat-ABI one (ia32 on x86_64).
#[inline(always)]
pub fn in_compat_syscall(task: Typed) -> bool {
    let mask = conf!(offsets.compat_mask);
    mask != 0 && task.half(conf!(offsets.compat_word)) & mask != 0
}

/// User addresses of the task's argv block.
#[inline(always)]
pub fn arg_range<P: Kptr>(task: P) -> (u64, u64) {
    let mm = task.field(conf!(offsets.task_mm));
    (
        mm.word(conf!(offsets.mm_arg_start)),
        mm.word(conf!(offsets.mm_arg_end)),
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
            if c.dentry == parent && c.dentry != mnt_root {
                // Its own parent, yet not its mount's root: a pseudo file
                // (pipe, socket, memfd) or a disconnected dentry. Going on
                // would name it after the mount's top, `/`.
                c.end = walk_end::UNNAMED as u64;
                return 1;
            }
            if c.dentry == mnt_root {
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
        // (a file outside `--root`'s directory), unless it is not that
        // filesystem's root at all but a dentry cut off from its parents
        // (`open_by_handle_at` of a file the dcache had dropped).
        let s_root = read_u64(dentry_sb(c.dentry) + conf!(offsets.sb_root) as u64);
        c.end = if c.dentry == s_root {
            walk_end::OUTSIDE
        } else {
            walk_end::UNNAMED
        } as u64;
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
