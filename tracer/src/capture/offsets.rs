//! Kernel struct offsets for the eBPF programs, read from BTF.
use std::path::Path;

use tracer_common::KernelOffsets;

use super::btf::{Btf, BtfError};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

pub fn from_btf(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let o = |ty: &str, m: &str| btf.member_offset(ty, m);
    Ok(KernelOffsets {
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
        qstr_name: o("qstr", "name")?,
        vfsmount_root: o("vfsmount", "mnt_root")?,
        mount_mnt: o("mount", "mnt")?,
        mount_parent: o("mount", "mnt_parent")?,
        mount_mountpoint: o("mount", "mnt_mountpoint")?,
        file_path: o("file", "f_path")?,
        files_fdt: o("files_struct", "fdt")?,
        fdt_fd: o("fdtable", "fd")?,
        fdt_max_fds: o("fdtable", "max_fds")?,
        task_pid: o("task_struct", "pid")?,
        bprm_filename: o("linux_binprm", "filename")?,
        regs_arg: syscall_arg_offsets(btf)?,
        task_nsproxy: o("task_struct", "nsproxy")?,
        nsproxy_mnt_ns: o("nsproxy", "mnt_ns")?,
        mntns_inum: o("mnt_namespace", "ns.inum")?,
        _pad: 0,
    })
}

/// Where the syscall ABI keeps arguments 0..6 in `struct pt_regs`.
#[cfg(target_arch = "x86_64")]
fn syscall_arg_offsets(btf: &Btf) -> Result<[u32; 6], BtfError> {
    let r = |m: &str| btf.member_offset("pt_regs", m);
    Ok([r("di")?, r("si")?, r("dx")?, r("r10")?, r("r8")?, r("r9")?])
}

#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
fn syscall_arg_offsets(btf: &Btf) -> Result<[u32; 6], BtfError> {
    // arm64: `regs[0..6]`; riscv64: a0..a5, laid out consecutively.
    #[cfg(target_arch = "aarch64")]
    let first = btf.member_offset("pt_regs", "regs")?;
    #[cfg(target_arch = "riscv64")]
    let first = btf.member_offset("pt_regs", "a0")?;
    Ok(std::array::from_fn(|i| first + 8 * i as u32))
}

/// Offsets from a BTF file: the running kernel's own, or one supplied for a
/// kernel built without BTF (for example from BTFHub).
pub fn from_file(path: &Path) -> Result<KernelOffsets, BtfError> {
    from_btf(&Btf::from_file(path)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_offsets_are_found() {
        let o = super::from_file(std::path::Path::new(super::VMLINUX_BTF)).unwrap();
        assert_eq!(o.path_dentry, 8);
        assert!(o.mm_arg_end > o.mm_arg_start);
        assert!(o.task_fs != 0 && o.task_mm != 0 && o.task_files != 0);
        // The six argument registers are distinct.
        let mut regs = o.regs_arg.to_vec();
        regs.sort();
        regs.dedup();
        assert_eq!(regs.len(), 6);
    }
}
