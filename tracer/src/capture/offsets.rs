//! Kernel struct offsets for the eBPF programs, read from BTF.
use std::path::Path;

use tracer_common::{KernelOffsets, URING_OPS, UringSpec, UringSpecs};

use super::btf::{Btf, BtfError};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Every struct and union the lookups below name, so the BTF reader
/// indexes only these.
pub const STRUCTS: &[&str] = &[
    "task_struct",
    "mm_struct",
    "fs_struct",
    "path",
    "dentry",
    "qstr",
    "super_block",
    "vfsmount",
    "mount",
    "file",
    "files_struct",
    "fdtable",
    "linux_binprm",
    "pt_regs",
    "nsproxy",
    "mnt_namespace",
    "io_kiocb",
    "io_async_msghdr",
    "filename",
    "io_uring_cqe",
    "io_open",
    "open_how",
    "io_statx",
    "io_rename",
    "io_link",
    "io_unlink",
    "io_mkdir",
    "io_xattr",
    "io_connect",
    "io_bind",
    "cgroup",
    "cgroup_root",
    "kernfs_node",
    "css_set",
];

pub fn from_btf(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let o = |ty: &str, m: &str| btf.member_offset(ty, m);
    let (compat_word, compat_mask, x32_bit) = compat_abi(btf)?;
    let mut k = KernelOffsets {
        task_fs: o("task_struct", "fs")?,
        task_files: o("task_struct", "files")?,
        task_mm: o("task_struct", "mm")?,
        mm_exe_file: o("mm_struct", "exe_file")?,
        mm_arg_start: o("mm_struct", "arg_start")?,
        mm_arg_end: o("mm_struct", "arg_end")?,
        fs_root: o("fs_struct", "root")?,
        fs_pwd: o("fs_struct", "pwd")?,
        path_mnt: o("path", "mnt")?,
        path_dentry: o("path", "dentry")?,
        dentry_parent: o("dentry", "d_parent")?,
        dentry_name: o("dentry", "d_name")?,
        dentry_inode: o("dentry", "d_inode")?,
        dentry_sb: o("dentry", "d_sb")?,
        qstr_name: o("qstr", "name")?,
        qstr_hash_len: o("qstr", "hash_len")?,
        sb_magic: o("super_block", "s_magic")?,
        sb_root: o("super_block", "s_root")?,
        vfsmount_root: o("vfsmount", "mnt_root")?,
        mount_mnt: o("mount", "mnt")?,
        mount_parent: o("mount", "mnt_parent")?,
        mount_mountpoint: o("mount", "mnt_mountpoint")?,
        file_path: o("file", "f_path")?,
        files_fdt: o("files_struct", "fdt")?,
        fdt_fd: o("fdtable", "fd")?,
        fdt_max_fds: o("fdtable", "max_fds")?,
        task_pid: o("task_struct", "pid")?,
        task_tgid: o("task_struct", "tgid")?,
        task_start_boottime: o("task_struct", "start_boottime")?,
        bprm_filename: o("linux_binprm", "filename")?,
        bprm_interp: o("linux_binprm", "interp")?,
        bprm_file: o("linux_binprm", "file")?,
        regs_arg: syscall_arg_offsets(btf)?,
        regs_nr: syscall_nr_offset(btf)?,
        task_nsproxy: o("task_struct", "nsproxy")?,
        nsproxy_mnt_ns: o("nsproxy", "mnt_ns")?,
        mntns_inum: o("mnt_namespace", "ns.inum")?,
        compat_word,
        compat_mask,
        x32_bit,
        ..KernelOffsets::default()
    };
    // The kernel side copies the first 16 words of pt_regs once and picks
    // the arguments from there.
    let in_copy = |off: u32| off.is_multiple_of(8) && off < 128;
    if !k.regs_arg.iter().flatten().all(|&o| in_copy(o)) || !in_copy(k.regs_nr) {
        return Err(BtfError::Malformed(
            "syscall arguments lie beyond the first 16 words of struct pt_regs".into(),
        ));
    }
    // io_uring's internals move between kernel versions; without them its
    // requests are counted as unobserved instead of decoded.
    if let Ok(r) = uring_request(btf) {
        k.req_opcode = r[0];
        k.req_async_data = r[1];
        k.msghdr_addr = r[2];
        k.filename_name = r[3];
        k.cqe_res = r[4];
        k.uring_known = u32::from(uring_specs(btf).is_ok());
    }
    // A seqlock_t since Linux 6.8 or so, a bare seqcount before.
    if let Some(off) = ["seq.seqcount.seqcount.sequence", "seq.seqcount.sequence"]
        .iter()
        .find_map(|m| o("fs_struct", m).ok())
    {
        k.fs_seq = off;
        k.fs_seq_known = 1;
    }
    // Kernels before 6.1 keep ancestor ids, not pointers: there a move out
    // of the scope goes unseen (docs/capture.md).
    if let Ok(c) = cgroup_offsets(btf) {
        [
            k.cgroup_root,
            k.root_hierarchy_id,
            k.cgroup_level,
            k.cgroup_ancestors,
            k.cgroup_kn,
            k.kn_id,
            k.task_cgroups,
            k.css_set_dfl_cgrp,
        ] = c;
        k.cgroup_known = 1;
    }
    Ok(k)
}

