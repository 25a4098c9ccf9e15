//! `trace attach`: trace a process tree, cgroup or container that is
//! already running, until Ctrl-C, SIGTERM, the duration, or its end.
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

use super::run::{self, Format};
use crate::{
    capture::{
        Arm, Capture, Options, Scope, cgroup,
        collect::{Collector, RunInfo},
    },
    engine::{self, Engine, EngineError, container::Manager},
    model::trace::{ExitInfo, ScopeInfo},
    runtime::child,
};

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "target")]
pub struct Target {
    /// A process and all its descendants (present and future).
    #[arg(long, value_name = "PID", group = "target")]
    pub pid: Option<u32>,
    /// A cgroup v2 directory (absolute, or relative to the cgroup v2 mount).
    #[arg(long, value_name = "PATH", group = "target")]
    pub cgroup: Option<PathBuf>,
    /// A running container, by name or id, as runc, Docker, Podman or
    /// containerd (`ctr`) know it.
    #[arg(long, value_name = "NAME|ID", group = "target")]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub target: Target,
    /// Write the trace here (atomically). Without it, a summary goes to stderr.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// json (default with -o) or text (default without -o).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// With --container: the engine to ask (default: every one installed).
    #[arg(long, value_enum, requires = "container")]
    pub engine: Option<AttachEngine>,
    /// With --container: the containerd namespace (default:
    /// $CONTAINERD_NAMESPACE, else `default`).
    #[arg(long, value_name = "NS", requires = "container")]
    pub namespace: Option<String>,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub capture: super::args::CaptureArgs,
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

/// `attach --engine`: who knows the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttachEngine {
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
    engine: Option<AttachEngine>,
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
        Some(AttachEngine::Runc) => vec![all[0].clone()],
        Some(AttachEngine::Docker) => vec![all[1].clone()],
        Some(AttachEngine::Podman) => vec![all[2].clone()],
        Some(AttachEngine::Containerd) => vec![all[3].clone()],
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
            Err(e) => notes.push(format!("{m} ({e})")),
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
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The comm field may hold spaces and parens: ppid follows the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
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

pub async fn attach(args: AttachArgs) -> Result<i32> {
    let btf = &args.capture.btf;
    crate::capture::preflight(btf)?;
    if let Some(d) = args.duration
        && (!d.is_finite() || d <= 0.0)
    {
        bail!("--duration must be a number of seconds > 0");
    }
    let t = &args.target;
    let (scope, cgroup_path, label) = if let Some(pid) = t.pid {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process {pid}");
        }
        (
            Scope::Pids,
            None,
            vec!["--pid".to_string(), pid.to_string()],
        )
    } else {
        let mount = cgroup::find_mount()?.context("no cgroup v2 hierarchy is mounted")?;
        let (path, label) = match (&t.cgroup, &t.container) {
            (Some(p), _) => {
                let p = if p.is_absolute() {
                    p.clone()
                } else {
                    mount.path.join(p)
                };
                (
                    p,
                    vec![
                        "--cgroup".to_string(),
                        t.cgroup
                            .as_ref()
                            .map(|c| c.display().to_string())
                            .unwrap_or_default(),
                    ],
                )
            }
            (None, Some(id)) => (
                container_cgroup(
                    &mount.path,
                    id,
                    args.engine,
                    &args
                        .namespace
                        .clone()
                        .or_else(|| std::env::var("CONTAINERD_NAMESPACE").ok())
                        .unwrap_or_else(|| "default".into()),
                )?,
                vec!["--container".to_string(), id.clone()],
            ),
            (None, None) => bail!("give --pid, --cgroup or --container"),
        };
        let rel = path.strip_prefix(&mount.path).with_context(|| {
            format!(
                "{} is not below the cgroup v2 mount {}",
                path.display(),
                mount.path.display()
            )
        })?;
        let meta =
            std::fs::metadata(&path).with_context(|| format!("cgroup {}", path.display()))?;
        let level = mount.root_depth + rel.components().count() as u32;
        (
            Scope::Cgroup {
                id: meta.ino(),
                level,
            },
            Some(path),
            label,
        )
    };

    let mut capture = Capture::start(&Options {
        scope,
        ringbuf_bytes: args.capture.ringbuf_size,
        btf,
        arm: Arm::Always {
            root_pid: t.pid.unwrap_or(0),
        },
    })?;
    // Tracing is on: what the targets hold from now on is seen; what they
    // held before is read from /proc.
    let present = match (t.pid, &cgroup_path) {
        (Some(pid), _) => {
            let pids = descendants(pid);
            let with_start: Vec<(u32, u64)> = pids
                .iter()
                .filter_map(|&p| Some((p, child::start_time_ns(p)?)))
                .collect();
            capture.add_pids(&with_start)?;
            pids
        }
        (None, Some(dir)) => cgroup_pids(dir),
        (None, None) => Vec::new(),
    };
    let mut collector = Collector::new();
    collector.add_preexisting(&crate::capture::preexisting::scan(&present));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let duration = tokio::time::sleep(Duration::from_secs_f64(
        args.duration.unwrap_or(f64::MAX / 4.0).min(1e9),
    ));
    tokio::pin!(duration);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = capture.readable() => { r?; capture.drain(&mut collector); }
            _ = &mut duration => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {
                // The target is gone: nothing more to see.
                let gone = match &cgroup_path {
                    Some(p) => !p.exists(),
                    None => capture.scope_pids().is_empty(),
                };
                if gone {
                    break;
                }
            }
        }
    }
    let totals = capture.finish(&mut collector)?;
    drop(capture);
    let mut command = vec!["attach".to_string()];
    command.extend(label);
    let (trace, files) = collector.finish_streamed(RunInfo {
        command,
        exit: ExitInfo {
            code: 0,
            signal: None,
        },
        scope: ScopeInfo {
            mode: if cgroup_path.is_some() {
                "cgroup".into()
            } else {
                "pids".into()
            },
            cgroup: cgroup_path.map(|p| p.display().to_string()),
            leftovers_killed: 0,
            image: None,
            root: None,
            container: t.container.clone(),
            bind_mounts: Vec::new(),
        },
        totals,
    });
    let format = args.format.unwrap_or(if args.output.is_some() {
        Format::Json
    } else {
        Format::Text
    });
    run::report_streamed(trace, files, args.output.as_deref(), format)?;
    Ok(0)
}
