//! Seccomp profiles from a trace, in the format docker, podman and the
//! OCI runtime spec (`linux.seccomp`) share: deny by default with EPERM,
//! allow exactly the recorded syscalls plus the few a runtime makes in
//! the container between loading the filter and the program's first
//! instruction.
use serde_json::{Value, json};

use super::trace::Trace;

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
}

fn scmp_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "x86_64" => "SCMP_ARCH_X86_64",
        "x86" => "SCMP_ARCH_X86",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => return None,
    })
}

/// The profile for `trace`. Syscalls whose number has no known name are
/// left out (a profile names syscalls) and returned as the second value.
pub fn profile(trace: &Trace) -> Result<(Value, Vec<String>), SeccompError> {
    let s = trace.syscalls.as_ref().ok_or(SeccompError::NoSyscalls)?;
    let mut archs = vec![scmp_arch(&s.arch).ok_or_else(|| SeccompError::Arch(s.arch.clone()))?];
    // A compat ABI used in the run (ia32 on x86_64) is allowed too, with
    // its own names; a name is resolved per architecture by the runtime.
    let mut all: Vec<String> = s.names.clone();
    if let Some(c) = &s.compat {
        archs.push(scmp_arch(&c.arch).ok_or_else(|| SeccompError::Arch(c.arch.clone()))?);
        all.extend(c.names.iter().cloned());
    }
    let (unknown, mut names): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|n| n.starts_with("syscall_"));
    names.extend(RUNTIME_SYSCALLS.iter().map(|n| n.to_string()));
    names.sort();
    names.dedup();
    Ok((
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": archs,
            "syscalls": [{ "names": names, "action": "SCMP_ACT_ALLOW" }],
        }),
        unknown,
    ))
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
        let names: Vec<&str> = p["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(names.contains(&"openat") && names.contains(&"execve"));
        assert!(!names.contains(&"getpriority"));
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        // The OCI runtime spec type reads it as it is.
        let spec: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
        assert_eq!(spec.architectures().as_ref().unwrap().len(), 1);
        // ia32 syscalls made in the run bring their architecture and names.
        let mut s = Syscalls::named("x86_64", vec![0]);
        s.compat = Some(Box::new(Syscalls::named("x86", vec![4, 195])));
        t.syscalls = Some(s);
        let (p, _) = profile(&t).unwrap();
        assert_eq!(
            p["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        let names = p["syscalls"][0]["names"].as_array().unwrap();
        assert!(names.iter().any(|n| n == "stat64"));
    }
}
