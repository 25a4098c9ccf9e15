//! Capture: loading the eBPF programs, attaching them, and reading what
//! they report.
pub mod btf;
pub mod cgroup;
pub mod collect;
pub mod decode;
pub mod kept;
pub mod mounts_made;
pub mod objects;
pub mod offsets;
pub mod offsets_cache;
pub mod preexisting;
pub mod proc_links;
pub mod store;

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, AsRawFd, RawFd},
    path::Path,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::raw_trace_point::RawTracePointLink,
};
use thiserror::Error;
use tokio::io::{Interest, unix::AsyncFd};
use tracer_common::{
    Config, RunConfig, ScopeRoot, URING_OPS, UnobservedKey, UringSpec, abi, abis, arm, channel,
    loss, scope_mode, stats,
};

use crate::model::trace::{LostEvents, Syscalls, Unobserved};
use collect::Collector;
use objects::Objects;

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
    #[error("reading kernel BTF")]
    Btf(#[from] btf::BtfError),
    #[error("the kernel refused to load the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program {name}")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}")]
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
    #[error("cannot reset the kept eBPF map {0}: {1}")]
    Reset(&'static str, std::io::Error),
}

/// How the kernel side picks the traced tasks.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Cgroup { id: u64, level: u32 },
    Pids,
}

/// From when a task in scope is traced.
#[derive(Clone, Copy, Debug)]
pub enum Arm {
    /// At once: `trace attach`. The scope's root is `root_pid`'s root (0:
    /// the first traced task's).
    Always { root_pid: u32 },
    /// From the command's exec on: `trace run`.
    OnExec,
    /// From the first exec inside a container (a mount namespace other
    /// than ours), so the runtime's own work is left out.
    OnForeignExec,
}

/// What to capture.
pub struct Options<'a> {
    pub scope: Scope,
    pub ringbuf_bytes: u32,
    pub btf: &'a Path,
    pub arm: Arm,
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
    if !rustix::process::geteuid().is_root() {
        return Err(CaptureError::NotRoot);
    }
    if !btf.exists() {
        return Err(CaptureError::NoBtf(btf.display().to_string()));
    }
    Ok(())
}

/// Where each program attaches, in this order: what ends an event before
/// what begins one, so that no entry is saved whose exit is not watched
/// yet. Raw tracepoints, not the per-syscall `syscalls:*` ones: those
/// attach through perf events, and detaching each waits for an RCU grace
/// period (35 of them took 1.4-2.5 s at exit).
const ATTACH: [(&str, &str); 5] = [
    ("process_exit", "sched_process_exit"),
    ("process_fork", "sched_process_fork"),
    ("sys_exit", "sys_exit"),
    ("process_exec", "sched_process_exec"),
    ("sys_enter", "sys_enter"),
];
/// io_uring's tracepoints exist only where the kernel has io_uring.
const ATTACH_URING: [(&str, &str); 2] = [
    ("uring_complete", "io_uring_complete"),
    ("uring_submit", "io_uring_submit_req"),
];
/// Tells a traced process moving out of the scope (cgroup scope only).
/// Where it cannot be loaded or attached such a move goes unseen, as on
/// kernels before 6.1 (docs/capture.md): the run itself goes on.
const ATTACH_CGROUP_MOVE: (&str, &str) = ("cgroup_attach", "cgroup_attach_task");

/// The kernel offsets a capture starts with.
enum Offsets {
    Kept(Box<offsets_cache::Offsets>),
    Reading(std::thread::JoinHandle<Result<offsets_cache::Offsets, btf::BtfError>>),
}

/// How often the reader looks at the ring buffer between wake-ups.
const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// What the kernel side counted over a whole capture.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub lost: LostEvents,
    /// Syscalls in scope examined, and of those dropped as repeats.
    pub seen: u64,
    pub deduplicated: u64,
    pub syscalls: Syscalls,
    pub unobserved: Vec<Unobserved>,
    pub missed_by_kernel: u64,
}

