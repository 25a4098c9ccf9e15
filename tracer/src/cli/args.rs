//! Argument groups shared by several subcommands, so each option means
//! the same thing (and has the same default) wherever it appears.
use std::path::PathBuf;

use clap::Args;

use crate::runtime::engine::{EngineArg, Network};

/// How events reach userspace; for every subcommand that captures (run,
/// attach, verify, minimize).
#[derive(Clone, Debug, Args)]
pub struct CaptureArgs {
    /// Size of the kernel-to-userspace ring buffer in bytes (a power of two,
    /// at least 4096). Raise it if a run reports lost events.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_RINGBUF, value_parser = parse_ringbuf_size)]
    pub ringbuf_size: u32,
    /// Kernel BTF to read struct offsets from, for kernels built without
    /// /sys/kernel/btf/vmlinux (e.g. a file from BTFHub).
    #[arg(long, value_name = "FILE", default_value = crate::capture::offsets::VMLINUX_BTF)]
    pub btf: PathBuf,
}

impl Default for CaptureArgs {
    fn default() -> Self {
        CaptureArgs {
            ringbuf_size: DEFAULT_RINGBUF,
            btf: PathBuf::from(crate::capture::offsets::VMLINUX_BTF),
        }
    }
}

pub const DEFAULT_RINGBUF: u32 = 8 * 1024 * 1024;

fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two >= 4096"));
    }
    Ok(n)
}

/// How to run the command in a container; shared by run, verify and
/// minimize (each has an `--image`).
#[derive(Clone, Debug, Default, Args)]
pub struct ContainerArgs {
    /// Who runs the container (default: the engine the image is kept in,
    /// else runc).
    #[arg(long, value_enum, requires = "image")]
    pub engine: Option<EngineArg>,
    /// A further flag for `docker run` / `podman run` (repeatable), e.g.
    /// `--engine-arg=--cap-add=NET_ADMIN`.
    #[arg(
        long = "engine-arg",
        value_name = "FLAG",
        allow_hyphen_values = true,
        requires = "image"
    )]
    pub engine_args: Vec<String>,
    /// The OCI runtime for --engine runc (default: runc, else crun, from PATH).
    #[arg(long, value_name = "PATH", requires = "image")]
    pub runtime: Option<PathBuf>,
    /// Bind a host directory into the container (`:ro` for read-only).
    #[arg(long = "mount", value_name = "SRC:DST[:ro]", requires = "image")]
    pub mounts: Vec<String>,
    /// Set an environment variable in the container (over the image's).
    #[arg(long = "env", value_name = "K=V", requires = "image")]
    pub envs: Vec<String>,
    /// Working directory in the container (over the image's).
    #[arg(long, value_name = "DIR", requires = "image")]
    pub workdir: Option<String>,
    /// User in the container, `uid[:gid]` or `name[:group]` (over the image's).
    #[arg(long, value_name = "USER", requires = "image")]
    pub user: Option<String>,
    /// The container's network.
    #[arg(long, value_enum, default_value = "host", requires = "image")]
    pub network: Network,
    /// Apply this seccomp profile (from `trace seccomp`) in the container.
    #[arg(long, value_name = "profile.json", requires = "image")]
    pub seccomp: Option<PathBuf>,
}
