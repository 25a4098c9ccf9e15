//! `trace run`: run a command inside a fresh scope and write its trace.
use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

use super::args::{CaptureArgs, ContainerArgs};
use crate::{
    capture::{
        Arm, Capture, Scope,
        cgroup::{self, RunCgroup},
        collect::{Collector, Files, RunInfo},
    },
    model::{
        text,
        trace::{ExitInfo, ScopeInfo, Trace},
        write,
    },
    runtime::{
        child::{self, Join},
        engine, status,
    },
    source::{self, ImageRef},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// A cgroup v2 made for the run when cgroup v2 is mounted, else pids.
    Auto,
    /// A cgroup v2 made for the run (follows everything, even re-parented
    /// daemons).
    Cgroup,
    /// Follow forks from the command's pid (no cgroup v2 needed).
    Pids,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Write the trace here (atomically). Without it, a summary goes to stderr.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// json (default with -o) or text (default without -o).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[arg(long, value_enum, default_value = "auto")]
    pub scope: ScopeArg,
    /// After the command exits, keep tracing its leftover descendants for up
    /// to this many seconds, then kill them.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub wait_descendants: f64,
    /// Run CMD inside this image (a path: OCI layout dir or tar, docker
    /// archive, root filesystem directory; or docker-daemon:NAME,
    /// containers-storage:NAME, oci:DIR[:TAG], oci-archive:FILE[:TAG],
    /// docker-archive:FILE) in a container; only what runs in the container
    /// is traced.
    #[arg(long, value_name = "IMG", conflicts_with = "root", value_parser = source::transport::parse)]
    pub image: Option<ImageRef>,
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Run CMD chrooted into this directory (an unpacked image's root
    /// filesystem); paths in the trace are then as seen inside it.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Run the command this many times and write the union of the traces
    /// (files seen in only some runs are listed).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Test hook: do not read the ring buffer until the command has exited
/// (or, when the value is a path, until that file exists), so tests can
/// fill it, check that losses are reported, and repeat what was lost.
const STALL_READER_ENV: &str = "TRACE_DEBUG_STALL_READER";

/// What the scope is made of, kept alive for the whole run.
enum ScopeHandle {
    Cgroup(RunCgroup),
    Pids,
}

pub async fn run(args: RunArgs) -> Result<i32> {
    let format = args.format.unwrap_or(if args.output.is_some() {
        Format::Json
    } else {
        Format::Text
    });
    let trace = if args.runs <= 1 {
        // One run: its files go straight from the collector to the output.
        let (trace, files) = execute_streamed(&args).await?;
        crate::timing::mark("capture torn down");
        report_streamed(trace, files, args.output.as_deref(), format)?
    } else {
        let (trace, _) = super::runs::execute(&args, args.runs as usize).await?;
        crate::timing::mark("capture torn down");
        report(&trace, args.output.as_deref(), format)?;
        trace
    };
    crate::timing::mark("trace written");
    eprint!("{}", super::runs::describe(&trace));
    Ok(trace.exit.code)
}

/// Runs the command under the trace and returns what it used; the
/// command's own status is in `trace.exit`.
pub async fn execute(args: &RunArgs) -> Result<Trace> {
    let (mut trace, files) = execute_streamed(args).await?;
    files.collect_into(&mut trace);
    Ok(trace)
}

/// [`execute`] with the files left in the collector, to be read in path
/// order.
pub async fn execute_streamed(args: &RunArgs) -> Result<(Trace, Files)> {
    if !args.wait_descendants.is_finite() || args.wait_descendants < 0.0 {
        bail!("--wait-descendants must be a number of seconds >= 0");
    }
    crate::capture::preflight(&args.capture.btf)?;
    if let Some(root) = &args.root
        && !root.is_dir()
    {
        bail!("--root {}: not a directory", root.display());
    }

    let engine = args
        .image
        .as_ref()
        .and_then(|i| engine::resolve(args.container.engine, i));
    if let Some(e) = engine {
        // Before our cgroup is made: a killed run's container holds its
        // cgroup until it is removed.
        engine::remove_stale(e);
    }
    let mount = match args.scope {
        ScopeArg::Pids => None,
        ScopeArg::Auto => cgroup::find_mount()?,
        ScopeArg::Cgroup => Some(
            cgroup::find_mount()?.context("--scope cgroup: no cgroup v2 hierarchy is mounted")?,
        ),
    };
    let handle = match mount {
        Some(m) => ScopeHandle::Cgroup(RunCgroup::create(&m)?),
        None => ScopeHandle::Pids,
    };
    crate::timing::mark("scope made");
    let scope = match &handle {
        ScopeHandle::Cgroup(cg) => Scope::Cgroup {
            id: cg.id,
            level: cg.level,
        },
        ScopeHandle::Pids => Scope::Pids,
    };
    let container = match (&args.image, &handle) {
        (None, _) => None,
        (Some(_), ScopeHandle::Pids) => {
            bail!("--image needs a cgroup v2 scope (no cgroup v2 is mounted, or --scope pids)")
        }
        (Some(image), ScopeHandle::Cgroup(cg)) => Some(engine::prepare(&engine::Request {
            image,
            engine,
            runtime: args.container.runtime.as_deref(),
            mounts: &args.container.mounts,
            env: &args.container.envs,
            workdir: args.container.workdir.as_deref(),
            user: args.container.user.as_deref(),
            network: args.container.network,
            seccomp: args.container.seccomp.as_deref(),
            engine_args: &args.container.engine_args,
            argv: &args.command,
            cgroup: &cg.name(),
        })?),
    };
    let mut capture = Capture::start(&crate::capture::Options {
        scope,
        ringbuf_bytes: args.capture.ringbuf_size,
        btf: &args.capture.btf,
        arm: if container.is_some() {
            Arm::OnForeignExec
        } else {
            Arm::OnExec
        },
    })?;
    let join = match &handle {
        ScopeHandle::Cgroup(cg) => Join::Cgroup(cg.path.clone()),
        ScopeHandle::Pids => Join::PidMap(capture.scope_pids_fd()?),
    };

    let mut collector = Collector::new();
    // Handlers first: a signal sent as soon as the command runs must be
    // passed on, not kill trace with its default action.
    let signals = Signals::new()?;
    let exit = match child::spawn(
        container
            .as_ref()
            .map_or(args.command.as_slice(), |c| c.command_argv()),
        join,
        args.root.as_deref(),
    ) {
        Ok(child) => supervise(child, signals, &mut capture, &mut collector).await?,
        Err(e) => {
            // As a shell reports it: 127 not found, 126 found but not
            // runnable.
            let (code, why) = match (e.kind(), e.raw_os_error()) {
                (std::io::ErrorKind::NotFound, _) => (status::NOT_FOUND, "command not found"),
                (std::io::ErrorKind::PermissionDenied, _) => {
                    (status::NOT_EXECUTABLE, "permission denied")
                }
                (_, Some(libc::ENOEXEC)) => {
                    (status::NOT_EXECUTABLE, "cannot execute: exec format error")
                }
                _ => bail!("cannot start {}: {e}", args.command[0]),
            };
            eprintln!("trace: {}: {why}", args.command[0]);
            ExitInfo { code, signal: None }
        }
    };

    let leftovers_killed =
        drain_descendants(&handle, &mut capture, &mut collector, args.wait_descendants).await;
    crate::timing::mark("command and descendants done");
    let totals = capture.finish(&mut collector)?;
    crate::timing::mark("last records read");
    let (mut trace, mut files) = collector.finish_streamed(RunInfo {
        command: args.command.clone(),
        exit: exit.clone(),
        scope: ScopeInfo {
            mode: match &handle {
                ScopeHandle::Cgroup(_) => "cgroup".into(),
                ScopeHandle::Pids => "pids".into(),
            },
            cgroup: match &handle {
                ScopeHandle::Cgroup(cg) => Some(cg.path.display().to_string()),
                ScopeHandle::Pids => None,
            },
            leftovers_killed,
            image: args.image.as_ref().map(|p| p.to_string()),
            root: args.root.as_ref().map(|p| p.display().to_string()),
            container: container.as_ref().map(|c| c.id().to_string()),
            bind_mounts: container
                .as_ref()
                .map(|c| c.bind_targets().to_vec())
                .unwrap_or_default(),
        },
        totals,
    });
    if let Some(c) = &container {
        c.finish(&mut trace);
        files = files.without(c.foreign_file());
    }
    drop(capture);
    // The runtime's state and the overlay go before the cgroup does.
    drop(container);
    drop(handle);
    Ok((trace, files))
}

/// The signals `trace run` passes on to the command.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Waits for the child while draining events and passing signals on.
async fn supervise(
    mut child: child::Child,
    signals: Signals,
    capture: &mut Capture,
    collector: &mut Collector,
) -> Result<ExitInfo> {
    let pid = child.id();
    let Signals {
        mut term,
        mut hup,
        mut quit,
        mut int,
    } = signals;
    // Ctrl-C in a terminal already reaches the child (same process group).
    let forward_int = !std::io::stdin().is_terminal();
    let stall = std::env::var_os(STALL_READER_ENV);
    let until = stall
        .as_ref()
        .filter(|v| v.as_encoded_bytes().first() == Some(&b'/'))
        .map(std::path::PathBuf::from);
    let mut read = stall.is_none();
    loop {
        if !read && until.as_ref().is_some_and(|p| p.exists()) {
            read = true;
        }
        tokio::select! {
            r = capture.readable(), if read => {
                r?;
                capture.drain(collector);
            }
            _ = tokio::time::sleep(Duration::from_millis(20)), if !read => {}
            st = child.wait() => {
                return Ok(status::from_status(st.context("waiting for the command")?));
            }
            _ = term.recv() => child::signal(pid, libc::SIGTERM),
            _ = hup.recv() => child::signal(pid, libc::SIGHUP),
            _ = quit.recv() => child::signal(pid, libc::SIGQUIT),
            _ = int.recv() => if forward_int { child::signal(pid, libc::SIGINT) },
        }
    }
}

/// Keeps tracing while descendants (daemons) are still alive, up to
/// `wait` seconds; then kills what is left. Returns how many were killed.
async fn drain_descendants(
    handle: &ScopeHandle,
    capture: &mut Capture,
    collector: &mut Collector,
    wait: f64,
) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait);
    let alive = |capture: &Capture| match handle {
        ScopeHandle::Cgroup(cg) => cg.populated(),
        ScopeHandle::Pids => !capture.scope_pids().is_empty(),
    };
    while alive(capture) && tokio::time::Instant::now() < deadline {
        tokio::select! {
            r = capture.readable() => {
                if r.is_ok() {
                    capture.drain(collector);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
    if !alive(capture) {
        return 0;
    }
    let killed = match handle {
        ScopeHandle::Cgroup(cg) => cg.kill_all(),
        ScopeHandle::Pids => {
            // Only processes that are still the ones traced: a pid reused
            // by an unrelated process since is left alone.
            let pids = capture.scope_pids();
            pids.iter()
                .filter(|(pid, start)| child::signal_if_same(*pid, *start, libc::SIGKILL))
                .count() as u32
        }
    };
    eprintln!(
        "trace: warning: {killed} process(es) still running {wait}s after the command exited were killed (see --wait-descendants)"
    );
    killed
}

/// [`report`] for a trace whose files are still in the collector: JSON to
/// a file is written as the files are read, never held whole. Returns the
/// trace without its files.
pub fn report_streamed(
    mut trace: Trace,
    files: Files,
    output: Option<&std::path::Path>,
    format: Format,
) -> Result<Trace> {
    match (output, format) {
        (Some(path), Format::Json) => {
            write::write_atomic_with(path, |w| write::write_json_streamed(w, &trace, files))?;
            warn_incomplete(&trace);
        }
        _ => {
            files.collect_into(&mut trace);
            report(&trace, output, format)?;
        }
    }
    Ok(trace)
}

fn warn_incomplete(trace: &Trace) {
    if !trace.complete {
        eprintln!(
            "trace: warning: the trace is incomplete: {}",
            trace.incomplete_reasons.join("; ")
        );
    }
}

pub fn report(trace: &Trace, output: Option<&std::path::Path>, format: Format) -> Result<()> {
    let rendered = match format {
        Format::Json => write::to_json(trace),
        Format::Text => text::render(trace).into_bytes(),
    };
    match output {
        Some(path) => write::write_atomic(path, &rendered)?,
        None => {
            use std::io::Write;
            std::io::stderr().write_all(&rendered)?;
        }
    }
    warn_incomplete(trace);
    Ok(())
}
