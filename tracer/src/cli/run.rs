//! `trace run`: the arguments of a run, and how its trace is written.
use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::args::{CaptureArgs, ContainerArgs};
use crate::{
    capture::collect::Files,
    model::{text, trace::Trace, write},
    session::{
        self, RunSpec, ScopeMode,
        runs::{self},
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
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = super::args::parse_seconds)]
    pub wait_descendants: Duration,
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
    #[command(flatten)]
    pub cmd: super::args::CommandArg,
}

impl From<ScopeArg> for ScopeMode {
    fn from(s: ScopeArg) -> ScopeMode {
        match s {
            ScopeArg::Auto => ScopeMode::Auto,
            ScopeArg::Cgroup => ScopeMode::Cgroup,
            ScopeArg::Pids => ScopeMode::Pids,
        }
    }
}

impl RunArgs {
    /// The session these arguments describe.
    pub fn spec(&self) -> RunSpec {
        RunSpec {
            command: self.cmd.command.clone(),
            scope: self.scope.into(),
            wait_descendants: self.wait_descendants,
            image: self.image.clone(),
            container: (&self.container).into(),
            root: self.root.clone(),
            capture: (&self.capture).into(),
        }
    }
}

pub async fn run(args: RunArgs) -> Result<i32> {
    let format = args.format.unwrap_or(if args.output.is_some() {
        Format::Json
    } else {
        Format::Text
    });
    let spec = args.spec();
    let trace = if args.runs <= 1 {
        // One run: its files go straight from the collector to the output.
        let (trace, files) = session::run::execute_streamed(&spec).await?;
        crate::timing::mark("capture torn down");
        report_streamed(trace, files, args.output.as_deref(), format)?
    } else {
        let (trace, _) = runs::execute(&spec, args.runs as usize).await?;
        crate::timing::mark("capture torn down");
        report(&trace, args.output.as_deref(), format)?;
        trace
    };
    crate::timing::mark("trace written");
    eprint!("{}", runs::describe(&trace));
    Ok(trace.exit.code)
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
