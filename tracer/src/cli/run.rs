//! `trace run`: the arguments of a run.
use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::Args;

use super::{
    args::{CaptureArgs, ContainerArgs},
    output::TraceOutput,
};
use crate::{
    session::{self, RunSpec, ScopeMode, runs},
    source::{self, ImageRef},
};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub out: TraceOutput,
    #[arg(long, value_enum, default_value = "auto")]
    pub scope: ScopeMode,
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

impl RunArgs {
    /// The session these arguments describe.
    pub fn spec(&self) -> RunSpec {
        RunSpec {
            command: self.cmd.command.clone(),
            scope: self.scope,
            wait_descendants: self.wait_descendants,
            image: self.image.clone(),
            container: (&self.container).into(),
            root: self.root.clone(),
            capture: (&self.capture).into(),
        }
    }
}

pub async fn run(args: RunArgs) -> Result<i32> {
    let spec = args.spec();
    let trace = if args.runs <= 1 {
        // One run: its files go straight from the collector to the output.
        let (trace, files, teardown) = session::run::execute_streamed(&spec).await?;
        let trace = args.out.write_streamed(trace, files)?;
        crate::timing::mark("trace written");
        teardown.wait();
        crate::timing::mark("capture torn down");
        trace
    } else {
        let (trace, _) = runs::execute(&spec, args.runs as usize).await?;
        args.out.write(&trace)?;
        crate::timing::mark("trace written");
        trace
    };
    eprint!("{}", runs::describe(&trace));
    Ok(trace.exit.code)
}
