//! Capture: loading the eBPF programs, attaching them, and reading what
//! they report.
pub mod btf;
pub mod cgroup;
pub mod decode;
pub mod offsets;

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd, RawFd},
    path::Path,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{RawTracePoint, raw_trace_point::RawTracePointLink},
};
use thiserror::Error;
use tokio::io::{Interest, unix::AsyncFd};
use tracer_common::{Config, loss, scope_mode, stats};

use crate::model::{collect::Collector, trace::LostEvents};

/// The eBPF object, built by `build.rs` through aya-build.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error(
        "trace needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN); run it as root or with sudo"
    )]
    NotRoot,
    #[error(
        "kernel BTF not found at {0} (the kernel needs CONFIG_DEBUG_INFO_BTF=y, or pass --btf FILE)"
    )]
    NoBtf(String),
    #[error("reading kernel BTF: {0}")]
    Btf(#[from] btf::BtfError),
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
    #[error("cannot read this process's mount namespace: {0}")]
    MountNamespace(std::io::Error),
}

/// How the kernel side picks the traced tasks.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Cgroup { id: u64, level: u32 },
    Pids,
}

/// What to capture.
pub struct Options<'a> {
    pub scope: Scope,
    pub ringbuf_bytes: u32,
    pub btf: &'a Path,
    /// Trace only what runs inside a container started in the scope (see
    /// `Config::arm_on_foreign_exec`), not the runtime itself.
    pub container: bool,
}

/// The inode number of this process's mount namespace.
fn own_mnt_ns() -> Result<u32, CaptureError> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/mnt")
        .map(|m| m.ino() as u32)
        .map_err(CaptureError::MountNamespace)
}

/// Checks what loading needs, so a missing piece gets one clear line
/// instead of a raw errno from deep inside the loader.
pub fn preflight(btf: &Path) -> Result<(), CaptureError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CaptureError::NotRoot);
    }
    if !btf.exists() {
        return Err(CaptureError::NoBtf(btf.display().to_string()));
    }
    Ok(())
}

/// Where each program attaches. Raw tracepoints, not the per-syscall
/// `syscalls:*` ones: those attach through perf events, and detaching each
/// waits for an RCU grace period (35 of them took 1.4-2.5 s at exit).
const ATTACH: [(&str, &str); 3] = [
    ("sys_enter", "sys_enter"),
    ("sys_exit", "sys_exit"),
    ("process_exec", "sched_process_exec"),
];
/// Only needed to follow forks (pid scope, container mode).
const ATTACH_PIDS: [(&str, &str); 2] = [
    ("process_fork", "sched_process_fork"),
    ("process_exit", "sched_process_exit"),
];

/// How often the reader looks at the ring buffer between wake-ups.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

pub struct Capture {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Holding this fd keeps the tail-call slot filled.
    _finish: ProgramArray<MapData>,
    links: Vec<RawTracePointLink>,
}

