//! Seccomp profiles from a trace, in the format docker, podman and the
//! OCI runtime spec (`linux.seccomp`) share: deny by default with EPERM,
//! allow exactly the recorded syscalls plus the few a runtime makes in
//! the container between loading the filter and the program's first
//! instruction.
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder,
};
use tracer_common::abis::Abi;

use super::trace::{Syscalls, Trace};

/// Allowed whatever the trace says. runc loads the filter shortly before
/// it execs the program (with `noNewPrivileges`); between the two it
/// closes inherited descriptors through /proc/self/fd (statfs, openat,
/// getdents64, fcntl, close) and execs (`execve`); its Go runtime may still
/// touch signals, futexes, epoll and timers on other threads. The rest is
/// what a program's loader makes around the exec itself.
pub const RUNTIME_SYSCALLS: &[&str] = &[
    "arch_prctl",
    "brk",
    "capget",
    "capset",
    "clock_gettime",
    "close",
    "close_range",
    "dup3",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_wait",
    "execve",
    "exit",
    "exit_group",
    "fcntl",
    "fstat",
    "fstatfs",
    "futex",
    "getdents64",
    "getpid",
    "getppid",
    "getrandom",
    "gettid",
    "madvise",
    "mmap",
    "mprotect",
    "munmap",
    "nanosleep",
    "newfstatat",
    "openat",
    "prctl",
    "read",
    "readlinkat",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_yield",
    "set_robust_list",
    "set_tid_address",
    "setgid",
    "setgroups",
    "setuid",
    "sigaltstack",
    "statfs",
    "tgkill",
    "write",
];

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("the trace has no syscall record (it was made by an older trace)")]
    NoSyscalls,
    #[error("no seccomp architecture name for {0}")]
    Arch(String),
    #[error("the trace names syscall {name:?}, which is not in the {arch} syscall table")]
    UnknownName { name: String, arch: String },
    #[error("the seccomp profile is not valid")]
    Spec(#[from] oci_spec::OciSpecError),
}

/// The names of `s` checked against its architecture's table (a trace is
/// input: a name copied into a profile unchecked could be anything). The
/// `syscall_<n>` placeholders for numbers without a name are returned apart.
fn checked_names(s: &Syscalls) -> Result<(Vec<String>, Vec<String>), SeccompError> {
    let abi = Abi::by_arch(&s.arch).ok_or_else(|| SeccompError::Arch(s.arch.clone()))?;
    let (mut names, mut unknown) = (Vec::new(), Vec::new());
    for n in &s.names {
        if abi.number(n).is_some() {
            names.push(n.clone());
        } else if n
            .strip_prefix("syscall_")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        {
            unknown.push(n.clone());
        } else {
            return Err(SeccompError::UnknownName {
                name: n.clone(),
                arch: s.arch.clone(),
            });
        }
    }
    Ok((names, unknown))
}

fn scmp_arch(arch: &str) -> Result<Arch, SeccompError> {
    Ok(match arch {
        "x86_64" => Arch::ScmpArchX86_64,
        "x86" => Arch::ScmpArchX86,
        "aarch64" => Arch::ScmpArchAarch64,
        "arm" => Arch::ScmpArchArm,
        "riscv64" => Arch::ScmpArchRiscv64,
        _ => return Err(SeccompError::Arch(arch.to_string())),
    })
}

/// The profile for `trace`, as the OCI runtime spec types it. Syscalls
/// whose number has no known name are left out (a profile names
/// syscalls) and returned as the second value.
pub fn profile(trace: &Trace) -> Result<(LinuxSeccomp, Vec<String>), SeccompError> {
    let s = trace.syscalls.as_ref().ok_or(SeccompError::NoSyscalls)?;
    let native = Abi::by_arch(&s.arch).ok_or_else(|| SeccompError::Arch(s.arch.clone()))?;
    let mut archs = vec![scmp_arch(&s.arch)?];
    let (mut names, mut unknown) = checked_names(s)?;
    // A compat ABI used in the run (ia32 on x86_64) is allowed too, with
    // its own names; a name is resolved per architecture by the runtime.
    if let Some(c) = &s.compat {
        archs.push(scmp_arch(&c.arch)?);
        let (n, u) = checked_names(c)?;
        names.extend(n);
        unknown.extend(u);
    }
    // The runtime is native code: only the names its architecture has
    // (arm64 has no `arch_prctl` or `epoll_wait`).
    names.extend(
        RUNTIME_SYSCALLS
            .iter()
            .filter(|n| native.number(n).is_some())
            .map(|n| n.to_string()),
    );
    names.sort();
    names.dedup();
    let allow = LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActAllow)
        .build()?;
    let profile = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(libc::EPERM as u32)
        .architectures(archs)
        .syscalls(vec![allow])
        .build()?;
    Ok((profile, unknown))
}

