//! `trace attach`: trace a process tree, cgroup or container that is
//! already running, until Ctrl-C, SIGTERM, the duration, or its end.
use std::{path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use clap::Args;

use super::output::TraceOutput;
use crate::session::attach::{self, AttachSpec, AttachTarget, ContainerEngine};

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
    #[command(flatten)]
    pub out: TraceOutput,
    /// With --container: the engine to ask (default: every one installed).
    #[arg(long, value_enum, requires = "container")]
    pub engine: Option<ContainerEngine>,
    /// With --container: the containerd namespace (default:
    /// $CONTAINERD_NAMESPACE, else `default`).
    #[arg(long, value_name = "NS", requires = "container")]
    pub namespace: Option<String>,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = super::args::parse_positive_seconds)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub capture: super::args::CaptureArgs,
}

impl AttachArgs {
    pub fn spec(&self) -> Result<AttachSpec> {
        let t = &self.target;
        let target = match (t.pid, &t.cgroup, &t.container) {
            (Some(pid), _, _) => AttachTarget::Pid(pid),
            (None, Some(p), _) => AttachTarget::Cgroup(p.clone()),
            (None, None, Some(name)) => AttachTarget::Container {
                name: name.clone(),
                engine: self.engine,
                namespace: self.namespace.clone(),
            },
            (None, None, None) => bail!("give --pid, --cgroup or --container"),
        };
        Ok(AttachSpec {
            target,
            duration: self.duration,
            capture: (&self.capture).into(),
        })
    }
}

pub async fn run(args: AttachArgs) -> Result<i32> {
    let (trace, files) = attach::attach(&args.spec()?).await?;
    args.out.write_streamed(trace, files)?;
    Ok(0)
}
