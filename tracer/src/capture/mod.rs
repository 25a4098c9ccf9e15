//! Capture: loading the eBPF programs, attaching them, and reading what
//! they report.
pub mod btf;
pub mod cgroup;
pub mod decode;
pub mod offsets;
pub mod tracefs;

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd, RawFd},
    path::Path,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::TracePoint,
};
use thiserror::Error;
use tokio::io::{Interest, unix::AsyncFd};
use tracer_common::{Config, Syscall, loss, scope_mode, stats};

use crate::model::{collect::Collector, trace::LostEvents};

/// The eBPF object, built by `build.rs` through aya-build.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error(
        "trace needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); run it as root or with sudo"
    )]
    NotRoot,
    #[error("kernel BTF not found at {0} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    NoBtf(String),
    #[error("reading kernel BTF: {0}")]
    Btf(#[from] btf::BtfError),
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error("the kernel refused to load the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("eBPF object has no {0}")]
    Missing(&'static str),
    #[error("cannot watch the ring buffer: {0}")]
    Poll(std::io::Error),
}

/// How the kernel side picks the traced tasks.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Cgroup { id: u64, level: u32 },
    Pids,
}

/// Checks what loading needs, so a missing piece gets one clear line
/// instead of a raw errno from deep inside the loader.
pub fn preflight() -> Result<std::path::PathBuf, CaptureError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CaptureError::NotRoot);
    }
    if !Path::new(offsets::VMLINUX_BTF).exists() {
        return Err(CaptureError::NoBtf(offsets::VMLINUX_BTF.to_string()));
    }
    Ok(tracefs::ensure_mounted()?)
}

pub struct Capture {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Holding this fd keeps the tail-call slot filled.
    _finish: ProgramArray<MapData>,
    /// Tracepoints that do not exist on this kernel or architecture.
    pub unavailable: Vec<String>,
}

