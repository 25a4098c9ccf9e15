//! The option groups several sessions share, as plain values: how events
//! reach userspace, and how a command runs in a container.
use std::path::PathBuf;

use crate::runtime::{
    engine::{EngineArg, Network},
    options::{BindMount, EnvVar},
};

/// The default kernel-to-userspace ring buffer: 8 MiB.
pub const DEFAULT_RINGBUF: u32 = 8 * 1024 * 1024;

/// How events reach userspace (run, attach, verify, minimize).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    /// Ring buffer size in bytes: a power of two, at least 4096.
    pub ringbuf_bytes: u32,
    /// Kernel BTF to read struct offsets from.
    pub btf: PathBuf,
}

impl Default for CaptureSpec {
    fn default() -> Self {
        CaptureSpec {
            ringbuf_bytes: DEFAULT_RINGBUF,
            btf: PathBuf::from(crate::capture::offsets::VMLINUX_BTF),
        }
    }
}

/// A ring buffer size the kernel takes.
pub fn check_ringbuf_bytes(n: u32) -> Result<u32, String> {
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two >= 4096"));
    }
    Ok(n)
}

/// How to run the command in a container (run, verify, minimize).
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    /// Who runs the container; None: the engine the image is kept in,
    /// else runc.
    pub engine: Option<EngineArg>,
    /// Further flags for `docker run` / `podman run`.
    pub engine_args: Vec<String>,
    /// The OCI runtime for runc (default: runc, else crun, from PATH).
    pub runtime: Option<PathBuf>,
    /// Bind mounts, `SRC:DST[:ro]`.
    pub mounts: Vec<BindMount>,
    /// Environment over the image's, `K=V`.
    pub envs: Vec<EnvVar>,
    /// Working directory over the image's.
    pub workdir: Option<String>,
    /// User over the image's, `uid[:gid]` or `name[:group]`.
    pub user: Option<String>,
    pub network: Network,
    /// A seccomp profile (from `trace seccomp`) to apply.
    pub seccomp: Option<PathBuf>,
}

/// The scope a run is followed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScopeMode {
    /// A cgroup v2 made for the run when cgroup v2 is mounted, else pids.
    #[default]
    Auto,
    /// A cgroup v2 made for the run (follows re-parented daemons too).
    Cgroup,
    /// Follow forks from the command's pid.
    Pids,
}