/// How many syscalls `profile` allows by name.
pub fn allowed(profile: &LinuxSeccomp) -> usize {
    profile
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow)
        .map(|s| s.names().len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::collect::{Collector, RunInfo};
    use crate::model::trace::{ExitInfo, ScopeInfo, Syscalls};

    #[test]
    fn profile_allows_recorded_and_runtime_syscalls() {
        let mut t = Collector::new().finish(RunInfo {
            command: vec!["x".into()],
            exit: ExitInfo::default(),
            scope: ScopeInfo::default(),
            totals: Default::default(),
        });
        assert!(matches!(profile(&t), Err(SeccompError::NoSyscalls)));
        t.syscalls = Some(Syscalls::named("x86_64", vec![0, 1, 257, 500]));
        let (p, unknown) = profile(&t).unwrap();
        assert_eq!(unknown, vec!["syscall_500"]);
        let names: Vec<&str> = p.syscalls().as_ref().unwrap()[0]
            .names()
            .iter()
            .map(String::as_str)
            .collect();
        assert!(names.contains(&"openat") && names.contains(&"execve"));
        assert!(!names.contains(&"getpriority"));
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(allowed(&p), names.len());
        // The document docker and runc read: field names and values.
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64"])
        );
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
        assert_eq!(
            json["syscalls"][0]["names"].as_array().unwrap().len(),
            names.len()
        );
        // ia32 syscalls made in the run bring their architecture and names.
        let mut s = Syscalls::named("x86_64", vec![0]);
        s.compat = Some(Box::new(Syscalls::named("x86", vec![4, 195])));
        t.syscalls = Some(s);
        let (p, _) = profile(&t).unwrap();
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
        );
        let names = p.syscalls().as_ref().unwrap()[0].names();
        assert!(names.iter().any(|n| n == "stat64"));
    }

    /// arm64 traces name arm64 syscalls (its own table, not x86_64's
    /// numbers), and the runtime's names are the ones arm64 has.
    #[test]
    fn an_arm64_trace_names_arm64_syscalls() {
        let mut t = Collector::new().finish(RunInfo {
            command: vec!["x".into()],
            exit: ExitInfo::default(),
            scope: ScopeInfo::default(),
            totals: Default::default(),
        });
        // 56 openat, 63 read, 221 execve on arm64 (0 is io_setup there).
        t.syscalls = Some(Syscalls::named("aarch64", vec![56, 63, 221, 0]));
        let (p, unknown) = profile(&t).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64][..])
        );
        let names = p.syscalls().as_ref().unwrap()[0].names();
        for n in ["openat", "read", "execve", "io_setup", "futex"] {
            assert!(names.iter().any(|x| x == n), "{n} missing");
        }
        for n in ["arch_prctl", "epoll_wait", "open", "stat"] {
            assert!(!names.iter().any(|x| x == n), "{n} is not an arm64 syscall");
        }
    }

    #[test]
    fn names_outside_the_table_are_refused() {
        let mut t = Collector::new().finish(RunInfo {
            command: vec!["x".into()],
            exit: ExitInfo::default(),
            scope: ScopeInfo::default(),
            totals: Default::default(),
        });
        let mut s = Syscalls::named("x86_64", vec![0, 1]);
        s.names[1] = "no_such_call".into();
        t.syscalls = Some(s);
        assert_eq!(
            profile(&t).unwrap_err().to_string(),
            "the trace names syscall \"no_such_call\", which is not in the x86_64 syscall table"
        );
        // An x86_64-only name under the ia32 table is refused too.
        let mut s = Syscalls::named("x86_64", vec![0]);
        let mut c = Syscalls::named("x86", vec![4]);
        c.names[0] = "newfstatat".into();
        s.compat = Some(Box::new(c));
        t.syscalls = Some(s);
        assert_eq!(
            profile(&t).unwrap_err().to_string(),
            "the trace names syscall \"newfstatat\", which is not in the x86 syscall table"
        );
        // A placeholder must be exactly syscall_<digits>.
        let mut s = Syscalls::named("x86_64", vec![0]);
        s.names[0] = "syscall_1;x".into();
        t.syscalls = Some(s);
        assert!(matches!(profile(&t), Err(SeccompError::UnknownName { .. })));
    }
}