impl Capture {
    /// Loads and attaches everything. Nothing is traced until a task joins
    /// the scope.
    pub fn start(scope: Scope) -> Result<Capture, CaptureError> {
        let tracefs_root = preflight()?;
        let offsets = offsets::from_kernel()?;
        let exec_fields = tracefs::fields(&tracefs_root, "sched", "sched_process_exec")?;
        let fork_fields = tracefs::fields(&tracefs_root, "sched", "sched_process_fork")?;
        let exec_filename = tracefs::field(&exec_fields, "sched_process_exec", "filename")?;
        let fork_child = tracefs::field(&fork_fields, "sched_process_fork", "child_pid")?;
        let (mode, cgroup_id, cgroup_level) = match scope {
            Scope::Cgroup { id, level } => (scope_mode::CGROUP, id, level),
            Scope::Pids => (scope_mode::PIDS, 0, 0),
        };
        let config = Config {
            scope_mode: mode,
            cgroup_level,
            cgroup_id,
            exec_filename_off: exec_filename.offset as u32,
            fork_child_pid_off: fork_child.offset as u32,
            offsets,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .load(EBPF_OBJECT)
            .map_err(CaptureError::Load)?;

        // `finish` is reached by tail call only; it must be in place before
        // any program that jumps to it is attached.
        let finish_map = ebpf
            .take_map("FINISH")
            .ok_or(CaptureError::Missing("FINISH map"))?;
        let mut finish_map =
            ProgramArray::try_from(finish_map).map_err(|source| CaptureError::Map {
                name: "FINISH",
                source,
            })?;
        {
            let err = |source| CaptureError::Program {
                name: "finish".into(),
                source,
            };
            let p: &mut TracePoint = ebpf
                .program_mut("finish")
                .ok_or(CaptureError::Missing("finish program"))?
                .try_into()
                .map_err(err)?;
            p.load().map_err(err)?;
            let fd = p.fd().map_err(err)?;
            finish_map
                .set(0, fd, 0)
                .map_err(|source| CaptureError::Map {
                    name: "FINISH",
                    source,
                })?;
        }

        let mut unavailable = Vec::new();
        for s in Syscall::ALL {
            let tp = s.tracepoint_name();
            let (enter, exit) = (format!("sys_enter_{tp}"), format!("sys_exit_{tp}"));
            if !tracefs::exists(&tracefs_root, "syscalls", &enter)
                || !tracefs::exists(&tracefs_root, "syscalls", &exit)
            {
                unavailable.push(tp.to_string());
                continue;
            }
            let enter_fields = tracefs::fields(&tracefs_root, "syscalls", &enter)?;
            tracefs::check_syscall_layout(&enter_fields, &enter, false)?;
            let exit_fields = tracefs::fields(&tracefs_root, "syscalls", &exit)?;
            tracefs::check_syscall_layout(&exit_fields, &exit, true)?;
            attach(&mut ebpf, &format!("enter_{tp}"), "syscalls", &enter)?;
            attach(&mut ebpf, "exit_syscall", "syscalls", &exit)?;
        }
        attach(&mut ebpf, "process_exec", "sched", "sched_process_exec")?;
        if matches!(scope, Scope::Pids) {
            attach(&mut ebpf, "process_fork", "sched", "sched_process_fork")?;
            attach(&mut ebpf, "process_exit", "sched", "sched_process_exit")?;
        }

        let events = ebpf
            .take_map("EVENTS")
            .ok_or(CaptureError::Missing("EVENTS map"))?;
        let ring = RingBuf::try_from(events).map_err(|source| CaptureError::Map {
            name: "EVENTS",
            source,
        })?;
        // SAFETY: the RingBuf owns its fd and lives inside the AsyncFd, so
        // the fd stays open for as long as it is registered.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| CaptureError::Poll(e.into_parts().1))?;
        Ok(Capture {
            ebpf,
            ring,
            _finish: finish_map,
            unavailable,
        })
    }

    /// The fd of the pid-scope map, for a child to add itself before exec.
    pub fn scope_pids_fd(&self) -> Result<RawFd, CaptureError> {
        match self.ebpf.map("SCOPE_PIDS") {
            Some(aya::maps::Map::HashMap(data)) => Ok(data.fd().as_fd().as_raw_fd()),
            _ => Err(CaptureError::Missing("SCOPE_PIDS hash map")),
        }
    }

    /// Pids still in the pid scope (pid mode only).
    pub fn scope_pids(&self) -> Vec<u32> {
        let Some(map) = self.ebpf.map("SCOPE_PIDS") else {
            return Vec::new();
        };
        match BpfHashMap::<_, u32, u8>::try_from(map) {
            Ok(m) => m.keys().filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits until the ring buffer has data.
    pub async fn readable(&mut self) -> Result<(), CaptureError> {
        let mut guard = self.ring.readable_mut().await.map_err(CaptureError::Poll)?;
        guard.clear_ready();
        Ok(())
    }

    /// Decodes every record now in the ring buffer into `collector`.
    pub fn drain(&mut self, collector: &mut Collector) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            match decode::Event::decode(&item) {
                Ok(e) => collector.add(e),
                Err(_) => collector.malformed_record(),
            }
        }
    }

    fn per_cpu(&self, name: &'static str, count: u32) -> Result<Vec<Vec<u64>>, CaptureError> {
        let map = self.ebpf.map(name).ok_or(CaptureError::Missing(name))?;
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|source| CaptureError::Map { name, source })?;
        (0..count)
            .map(|i| {
                arr.get(&i, 0)
                    .map(|v| v.iter().copied().collect())
                    .map_err(|source| CaptureError::Map { name, source })
            })
            .collect()
    }

    /// Lost-event counters, per CPU and by cause.
    pub fn lost(&self) -> Result<LostEvents, CaptureError> {
        let rows = self.per_cpu("LOSS", loss::COUNT)?;
        let cpus = rows.first().map_or(0, Vec::len);
        let mut per_cpu = vec![0u64; cpus];
        let mut by_cause = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            for (cpu, v) in row.iter().enumerate() {
                if let Some(slot) = per_cpu.get_mut(cpu) {
                    *slot += v;
                }
            }
            by_cause.insert(loss::NAMES[i].to_string(), row.iter().sum());
        }
        Ok(LostEvents {
            total: per_cpu.iter().sum(),
            per_cpu,
            by_cause,
        })
    }

    /// (syscalls seen, deduplicated in the kernel).
    pub fn stats(&self) -> Result<(u64, u64), CaptureError> {
        let rows = self.per_cpu("STATS", stats::COUNT)?;
        let sum = |i: u32| rows.get(i as usize).map_or(0, |r| r.iter().sum());
        Ok((sum(stats::SEEN), sum(stats::DEDUPLICATED)))
    }
}

fn attach(ebpf: &mut Ebpf, prog: &str, category: &str, name: &str) -> Result<(), CaptureError> {
    let err = |source| CaptureError::Program {
        name: format!("{prog} ({category}:{name})"),
        source,
    };
    let p: &mut TracePoint = ebpf
        .program_mut(prog)
        .ok_or(CaptureError::Missing("a program"))?
        .try_into()
        .map_err(err)?;
    if p.fd().is_err() {
        p.load().map_err(err)?;
    }
    p.attach(category, name).map_err(err)?;
    Ok(())
}
