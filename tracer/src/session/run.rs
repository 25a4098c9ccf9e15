//! A run: a command started inside a fresh scope (a cgroup made for it,
//! or the pids it forks), traced until it and its descendants end.
use std::{ffi::OsString, io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use super::spec::{CaptureSpec, ContainerSpec, ScopeMode};
use crate::{
    capture::{
        Arm, Capture, Scope,
        cgroup::{self, RunCgroup},
        collect::{Collector, Files, RunInfo},
    },
    model::trace::{ExitInfo, ScopeInfo, Trace},
    runtime::{
        child::{self, Join},
        engine, priority, status,
    },
    source::ImageRef,
};

/// What to run and how to follow it.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The command and its arguments (at least the program); any bytes on
    /// the host, UTF-8 in a container.
    pub command: Vec<OsString>,
    pub scope: ScopeMode,
    /// After the command exits, how long to keep tracing its leftover
    /// descendants before killing them.
    pub wait_descendants: Duration,
    /// Run in a container of this image; only what runs in it is traced.
    pub image: Option<ImageRef>,
    pub container: ContainerSpec,
    /// Run chrooted into this directory.
    pub root: Option<PathBuf>,
    pub capture: CaptureSpec,
}

/// How long leftover descendants are waited for by default.
pub const DEFAULT_WAIT_DESCENDANTS: Duration = Duration::from_secs(10);

impl RunSpec {
    /// `command` on the host, with every default.
    pub fn new(command: Vec<OsString>) -> RunSpec {
        RunSpec {
            command,
            scope: ScopeMode::Auto,
            wait_descendants: DEFAULT_WAIT_DESCENDANTS,
            image: None,
            container: ContainerSpec::default(),
            root: None,
            capture: CaptureSpec::default(),
        }
    }

    /// `command` in a container of `image` (what verify and minimize run).
    pub fn in_image(
        image: &ImageRef,
        container: &ContainerSpec,
        capture: &CaptureSpec,
        command: &[String],
    ) -> RunSpec {
        RunSpec {
            scope: ScopeMode::Cgroup,
            image: Some(image.clone()),
            container: container.clone(),
            capture: capture.clone(),
            ..RunSpec::new(command.iter().map(OsString::from).collect())
        }
    }
}

/// `command` as strings; the first argument that is not UTF-8 is named.
pub fn utf8_command(command: &[std::ffi::OsString]) -> anyhow::Result<Vec<String>> {
    command
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.to_str().map(str::to_string).ok_or_else(|| {
                anyhow::anyhow!(
                    "argument {} of the command ({}) is not UTF-8, and a container's arguments are strings; run it on the host, or pass the name another way",
                    i + 1,
                    a.to_string_lossy()
                )
            })
        })
        .collect()
}