fn cgroup_offsets(btf: &Btf) -> Result<[u32; 8], BtfError> {
    let o = |ty: &str, m: &str| btf.member_offset(ty, m);
    Ok([
        o("cgroup", "root")?,
        o("cgroup_root", "hierarchy_id")?,
        o("cgroup", "level")?,
        o("cgroup", "ancestors")?,
        o("cgroup", "kn")?,
        o("kernfs_node", "id")?,
        o("task_struct", "cgroups")?,
        o("css_set", "dfl_cgrp")?,
    ])
}

fn uring_request(btf: &Btf) -> Result<[u32; 5], BtfError> {
    let o = |ty: &str, m: &str| btf.member_offset(ty, m);
    // The op's own data sits at the start of the request (`io_kiocb.cmd`).
    if o("io_kiocb", "cmd")? != 0 {
        return Err(BtfError::Malformed(
            "io_kiocb.cmd is not at offset 0".into(),
        ));
    }
    Ok([
        o("io_kiocb", "opcode")?,
        o("io_kiocb", "async_data")?,
        o("io_async_msghdr", "addr")?,
        o("filename", "name")?,
        o("io_uring_cqe", "res")?,
    ])
}

/// What each io_uring opcode names, from this kernel's structs. Opcode
/// numbers are UAPI (`IORING_OP_*`, include/uapi/linux/io_uring.h) and
/// never change; the structs behind them do.
pub fn uring_specs(btf: &Btf) -> Result<UringSpecs, BtfError> {
    use tracer_common::uring_class::{NO_PATH, OPEN, PATHS, SOCKADDR};
    let o = |ty: &str, m: &str| -> Result<u16, BtfError> {
        let off = btf.member_offset(ty, m)?;
        u16::try_from(off).map_err(|_| BtfError::Malformed(format!("{ty}.{m} at {off}")))
    };
    let mut t = [UringSpec::UNKNOWN; URING_OPS];
    // IORING_OP_NOP (0) to IORING_OP_PIPE (62): everything this table
    // knows names no path unless set below.
    for spec in t.iter_mut().take(63) {
        spec.class = NO_PATH;
    }
    let base = UringSpec {
        class: PATHS,
        ..UringSpec::UNKNOWN
    };
    let how = o("io_open", "how")?;
    let open = UringSpec {
        class: OPEN,
        dfd1: o("io_open", "dfd")?,
        name1: o("io_open", "filename")?,
        flags: how + o("open_how", "flags")?,
        flags2: how + o("open_how", "resolve")?,
        slot: o("io_open", "file_slot")?,
        ..base
    };
    t[18] = open; // OPENAT
    t[28] = open; // OPENAT2
    t[21] = UringSpec {
        dfd1: o("io_statx", "dfd")?,
        name1: o("io_statx", "filename")?,
        flags: o("io_statx", "flags")?,
        flags32: 1,
        ..base
    };
    for (op, ty) in [(35, "io_rename"), (39, "io_link")] {
        t[op] = UringSpec {
            dfd1: o(ty, "old_dfd")?,
            name1: o(ty, "oldpath")?,
            dfd2: o(ty, "new_dfd")?,
            name2: o(ty, "newpath")?,
            flags: o(ty, "flags")?,
            flags32: 1,
            ..base
        };
    }
    // SYMLINKAT uses io_link too: the new link is `newpath`, its content
    // `oldpath`.
    t[38] = UringSpec {
        dfd1: o("io_link", "new_dfd")?,
        name1: o("io_link", "newpath")?,
        name2: o("io_link", "oldpath")?,
        content2: 1,
        ..base
    };
    t[36] = UringSpec {
        dfd1: o("io_unlink", "dfd")?,
        name1: o("io_unlink", "filename")?,
        flags: o("io_unlink", "flags")?,
        flags32: 1,
        ..base
    };
    t[37] = UringSpec {
        dfd1: o("io_mkdir", "dfd")?,
        name1: o("io_mkdir", "filename")?,
        flags: o("io_mkdir", "mode")?,
        flags32: 1,
        ..base
    };
    let xattr = UringSpec {
        name1: o("io_xattr", "filename")?,
        ..base
    };
    t[42] = xattr; // SETXATTR
    t[44] = xattr; // GETXATTR
    // connect keeps the caller's pointer to the address (`name2`); bind
    // only the kernel's copy in the request's async data.
    t[16] = UringSpec {
        class: SOCKADDR,
        name1: o("io_connect", "addr_len")?,
        name2: o("io_connect", "addr")?,
        ..UringSpec::UNKNOWN
    };
    t[56] = UringSpec {
        class: SOCKADDR,
        name1: o("io_bind", "addr_len")?,
        ..UringSpec::UNKNOWN
    };
    Ok(t)
}