impl Capture {
    /// Loads and attaches everything. Nothing is traced until a task joins
    /// the scope.
    pub fn start(opts: &Options) -> Result<Capture, CaptureError> {
        let (scope, ringbuf_bytes, btf) = (opts.scope, opts.ringbuf_bytes, opts.btf);
        preflight(btf)?;
        let (scope_mode, cgroup_id, cgroup_level) = match scope {
            Scope::Cgroup { id, level } => (scope_mode::CGROUP, id, level),
            Scope::Pids => (scope_mode::PIDS, 0, 0),
        };
        // aya's EbpfLoader::new() parses the kernel's BTF itself (~15 ms)
        // and cannot be told not to; read our offsets on a thread meanwhile.
        let btf_path = btf.to_path_buf();
        let offsets = std::thread::spawn(move || offsets::from_file(&btf_path));
        let mut loader = EbpfLoader::new();
        let offsets = offsets
            .join()
            .map_err(|_| CaptureError::Missing("kernel offsets (BTF reader panicked)"))??;
        let config = Config {
            scope_mode,
            cgroup_level,
            cgroup_id,
            ringbuf_wakeup_bytes: u64::from(ringbuf_bytes / 4),
            arm_on_foreign_exec: u32::from(opts.container),
            host_mntns: if opts.container { own_mnt_ns()? } else { 0 },
            offsets,
        };
        // No BTF relocation: the programs use no CO-RE (offsets come in
        // through CONFIG).
        let mut ebpf = loader
            .btf(None)
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", ringbuf_bytes)
            .load(EBPF_OBJECT)
            .map_err(CaptureError::Load)?;
        // `finish` is reached by tail call only; it must be in place before
        // any program that jumps to it is attached.
        let finish_map = ebpf
            .take_map("FINISH")
            .ok_or(CaptureError::Missing("FINISH map"))?;
        let map_err = |source| CaptureError::Map {
            name: "FINISH",
            source,
        };
        let mut finish_map = ProgramArray::try_from(finish_map).map_err(map_err)?;
        let finish = load(&mut ebpf, "finish")?;
        let fd = finish.fd().map_err(|source| CaptureError::Program {
            name: "finish".into(),
            source,
        })?;
        finish_map.set(0, fd, 0).map_err(map_err)?;

        let mut links = Vec::new();
        let extra: &[(&str, &str)] = if matches!(scope, Scope::Pids) || opts.container {
            &ATTACH_PIDS
        } else {
            &[]
        };
        for (prog, tracepoint) in ATTACH.iter().chain(extra) {
            let err = |source| CaptureError::Program {
                name: format!("{prog} (raw tracepoint {tracepoint})"),
                source,
            };
            let p = load(&mut ebpf, prog)?;
            let id = p.attach(tracepoint).map_err(err)?;
            links.push(p.take_link(id).map_err(err)?);
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
            links,
        })
    }

    pub fn scope_pids_fd(&self) -> Result<RawFd, CaptureError> {
        match self.ebpf.map("SCOPE_PIDS") {
            Some(aya::maps::Map::HashMap(data)) => Ok(data.fd().as_fd().as_raw_fd()),
            _ => Err(CaptureError::Missing("SCOPE_PIDS hash map")),
        }
    }

    /// Puts running processes into the pid scope (`trace attach --pid`).
    pub fn add_pids(&mut self, pids: &[u32]) -> Result<(), CaptureError> {
        let map = self
            .ebpf
            .map_mut("SCOPE_PIDS")
            .ok_or(CaptureError::Missing("SCOPE_PIDS map"))?;
        let mut map: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|source| CaptureError::Map {
                name: "SCOPE_PIDS",
                source,
            })?;
        for pid in pids {
            map.insert(pid, 1, 0).map_err(|source| CaptureError::Map {
                name: "SCOPE_PIDS",
                source,
            })?;
        }
        Ok(())
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

    /// Waits until the ring buffer may have data: the kernel woke us (it
    /// does so only when the buffer is a quarter full) or the poll interval
    /// passed.
    pub async fn readable(&mut self) -> Result<(), CaptureError> {
        tokio::select! {
            guard = self.ring.readable_mut() => {
                guard.map_err(CaptureError::Poll)?.clear_ready();
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
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

    /// Every syscall number made in scope.
    pub fn syscalls(&self) -> Result<Vec<u32>, CaptureError> {
        let name = "SYSCALL_BITS";
        let map = self.ebpf.map(name).ok_or(CaptureError::Missing(name))?;
        let arr: PerCpuArray<_, [u64; tracer_common::SYSCALL_WORDS]> =
            PerCpuArray::try_from(map).map_err(|source| CaptureError::Map { name, source })?;
        let per_cpu = arr
            .get(&0, 0)
            .map_err(|source| CaptureError::Map { name, source })?;
        let mut words = [0u64; tracer_common::SYSCALL_WORDS];
        for cpu in per_cpu.iter() {
            for (w, c) in words.iter_mut().zip(cpu) {
                *w |= c;
            }
        }
        Ok((0..(tracer_common::SYSCALL_WORDS * 64) as u32)
            .filter(|n| words[(n / 64) as usize] & (1 << (n % 64)) != 0)
            .collect())
    }

    /// (syscalls seen, deduplicated in the kernel).
    pub fn stats(&self) -> Result<(u64, u64), CaptureError> {
        let rows = self.per_cpu("STATS", stats::COUNT)?;
        let sum = |i: u32| rows.get(i as usize).map_or(0, |r| r.iter().sum());
        Ok((sum(stats::SEEN), sum(stats::DEDUPLICATED)))
    }
}

impl Drop for Capture {
    /// Detach first, explicitly, so nothing is traced while the rest of the
    /// object (maps, programs) is torn down.
    fn drop(&mut self) {
        self.links.clear();
    }
}

/// Loads the raw tracepoint program `name`.
fn load<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut RawTracePoint, CaptureError> {
    let err = |source| CaptureError::Program {
        name: name.to_string(),
        source,
    };
    let p: &mut RawTracePoint = ebpf
        .program_mut(name)
        .ok_or(CaptureError::Missing("a program"))?
        .try_into()
        .map_err(err)?;
    p.load().map_err(err)?;
    Ok(p)
}
