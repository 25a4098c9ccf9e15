//! Attaching: tracing a process tree, cgroup or container that is already
//! running, until a signal, the duration, or its end.
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use super::spec::CaptureSpec;
use crate::{
    capture::{
        Arm, Capture, Options, Scope, cgroup,
        collect::{Collector, Files, RunInfo},
    },
    engine::{self, Engine, EngineError, container::Manager},
    model::trace::{ExitInfo, ScopeInfo, Trace},
    runtime::child,
};

/// What to attach to.
#[derive(Clone, Debug)]
pub enum AttachTarget {
    /// A process and all its descendants (present and future).
    Pid(u32),
    /// A cgroup v2 directory (absolute, or relative to the mount).
    Cgroup(PathBuf),
    /// A running container, by name or id.
    Container {
        name: String,
        /// Who to ask; None: every engine installed.
        engine: Option<ContainerEngine>,
        /// The containerd namespace; None: $CONTAINERD_NAMESPACE, else
        /// `default`.
        namespace: Option<String>,
    },
}

#[derive(Clone, Debug)]
pub struct AttachSpec {
    pub target: AttachTarget,
    /// Stop after this long; None: until SIGINT or SIGTERM (or the
    /// target's end).
    pub duration: Option<Duration>,
    pub capture: CaptureSpec,
}

/// The scope resolved from a target.
struct Resolved {
    scope: Scope,
    cgroup: Option<PathBuf>,
    /// The target as the trace's command names it.
    label: Vec<String>,
}

/// Traces the target until SIGINT, SIGTERM, the duration, or its end;
/// returns the trace with its files still in the collector.
pub async fn attach(spec: &AttachSpec) -> Result<(Trace, Files)> {
    let btf = &spec.capture.btf;
    crate::capture::preflight(btf)?;
    let target = resolve(&spec.target)?;
    let root_pid = match spec.target {
        AttachTarget::Pid(pid) => pid,
        _ => 0,
    };
    let mut capture = Capture::start(&Options {
        scope: target.scope,
        ringbuf_bytes: spec.capture.ringbuf_bytes,
        btf,
        arm: Arm::Always { root_pid },
    })?;
    // Tracing is on: what the targets hold from now on is seen; what they
    // held before is read from /proc.
    let present = match (&spec.target, &target.cgroup) {
        (AttachTarget::Pid(pid), _) => {
            let pids = descendants(*pid);
            let with_start: Vec<(u32, u64)> = pids
                .iter()
                .filter_map(|&p| Some((p, child::start_time_ns(p)?)))
                .collect();
            capture.add_pids(&with_start)?;
            pids
        }
        (_, Some(dir)) => cgroup_pids(dir),
        (_, None) => Vec::new(),
    };
    let mut collector = Collector::new();
    collector.add_preexisting(&crate::capture::preexisting::scan(&present));
    // trace attach spawns nothing while it follows: the reader keeps up
    // with the processes it follows.
    let raised = crate::runtime::priority::raise();
    follow(
        &mut capture,
        &mut collector,
        target.cgroup.as_deref(),
        spec.duration,
    )
    .await?;
    let totals = capture.finish(&mut collector)?;
    drop(raised);
    drop(capture);
    let mut command = vec!["attach".to_string()];
    command.extend(target.label);
    Ok(collector.finish_streamed(RunInfo {
        command,
        exit: ExitInfo {
            code: 0,
            signal: None,
        },
        scope: ScopeInfo {
            mode: if target.cgroup.is_some() {
                "cgroup".into()
            } else {
                "pids".into()
            },
            cgroup: target.cgroup.map(|p| p.display().to_string()),
            leftovers_killed: 0,
            image: None,
            root: None,
            container: match &spec.target {
                AttachTarget::Container { name, .. } => Some(name.clone()),
                _ => None,
            },
            bind_mounts: Vec::new(),
        },
        totals,
    }))
}