/// Where the syscall ABIs keep arguments 0..6 in `struct pt_regs`: the
/// native ABI, then the compat one.
#[cfg(target_arch = "x86_64")]
fn syscall_arg_offsets(btf: &Btf) -> Result<[[u32; 6]; 2], BtfError> {
    let r = |m: &str| btf.member_offset("pt_regs", m);
    Ok([
        [r("di")?, r("si")?, r("dx")?, r("r10")?, r("r8")?, r("r9")?],
        // ia32: ebx, ecx, edx, esi, edi, ebp.
        [r("bx")?, r("cx")?, r("dx")?, r("si")?, r("di")?, r("bp")?],
    ])
}

#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
fn syscall_arg_offsets(btf: &Btf) -> Result<[[u32; 6]; 2], BtfError> {
    // arm64: `regs[0..6]` for both ABIs (aarch32's r0-r5 land there too);
    // riscv64: a0..a5, laid out consecutively.
    #[cfg(target_arch = "aarch64")]
    let first = btf.member_offset("pt_regs", "regs")?;
    #[cfg(target_arch = "riscv64")]
    let first = btf.member_offset("pt_regs", "a0")?;
    let regs = std::array::from_fn(|i| first + 8 * i as u32);
    Ok([regs, regs])
}

#[cfg(target_arch = "x86_64")]
fn syscall_nr_offset(btf: &Btf) -> Result<u32, BtfError> {
    btf.member_offset("pt_regs", "orig_ax")
}

#[cfg(target_arch = "aarch64")]
fn syscall_nr_offset(btf: &Btf) -> Result<u32, BtfError> {
    btf.member_offset("pt_regs", "syscallno")
}

#[cfg(target_arch = "riscv64")]
fn syscall_nr_offset(btf: &Btf) -> Result<u32, BtfError> {
    btf.member_offset("pt_regs", "a7")
}

/// (word offset in task_struct, bit mask, x32 bit) telling a compat
/// syscall apart.
#[cfg(target_arch = "x86_64")]
fn compat_abi(btf: &Btf) -> Result<(u32, u32, u32), BtfError> {
    // TS_COMPAT in thread_info.status (arch/x86/include/asm/thread_info.h),
    // set on every ia32 entry, int 0x80 from 64-bit code included.
    const TS_COMPAT: u32 = 0x0002;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let word = btf.member_offset("task_struct", "thread_info.status")?;
    Ok((word, TS_COMPAT, X32_SYSCALL_BIT))
}

#[cfg(target_arch = "aarch64")]
fn compat_abi(btf: &Btf) -> Result<(u32, u32, u32), BtfError> {
    // TIF_32BIT in thread_info.flags (low word on little-endian).
    const TIF_32BIT: u32 = 22;
    let word = btf.member_offset("task_struct", "thread_info.flags")?;
    Ok((word, 1 << TIF_32BIT, 0))
}

#[cfg(target_arch = "riscv64")]
fn compat_abi(_btf: &Btf) -> Result<(u32, u32, u32), BtfError> {
    Ok((0, 0, 0))
}

/// Offsets from a BTF file: the running kernel's own, or one supplied for a
/// kernel built without BTF (for example from BTFHub).
pub fn from_file(path: &Path) -> Result<KernelOffsets, BtfError> {
    from_btf(&Btf::from_file_for(path, STRUCTS)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_offsets_are_found() {
        let path = std::path::Path::new(super::VMLINUX_BTF);
        let found = super::from_file(path);
        // Under qemu-user (the arm64 unit tests) the kernel is this host's
        // x86_64 one: its pt_regs has none of arm64's registers, which must
        // be an error naming what is missing, never wrong offsets.
        let btf = std::fs::read(path).unwrap();
        let arm64_kernel = btf.windows(13).any(|w| w == b"user_pt_regs\0");
        if cfg!(target_arch = "aarch64") && !arm64_kernel {
            let e = found.expect_err("an x86_64 kernel's BTF is refused");
            assert!(e.to_string().contains("pt_regs"), "{e}");
            return;
        }
        let o = found.unwrap();
        assert_eq!(o.path_dentry, 8);
        assert!(o.mm_arg_end > o.mm_arg_start);
        assert!(o.task_fs != 0 && o.task_mm != 0 && o.task_files != 0);
        // The six argument registers of each ABI are distinct.
        for abi in o.regs_arg {
            let mut regs = abi.to_vec();
            regs.sort();
            regs.dedup();
            assert_eq!(regs.len(), 6);
        }
        assert_eq!(
            o.uring_known, 1,
            "io_uring structs found in this kernel's BTF"
        );
        if !cfg!(target_arch = "aarch64") {
            assert_eq!(o.cgroup_known, 1, "cgroup structs found");
            // `ancestors[]` ends the struct, after `kn` and `level`.
            assert!(o.cgroup_ancestors > o.cgroup_kn && o.cgroup_ancestors > o.cgroup_level);
        }
        let btf = super::Btf::from_file(std::path::Path::new(super::VMLINUX_BTF)).unwrap();
        let specs = super::uring_specs(&btf).unwrap();
        // io_open { struct file *file; int dfd; ... }
        assert_eq!(specs[18].dfd1, 8);
        assert_eq!(specs[63].class, tracer_common::uring_class::UNKNOWN);
    }
}