pub struct Capture {
    objects: Objects,
    /// Held while this capture uses (or has just kept) a kept set.
    _kept: Option<kept::Slot>,
    /// Counters a kept set's programs had at the start (they are
    /// cumulative over the programs' life): missed runs, and per program
    /// (runs, run time).
    missed_at_start: u64,
    run_stats_at_start: BTreeMap<String, (u64, u64)>,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Holding this fd keeps the tail-call slot filled.
    _finish: ProgramArray<MapData>,
    links: Vec<RawTracePointLink>,
    /// False when the io_uring tracepoints could not be attached: any use
    /// of io_uring then goes unrecorded, which `unobserved` says.
    uring_traced: bool,
    /// Held while `TRACE_DEBUG_BPF_STATS` asks for the programs' run time:
    /// the kernel counts it only while some such fd is open.
    run_stats: Option<std::os::fd::OwnedFd>,
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
        // Kept by an earlier run of this boot, or read from BTF on a thread
        // while the loader is made.
        let offsets = match offsets_cache::load(btf) {
            Some(kept) => Offsets::Kept(Box::new(kept)),
            None => {
                let btf_path = btf.to_path_buf();
                Offsets::Reading(std::thread::spawn(move || {
                    let btf = btf::Btf::from_file_for(&btf_path, offsets::STRUCTS)?;
                    crate::timing::mark("our BTF index built");
                    let offsets = offsets::from_btf(&btf)?;
                    let uring =
                        offsets::uring_specs(&btf).unwrap_or([UringSpec::UNKNOWN; URING_OPS]);
                    crate::timing::mark("our offsets looked up");
                    Ok((offsets, uring))
                }))
            }
        };
        // Made while the offsets are read; not needed when a kept set is
        // reused, which needs offsets kept from earlier in this boot.
        let mut loader = match offsets {
            Offsets::Reading(_) => Some(loader_without_btf()),
            Offsets::Kept(_) => None,
        };
        crate::timing::mark("loader made");
        let run_stats = std::env::var_os(RUN_STATS_ENV)
            .and_then(|_| aya::sys::enable_stats(aya::sys::Stats::RunTime).ok());
        let (offsets, uring_specs) = match offsets {
            Offsets::Kept(kept) => {
                crate::timing::mark("offsets kept from earlier in this boot");
                *kept
            }
            Offsets::Reading(reading) => {
                let read = reading
                    .join()
                    .map_err(|_| CaptureError::Missing("kernel offsets (BTF reader panicked)"))??;
                offsets_cache::store(btf, &read);
                crate::timing::mark("offsets read from BTF");
                read
            }
        };
        let (arm_mode, root_pid) = match opts.arm {
            Arm::Always { root_pid } => (arm::ALWAYS, root_pid),
            Arm::OnExec => (arm::ON_EXEC, 0),
            Arm::OnForeignExec => (arm::ON_FOREIGN_EXEC, 0),
        };
        let config = Config {
            scope_mode,
            cgroup_level,
            ringbuf_wakeup_bytes: u64::from(ringbuf_bytes / 4),
            arm: arm_mode,
            host_mntns: if matches!(opts.arm, Arm::OnForeignExec) {
                own_mnt_ns()?
            } else {
                0
            },
            offsets,
        };
        let specs = abis::specs();
        let process_table = std::env::var(PROCESS_TABLE_ENV)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n > 0);
        let cpus = possible_cpus();
        // Everything the verifier's verdict and the maps' shapes depend on.
        // Config by its fields: it has trailing padding.
        let config_fields = format!("{config:?}");
        let key = kept::key(&[
            config_fields.as_bytes(),
            kept::bytes_of(&*specs),
            kept::bytes_of(&uring_specs),
            &ringbuf_bytes.to_ne_bytes(),
            &cpus.to_ne_bytes(),
            &process_table.unwrap_or(0).to_ne_bytes(),
        ]);
        let slot = kept::claim(&key);
        let mut pinned = None;
        // A set that cannot be reset is removed, and this capture loads
        // (and keeps) a new one.
        let reused = slot.as_ref().and_then(|s| {
            let mut objects = s.open()?;
            match kept::reset(&mut objects) {
                Ok(()) => Some(objects),
                Err(_) => {
                    s.discard();
                    None
                }
            }
        });
        let mut objects = match reused {
            Some(objects) => {
                crate::timing::mark("programs kept by an earlier capture reset");
                objects
            }
            None => {
                let mut loader = loader.take().unwrap_or_else(loader_without_btf);
                if let Some(n) = process_table {
                    loader
                        .map_max_entries("ARMED", n)
                        .map_max_entries("SCOPE_PIDS", n);
                }
                // No BTF relocation: the programs use no CO-RE (offsets
                // come in through CONFIG).
                let mut ebpf = loader
                    .btf(None)
                    .override_global("CONFIG", &config, true)
                    .override_global("SPECS", &*specs, true)
                    .override_global("URING_SPECS", &uring_specs, true)
                    .map_max_entries("EVENTS", ringbuf_bytes)
                    .map_max_entries("SCRATCH", cpus)
                    .load(EBPF_OBJECT)
                    .map_err(CaptureError::Load)?;
                crate::timing::mark("object loaded (maps created)");
                // Every program is verified (loaded) before anything is
                // attached, on threads of their own: the kernel verifies
                // privileged loads in parallel, and verifying is most of
                // start-up.
                load_all(&mut ebpf)?;
                crate::timing::mark("programs verified");
                // Keeping is an optimisation: a set that cannot be pinned
                // is simply not kept.
                pinned = slot.as_ref().and_then(|s| s.pin(&mut ebpf).ok());
                Objects::Loaded(Box::new(ebpf))
            }
        };
        {
            let name = "RUN";
            let err = |source| CaptureError::Map { name, source };
            let map = objects.map_mut(name).ok_or(CaptureError::Missing(name))?;
            let mut slot = Array::<_, RunConfig>::try_from(map).map_err(err)?;
            // A fresh load's is 0; the next number is never 0.
            let last = slot.get(&0, 0).map_err(err)?.epoch;
            let epoch = match last.wrapping_add(1) {
                0 => 1,
                n => n,
            };
            let run = RunConfig {
                cgroup_id,
                root_pid,
                epoch,
                ..RunConfig::default()
            };
            slot.set(0, run, 0).map_err(err)?;
        }
        // `finish` is reached by tail call only; it must be in place before
        // any program that jumps to it is attached. A kept set has it.
        let finish_map = objects
            .take_map("FINISH")
            .ok_or(CaptureError::Missing("FINISH map"))?;
        let map_err = |source| CaptureError::Map {
            name: "FINISH",
            source,
        };
        let mut finish_map = ProgramArray::try_from(finish_map).map_err(map_err)?;
        if !objects.is_kept() {
            let finish = objects
                .program_mut("finish")
                .ok_or(CaptureError::Missing("the finish program"))?;
            let fd = finish.fd().map_err(|source| CaptureError::Program {
                name: "finish".into(),
                source,
            })?;
            finish_map.set(0, fd, 0).map_err(map_err)?;
        }
        // Whole now: later captures may use it.
        if let (Some(slot), Some(pinned)) = (&slot, pinned) {
            let _ = slot.commit(pinned);
        }
        let events = objects
            .take_map("EVENTS")
            .ok_or(CaptureError::Missing("EVENTS map"))?;
        let mut ring = RingBuf::try_from(events).map_err(|source| CaptureError::Map {
            name: "EVENTS",
            source,
        })?;
        // What an earlier capture of a kept set left unread is not ours.
        while ring.next().is_some() {}
        let missed_at_start = missed_by(&objects);
        let run_stats_at_start = if run_stats.is_some() {
            run_counts(&objects)
        } else {
            BTreeMap::new()
        };
        let mut links = Vec::new();
        for (prog, tracepoint) in ATTACH {
            links.push(attach(&mut objects, prog, tracepoint)?);
            crate::timing::mark_with(|| format!("  {prog} attached"));
        }
        let mut uring_traced = ATTACH_URING.iter().all(|(p, _)| objects.is_loaded(p));
        if uring_traced {
            for (prog, tracepoint) in ATTACH_URING {
                match attach(&mut objects, prog, tracepoint) {
                    Ok(link) => links.push(link),
                    Err(_) => uring_traced = false,
                }
                crate::timing::mark_with(|| format!("  {prog} attached"));
            }
        }
        let (prog, tracepoint) = ATTACH_CGROUP_MOVE;
        if objects.is_loaded(prog)
            && let Ok(link) = attach(&mut objects, prog, tracepoint)
        {
            links.push(link);
            crate::timing::mark_with(|| format!("  {prog} attached"));
        }
        crate::timing::mark("attached");
        if std::env::var_os(VERIFIER_STATS_ENV).is_some() {
            print_verifier_stats(&objects);
        }
        // SAFETY: the RingBuf owns its fd and lives inside the AsyncFd, so
        // the fd stays open for as long as it is registered.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| CaptureError::Poll(e.into_parts().1))?;
        Ok(Capture {
            objects,
            _kept: slot,
            missed_at_start,
            run_stats_at_start,
            ring,
            _finish: finish_map,
            links,
            uring_traced,
            run_stats,
        })
    }

    pub fn scope_pids_fd(&self) -> Result<RawFd, CaptureError> {
        match self.objects.map("SCOPE_PIDS") {
            Some(aya::maps::Map::HashMap(data)) => Ok(data.fd().as_fd().as_raw_fd()),
            _ => Err(CaptureError::Missing("SCOPE_PIDS hash map")),
        }
    }

    /// Puts running processes into the pid scope (`trace attach --pid`),
    /// each with its start time (`task->start_boottime`, ns).
    pub fn add_pids(&mut self, pids: &[(u32, u64)]) -> Result<(), CaptureError> {
        let map = self
            .objects
            .map_mut("SCOPE_PIDS")
            .ok_or(CaptureError::Missing("SCOPE_PIDS map"))?;
        let mut map: BpfHashMap<_, u32, u64> =
            BpfHashMap::try_from(map).map_err(|source| CaptureError::Map {
                name: "SCOPE_PIDS",
                source,
            })?;
        for (pid, start) in pids {
            map.insert(pid, start, 0)
                .map_err(|source| CaptureError::Map {
                    name: "SCOPE_PIDS",
                    source,
                })?;
        }
        Ok(())
    }

    /// Processes still in the pid scope (pid mode only), with the start
    /// time the kernel recorded for each, so that a process that reused
    /// the pid is never taken for one of ours.
    pub fn scope_pids(&self) -> Vec<(u32, u64)> {
        let Some(map) = self.objects.map("SCOPE_PIDS") else {
            return Vec::new();
        };
        match BpfHashMap::<_, u32, u64>::try_from(map) {
            Ok(m) => m.iter().filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The scope's root was set by the kernel side (some task ran).
    pub fn root_known(&self) -> bool {
        let Some(map) = self.objects.map("ROOT") else {
            return false;
        };
        aya::maps::Array::<_, ScopeRoot>::try_from(map)
            .ok()
            .and_then(|a| a.get(&0, 0).ok())
            .is_some_and(|r| r.dentry != 0)
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
        let debug = std::env::var_os(RECORDS_ENV).is_some();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            match decode::Event::decode(&item) {
                Ok(e) => {
                    if debug {
                        eprintln!("trace: debug: {e:?}");
                    }
                    collector.add(e)
                }
                Err(_) => collector.malformed_record(),
            }
        }
    }

    fn per_cpu(&self, name: &'static str, count: u32) -> Result<Vec<Vec<u64>>, CaptureError> {
        let map = self.objects.map(name).ok_or(CaptureError::Missing(name))?;
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

    /// Every syscall made in scope, per ABI, with names from the ABI's
    /// own table.
    pub fn syscalls(&self) -> Result<Syscalls, CaptureError> {
        let name = "SYSCALL_BITS";
        let map = self.objects.map(name).ok_or(CaptureError::Missing(name))?;
        let arr: PerCpuArray<_, [u64; tracer_common::SYSCALL_WORDS]> =
            PerCpuArray::try_from(map).map_err(|source| CaptureError::Map { name, source })?;
        let numbers = |which: u8| -> Result<Vec<u32>, CaptureError> {
            let per_cpu = arr
                .get(&u32::from(which), 0)
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
        };
        let mut native = Syscalls::from_numbers(&abis::native(), numbers(abi::NATIVE)?);
        let compat = numbers(abi::COMPAT)?;
        if let Some(c) = abis::compat()
            && !compat.is_empty()
        {
            native.compat = Some(Box::new(Syscalls::from_numbers(&c, compat)));
        }
        Ok(native)
    }

    /// Accesses the kernel side could only count, and io_uring itself
    /// when its tracepoints could not be attached but it was used.
    pub fn unobserved(&self, syscalls: &Syscalls) -> Result<Vec<Unobserved>, CaptureError> {
        let name = "UNOBSERVED";
        let map = self.objects.map(name).ok_or(CaptureError::Missing(name))?;
        let map: BpfHashMap<_, UnobservedKey, u64> =
            BpfHashMap::try_from(map).map_err(|source| CaptureError::Map { name, source })?;
        let mut out: Vec<Unobserved> = map
            .iter()
            .filter_map(Result::ok)
            .map(|(k, count)| Unobserved {
                channel: match k.channel {
                    channel::IO_URING => "io_uring".into(),
                    channel::X32 => "x32".into(),
                    channel::CGROUP_MOVE => "cgroup".into(),
                    channel::SENDMMSG => "sendmmsg".into(),
                    other => format!("channel_{other}"),
                },
                op: match k.channel {
                    channel::CGROUP_MOVE => "moved out of the scope".into(),
                    channel::SENDMMSG => "a later message's AF_UNIX path".into(),
                    channel::IO_URING if k.op == 0xffff => "any (io_uring structs unknown)".into(),
                    channel::IO_URING => format!("op_{}", k.op),
                    _ => format!("syscall_{}", k.op),
                },
                pid: k.pid,
                count,
            })
            .collect();
        if !self.uring_traced && syscalls.names.iter().any(|n| n == "io_uring_enter") {
            out.push(Unobserved {
                channel: "io_uring".into(),
                op: "any (tracepoints unavailable)".into(),
                pid: 0,
                count: 1,
            });
        }
        out.sort();
        Ok(out)
    }

    /// Events the kernel skipped because one of our programs was already
    /// running on that CPU (a preempted task), summed over the programs.
    pub fn missed_by_kernel(&self) -> u64 {
        missed_by(&self.objects).saturating_sub(self.missed_at_start)
    }

    /// The end of a capture: the last records into `collector`, then every
    /// counter.
    pub fn finish(&mut self, collector: &mut Collector) -> Result<Totals, CaptureError> {
        self.drain(collector);
        if self.run_stats.is_some() {
            print_run_stats(&self.objects, &self.run_stats_at_start);
        }
        let (seen, deduplicated) = self.stats()?;
        let syscalls = self.syscalls()?;
        Ok(Totals {
            lost: self.lost()?,
            seen,
            deduplicated,
            unobserved: self.unobserved(&syscalls)?,
            syscalls,
            missed_by_kernel: self.missed_by_kernel(),
        })
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

/// An `EbpfLoader` that has not parsed the kernel's BTF. aya 0.14's
/// `EbpfLoader::new()` parses all of `/sys/kernel/btf/vmlinux` (20-50 ms,
/// the largest part of start-up) even though relocation is then disabled
/// (`.btf(None)`: the programs take their offsets from `CONFIG`). Made on
/// a thread of its own in a private mount namespace where that directory
/// is an empty tmpfs, it finds no BTF at once; the thread, and with it the
/// namespace, ends right after. Where that cannot be set up, the plain
/// loader is used.
fn loader_without_btf() -> EbpfLoader<'static> {
    let made = std::thread::spawn(|| -> Option<EbpfLoader<'static>> {
        use rustix::{
            mount::{MountFlags, MountPropagationFlags, mount, mount_change},
            thread::{UnshareFlags, unshare_unsafe},
        };
        // SAFETY: unshare_unsafe is unsafe for FILES (a thread losing fds
        // other threads made); this unshares only FS and the mount
        // namespace, for this short-lived thread alone (CLONE_FS gives it
        // its own root and cwd, which a new mount namespace requires).
        unsafe { unshare_unsafe(UnshareFlags::FS | UnshareFlags::NEWNS) }.ok()?;
        // Private first, so the tmpfs below is not propagated back.
        mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .ok()?;
        mount(
            "tmpfs",
            "/sys/kernel/btf",
            "tmpfs",
            MountFlags::empty(),
            None,
        )
        .ok()?;
        Some(EbpfLoader::new())
    })
    .join()
    .ok()
    .flatten();
    made.unwrap_or_else(EbpfLoader::new)
}

/// How many CPUs the kernel may ever run programs on (`cpu_possible`):
/// one scratch record each.
fn possible_cpus() -> u32 {
    aya::util::nr_cpus().map(|n| n as u32).unwrap_or(256).max(1)
}

/// Attaches the loaded program `prog` to the raw tracepoint `tracepoint`.
fn attach(
    objects: &mut Objects,
    prog: &str,
    tracepoint: &str,
) -> Result<RawTracePointLink, CaptureError> {
    let err = |source| CaptureError::Program {
        name: format!("{prog} (raw tracepoint {tracepoint})"),
        source,
    };
    let p = objects
        .program_mut(prog)
        .ok_or(CaptureError::Missing("a program"))?;
    let id = p.attach(tracepoint).map_err(err)?;
    p.take_link(id).map_err(err)
}

/// Runs the kernel skipped, summed over the programs (cumulative over
/// each program's life).
fn missed_by(objects: &Objects) -> u64 {
    objects
        .loaded_programs()
        .into_iter()
        .map(|(_, fd)| recursion_misses(fd))
        .sum()
}

/// Each program's (runs, run time in ns) so far.
fn run_counts(objects: &Objects) -> BTreeMap<String, (u64, u64)> {
    objects
        .loaded_programs()
        .into_iter()
        .filter_map(|(name, fd)| {
            let info = prog_info(fd)?;
            Some((name.to_string(), (info.run_cnt, info.run_time_ns)))
        })
        .collect()
}

/// `bpf_prog_info.recursion_misses` of a loaded program (0 if unknown).
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
    prog_info(fd).map_or(0, |i| i.recursion_misses)
}

