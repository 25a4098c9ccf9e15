//! The option groups several sessions share, as plain values: how events
//! reach userspace, and how a command runs in a container.
use std::path::PathBuf;

pub use crate::runtime::options::ContainerSpec;

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

/// The scope a run is followed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ScopeMode {
    /// A cgroup v2 made for the run when cgroup v2 is mounted, else pids.
    #[default]
    Auto,
    /// A cgroup v2 made for the run (follows everything, even re-parented
    /// daemons).
    Cgroup,
    /// Follow forks from the command's pid (no cgroup v2 needed).
    Pids,
}