/// The scope of a target, checked to exist.
fn resolve(target: &AttachTarget) -> Result<Resolved> {
    if let AttachTarget::Pid(pid) = target {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process {pid}");
        }
        return Ok(Resolved {
            scope: Scope::Pids,
            cgroup: None,
            label: vec!["--pid".to_string(), pid.to_string()],
        });
    }
    let mount = cgroup::find_mount()?.context("no cgroup v2 hierarchy is mounted")?;
    let (path, label) = match target {
        AttachTarget::Cgroup(p) => (
            match p.is_absolute() {
                true => p.clone(),
                false => mount.path.join(p),
            },
            vec!["--cgroup".to_string(), p.display().to_string()],
        ),
        AttachTarget::Container {
            name,
            engine,
            namespace,
        } => {
            let namespace = namespace
                .clone()
                .or_else(|| std::env::var("CONTAINERD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".into());
            (
                container_cgroup(&mount.path, name, *engine, &namespace)?,
                vec!["--container".to_string(), name.clone()],
            )
        }
        AttachTarget::Pid(_) => unreachable!("handled above"),
    };
    let rel = path.strip_prefix(&mount.path).with_context(|| {
        format!(
            "{} is not below the cgroup v2 mount {}",
            path.display(),
            mount.path.display()
        )
    })?;
    let meta = std::fs::metadata(&path).with_context(|| format!("cgroup {}", path.display()))?;
    let level = mount.root_depth + rel.components().count() as u32;
    Ok(Resolved {
        scope: Scope::Cgroup {
            id: meta.ino(),
            level,
        },
        cgroup: Some(path),
        label,
    })
}

/// Reads events until SIGINT, SIGTERM, the duration, or the target's end.
async fn follow(
    capture: &mut Capture,
    collector: &mut Collector,
    cgroup: Option<&Path>,
    duration: Option<Duration>,
) -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // "Forever" as a deadline tokio can represent.
    let duration = tokio::time::sleep(duration.unwrap_or(Duration::from_secs(1 << 30)));
    tokio::pin!(duration);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = capture.readable() => { r?; capture.drain(collector); }
            _ = &mut duration => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = tick.tick() => {
                // The target is gone: nothing more to see.
                let gone = match cgroup {
                    Some(p) => !p.exists(),
                    None => capture.scope_pids().is_empty(),
                };
                if gone {
                    return Ok(());
                }
            }
        }
    }
}

/// The cgroup v2 path (below the mount) of a process, from /proc.
fn cgroup_of(pid: u32) -> Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("process {pid}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(String::from)
        .with_context(|| format!("process {pid} has no cgroup v2 membership"))
}

/// Who knows a container to attach to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ContainerEngine {
    Runc,
    Docker,
    Podman,
    Containerd,
}

/// Finds a container's cgroup by asking its engine for the container's
/// main process (`runc state`, `docker inspect`, `podman inspect`, `ctr
/// task ls`) and reading that process's cgroup. Without `--engine`, every
/// installed engine is asked; exactly one must know the container.
fn container_cgroup(
    mount: &Path,
    name: &str,
    engine: Option<ContainerEngine>,
    namespace: &str,
) -> Result<PathBuf> {
    let all = [
        Manager::Runc,
        Manager::Engine(Engine::Docker),
        Manager::Engine(Engine::Podman),
        Manager::Containerd {
            namespace: namespace.to_string(),
        },
    ];
    let asked: Vec<Manager> = match engine {
        None => all.into_iter().filter(Manager::installed).collect(),
        Some(ContainerEngine::Runc) => vec![all[0].clone()],
        Some(ContainerEngine::Docker) => vec![all[1].clone()],
        Some(ContainerEngine::Podman) => vec![all[2].clone()],
        Some(ContainerEngine::Containerd) => vec![all[3].clone()],
    };
    let mut found = Vec::new();
    let mut notes = Vec::new();
    for m in &asked {
        match engine::container::main_pid(m, name) {
            Ok(pid) => found.push((m.clone(), pid)),
            // Asked for by name: its answer is the answer.
            Err(e) if engine.is_some() => return Err(e.into()),
            Err(EngineError::NoContainer { .. }) => notes.push(m.to_string()),
            Err(EngineError::Down { .. }) => notes.push(format!("{m} (not reachable)")),
            Err(e @ EngineError::NotRunning { .. }) => return Err(e.into()),
            Err(e) => notes.push(format!("{m} ({:#})", anyhow::Error::from(e))),
        }
    }
    match found.as_slice() {
        [(_, pid)] => {
            let rel = cgroup_of(*pid)?;
            Ok(mount.join(rel.trim_start_matches('/')))
        }
        [] if asked.is_empty() => {
            bail!("no container {name:?}: none of runc, docker, podman, ctr is installed")
        }
        [] => bail!("no container {name:?} (asked {})", notes.join(", ")),
        many => bail!(
            "container {name:?} is known to several engines ({}); choose one with --engine",
            many.iter()
                .map(|(m, _)| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Every process in a cgroup and the cgroups below it, now.
fn cgroup_pids(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A pid and every process descending from it, now.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.filter_map(|e| e.ok()) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(stat) = crate::runtime::proc_stat::read(pid) {
                parent_of.push((pid, stat.ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}