/// Debugging hook: print every record as decoded.
const RECORDS_ENV: &str = "TRACE_DEBUG_RECORDS";

/// Test hook: room for this many processes in the tables of traced and
/// armed processes (32768 otherwise), to show that a full table is
/// reported.
const PROCESS_TABLE_ENV: &str = "TRACE_DEBUG_PROCESS_TABLE";

/// Test and profiling hook: print each program's verifier effort.
const VERIFIER_STATS_ENV: &str = "TRACE_DEBUG_VERIFIER_STATS";

/// Profiling hook: print each program's run count and mean run time (ns)
/// at the end of the capture.
const RUN_STATS_ENV: &str = "TRACE_DEBUG_BPF_STATS";

fn print_run_stats(objects: &Objects, at_start: &BTreeMap<String, (u64, u64)>) {
    for (name, (runs, ns)) in run_counts(objects) {
        let (runs0, ns0) = at_start.get(&name).copied().unwrap_or((0, 0));
        let (runs, ns) = (runs.saturating_sub(runs0), ns.saturating_sub(ns0));
        let mean = ns.checked_div(runs).unwrap_or(0);
        eprintln!(
            "trace: debug: {name}: {runs} runs, {:.1} ms in all, {mean} ns each",
            ns as f64 / 1e6
        );
    }
}