/// The command as the trace records it (as an exec's argv is recorded).
pub fn lossy(command: &[OsString]) -> Vec<String> {
    command
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
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

/// Runs the command under the trace and returns what it used; the
/// command's own status is in `trace.exit`.
pub async fn execute(spec: &RunSpec) -> Result<Trace> {
    let (mut trace, files, teardown) = execute_streamed(spec).await?;
    files.collect_into(&mut trace);
    teardown.wait();
    Ok(trace)
}

/// The end of a run that is left once its records are read: detaching
/// the programs and freeing the maps, removing the container and the
/// cgroup. Done on a thread of its own while the trace is written, and
/// waited for by [`Teardown::wait`] or on drop, so nothing outlives the
/// run.
pub struct Teardown(Option<std::thread::JoinHandle<()>>);

impl Teardown {
    fn start(
        capture: Capture,
        container: Option<Box<dyn engine::Container>>,
        handle: ScopeHandle,
    ) -> Teardown {
        let undo = move || {
            drop(capture);
            // The runtime's state and the overlay go before the cgroup does.
            drop(container);
            drop(handle);
        };
        // If no thread can be made, the closure is dropped here, and with
        // it everything in order, right away.
        Teardown(
            std::thread::Builder::new()
                .name("teardown".into())
                .spawn(undo)
                .ok(),
        )
    }

    pub fn wait(mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(h) = self.0.take() {
            // A panic in a drop was already reported on stderr.
            let _ = h.join();
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.join();
    }
}

/// [`execute`] with the files left in the collector, to be read in path
/// order, and the teardown still running.
pub async fn execute_streamed(spec: &RunSpec) -> Result<(Trace, Files, Teardown)> {
    let Some(program) = spec.command.first() else {
        bail!("no command to run");
    };
    // Named in messages as the terminal may show it.
    let program = crate::model::escape::text(&program.to_string_lossy());
    // Before anything is made: a container's arguments are strings.
    let utf8_argv = match &spec.image {
        Some(_) => utf8_command(&spec.command)?,
        None => Vec::new(),
    };
    crate::capture::preflight(&spec.capture.btf)?;
    if let Some(root) = &spec.root
        && !root.is_dir()
    {
        bail!("--root {}: not a directory", root.display());
    }

    let engine = spec
        .image
        .as_ref()
        .and_then(|i| engine::resolve(spec.container.engine, i));
    if let Some(e) = engine {
        // Before our cgroup is made: a killed run's container holds its
        // cgroup until it is removed.
        engine::remove_stale(e);
    }
    let mount = match spec.scope {
        ScopeMode::Pids => None,
        ScopeMode::Auto => cgroup::find_mount()?,
        ScopeMode::Cgroup => Some(
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
    let container = match (&spec.image, &handle) {
        (None, _) => None,
        (Some(_), ScopeHandle::Pids) => {
            bail!("--image needs a cgroup v2 scope (no cgroup v2 is mounted, or --scope pids)")
        }
        (Some(image), ScopeHandle::Cgroup(cg)) => Some(engine::prepare(&engine::Request {
            image,
            engine,
            options: &spec.container,
            argv: &utf8_argv,
            cgroup: &cg.name(),
        })?),
    };
    let mut capture = Capture::start(&crate::capture::Options {
        scope,
        ringbuf_bytes: spec.capture.ringbuf_bytes,
        btf: &spec.capture.btf,
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
    let mut raised = None;
    let argv: Vec<OsString> = match &container {
        Some(c) => c.command_argv().iter().map(OsString::from).collect(),
        None => spec.command.clone(),
    };
    let exit = match child::spawn(&argv, join, spec.root.as_deref()) {
        Ok(child) => {
            // Only now: the command keeps its own priority.
            raised = priority::raise();
            supervise(child, signals, &mut capture, &mut collector).await?
        }
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
                _ => bail!("cannot start {}: {e}", program),
            };
            eprintln!("trace: {}: {why}", program);
            ExitInfo { code, signal: None }
        }
    };

    let leftovers_killed =
        drain_descendants(&handle, &mut capture, &mut collector, spec.wait_descendants).await;
    crate::timing::mark("command and descendants done");
    let totals = capture.finish(&mut collector)?;
    drop(raised);
    crate::timing::mark("last records read");
    let (mut trace, mut files) = collector.finish_streamed(RunInfo {
        command: lossy(&spec.command),
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
            image: spec.image.as_ref().map(|p| p.to_string()),
            root: spec.root.as_ref().map(|p| p.display().to_string()),
            container: container.as_ref().map(|c| c.id().to_string()),
            bind_mounts: container
                .as_ref()
                .map(|c| c.bind_targets().to_vec())
                .unwrap_or_default(),
        },
        totals,
    });
    crate::timing::mark("files sorted");
    if let Some(c) = &container {
        c.finish(&mut trace);
        files = files.without(c.foreign_file());
    }
    Ok((trace, files, Teardown::start(capture, container, handle)))
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
    wait: Duration,
) -> u32 {
    // A wait too long to represent is "until they end".
    let now = tokio::time::Instant::now();
    let deadline = now.checked_add(wait);
    let alive = |capture: &Capture| match handle {
        ScopeHandle::Cgroup(cg) => cg.populated(),
        ScopeHandle::Pids => !capture.scope_pids().is_empty(),
    };
    while alive(capture) && deadline.is_none_or(|d| tokio::time::Instant::now() < d) {
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
        "trace: warning: {killed} process(es) still running {}s after the command exited were killed (see --wait-descendants)",
        wait.as_secs_f64()
    );
    killed
}
