//! `sched_process_exec(struct task_struct *p, pid_t old_pid, struct
//! linux_binprm *bprm)`: a successful exec, seen from the new image. The
//! filename is the kernel's own copy in `bprm` (the old user memory is
//! gone), `exe` is the file really running (the interpreter of a `#!`
//! script), argv is read from the new stack.
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated::bpf_probe_read_kernel_str,
    },
    programs::RawTracePointContext,
};
use tracer_common::{AT_FDCWD, PATH_MAX, Syscall, flags, stats};

use crate::{
    event, finish, kernel,
    maps::{ARMED, CONFIG, INFLIGHT, count_stat},
    scope::in_base_scope,
};

#[inline(always)]
pub fn on_exec(ctx: &RawTracePointContext) {
    if !in_base_scope() {
        return;
    }
    let cfg = CONFIG.load();
    if cfg.arm_on_foreign_exec != 0 {
        // The first exec inside the container's mount namespace is the
        // container's own program: from here on, this process counts.
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        if unsafe { ARMED.get(tgid) }.is_none() {
            let task = kernel::current_task();
            if kernel::mnt_ns(&cfg.offsets, task) == cfg.host_mntns {
                return;
            }
            let _ = ARMED.insert(tgid, 1, 0);
        }
    }
    count_stat(stats::SEEN);
    let o = cfg.offsets;
    let id = bpf_get_current_pid_tgid();
    let (syscall, dirfd, arg_flags) = match unsafe { INFLIGHT.get(id) } {
        Some(i) => (i.syscall, i.dirfd, i.flags),
        None => (Syscall::Execve as u8, AT_FDCWD, 0),
    };
    let Some(buf) = event::start(syscall, dirfd, 0, arg_flags) else {
        return;
    };
    let Some(pending) = finish::pending() else {
        return;
    };
    let data = unsafe { (*buf).data.as_mut_ptr() };

    let bprm: u64 = ctx.arg(2);
    let name = unsafe { bpf_probe_read_kernel((bprm + o.bprm_filename as u64) as *const u64) }
        .unwrap_or(0);
    let n = unsafe {
        bpf_probe_read_kernel_str(data as *mut c_void, PATH_MAX as u32, name as *const c_void)
    };
    let mut raw_len: usize = 0;
    if n > 0 {
        raw_len = (n as usize - 1) & (PATH_MAX - 1);
    } else {
        unsafe { (*buf).header.flags = flags::RAW_UNREADABLE };
    }
    let first = unsafe { *data };

    let task = kernel::current_task();
    let (root, pwd) = kernel::root_and_pwd(&o, task);
    let (argv_start, argv_end) = kernel::arg_range(&o, task);
    unsafe {
        (*buf).header.raw_len = raw_len as u16;
        (*pending).pos = raw_len as u64;
        (*pending).root_mnt = root.mnt;
        (*pending).root_dentry = root.dentry;
        if n > 0 && first != b'/' {
            (*pending).base_mnt = pwd.mnt;
            (*pending).base_dentry = pwd.dentry;
        }
        if let Some(exe) = kernel::exe_path(&o, task) {
            (*pending).exe_mnt = exe.mnt;
            (*pending).exe_dentry = exe.dentry;
        }
        (*pending).argv_start = argv_start;
        (*pending).argv_end = argv_end;
    }
    finish::tail_call(ctx);
}