fn print_verifier_stats(objects: &Objects) {
    for (name, fd) in objects.loaded_programs() {
        if let Some(info) = prog_info(fd) {
            eprintln!(
                "trace: debug: {name}: {} instructions verified, {} translated",
                info.verified_insns,
                info.xlated_prog_len / 8
            );
        }
    }
}

fn prog_info(fd: std::os::fd::BorrowedFd<'_>) -> Option<aya_obj::generated::bpf_prog_info> {
    use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};
    // SAFETY: zeroed plain C structs; the kernel fills at most info_len
    // bytes of `info` and reads only the `info` member of the attr.
    unsafe {
        let mut info: bpf_prog_info = std::mem::zeroed();
        let mut attr: bpf_attr = std::mem::zeroed();
        attr.info.bpf_fd = fd.as_raw_fd() as u32;
        attr.info.info_len = std::mem::size_of::<bpf_prog_info>() as u32;
        attr.info.info = &mut info as *mut bpf_prog_info as u64;
        let rc = libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &mut attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>() as libc::c_uint,
        );
        (rc == 0).then_some(info)
    }
}

/// The programs by how long the kernel takes to verify them, longest
/// first (`TRACE_DEBUG_TIMING` and `strace -T` on `BPF_PROG_LOAD`: about
/// 3.4, 3.2, 1.7, 1.5, 0.8, 0.4, 0.2 and 0.1 ms). Handing them out in
/// this order to one worker per CPU ends the loading soonest; a program
/// missing here is loaded last.
const VERIFY_ORDER: [&str; 9] = [
    "sys_exit",
    "finish",
    "uring_submit",
    "sys_enter",
    "process_exec",
    "uring_complete",
    "process_fork",
    "cgroup_attach",
    "process_exit",
];

/// Loads every program, longest to verify first, on one worker thread per
/// CPU (the kernel verifies privileged loads in parallel; a thread per
/// program left the longest ones waiting behind the short ones). The
/// io_uring programs may fail (a kernel without io_uring has no such
/// tracepoints to check them against), and so may the cgroup one; any
/// other failure is an error.
fn load_all(ebpf: &mut Ebpf) -> Result<(), CaptureError> {
    type Loaded = (String, Result<(), aya::programs::ProgramError>);
    let mut queue: Vec<(String, &mut aya::programs::Program)> = ebpf
        .programs_mut()
        .map(|(name, prog)| (name.to_string(), prog))
        .collect();
    let rank = |name: &str| {
        VERIFY_ORDER
            .iter()
            .position(|p| *p == name)
            .unwrap_or(VERIFY_ORDER.len())
    };
    // Popped from the back: the longest last.
    queue.sort_by_key(|(name, _)| std::cmp::Reverse(rank(name)));
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, queue.len().max(1));
    let queue = std::sync::Mutex::new(queue);
    let results: Vec<Loaded> = std::thread::scope(|scope| {
        let jobs: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done: Vec<Loaded> = Vec::new();
                    loop {
                        let next = match queue.lock() {
                            Ok(mut q) => q.pop(),
                            Err(_) => None,
                        };
                        let Some((name, prog)) = next else {
                            return done;
                        };
                        let r = match <&mut aya::programs::RawTracePoint>::try_from(prog) {
                            Ok(p) => p.load(),
                            Err(e) => Err(e),
                        };
                        crate::timing::mark_with(|| format!("  {name} verified"));
                        done.push((name, r));
                    }
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| {
                j.join().unwrap_or_else(|_| {
                    vec![(
                        "a program".to_string(),
                        Err(aya::programs::ProgramError::UnexpectedProgramType),
                    )]
                })
            })
            .collect()
    });
    // A worker that panicked left an error in its place. The io_uring
    // and cgroup programs are optional: one that failed has no fd, and is
    // left unattached.
    for (name, r) in results {
        if let Err(source) = r {
            let optional =
                ATTACH_URING.iter().any(|(p, _)| *p == name) || name == ATTACH_CGROUP_MOVE.0;
            if !optional {
                return Err(CaptureError::Program { name, source });
            }
        }
    }
    Ok(())
}
