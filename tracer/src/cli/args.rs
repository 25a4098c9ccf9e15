//! Argument groups shared by several subcommands, so each option means
//! the same thing (and has the same default) wherever it appears.
use std::{path::PathBuf, time::Duration};

use clap::Args;

use crate::{
    runtime::{
        engine::{EngineArg, Network},
        options::{BindMount, EnvVar},
    },
    session::{CaptureSpec, ContainerSpec, spec},
};

/// How events reach userspace; for every subcommand that captures (run,
/// attach, verify, minimize).
#[derive(Clone, Debug, Args)]
pub struct CaptureArgs {
    /// Size of the kernel-to-userspace ring buffer in bytes (a power of two,
    /// at least 4096). Raise it if a run reports lost events.
    #[arg(long, value_name = "BYTES", default_value_t = spec::DEFAULT_RINGBUF, value_parser = parse_ringbuf_size)]
    pub ringbuf_size: u32,
    /// Kernel BTF to read struct offsets from, for kernels built without
    /// /sys/kernel/btf/vmlinux (e.g. a file from BTFHub).
    #[arg(long, value_name = "FILE", default_value = crate::capture::offsets::VMLINUX_BTF)]
    pub btf: PathBuf,
}

impl From<&CaptureArgs> for CaptureSpec {
    fn from(a: &CaptureArgs) -> CaptureSpec {
        CaptureSpec {
            ringbuf_bytes: a.ringbuf_size,
            btf: a.btf.clone(),
        }
    }
}

fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count"))?;
    spec::check_ringbuf_bytes(n)
}

/// A number of seconds, fractions allowed: `10`, `0.5`.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds >= 0"))
}

/// `90s`, `30m`, `12h`, `7d`: a number and a unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (like 90s, 30m, 12h or 7d)");
    let unit = match s.as_bytes().last() {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 3600,
        Some(b'd') => 86400,
        _ => return Err(bad()),
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    n.checked_mul(unit).map(Duration::from_secs).ok_or_else(bad)
}

/// [`parse_seconds`], and more than zero.
pub fn parse_positive_seconds(s: &str) -> Result<Duration, String> {
    match parse_seconds(s)? {
        d if d.is_zero() => Err(format!("{s:?} is not a number of seconds > 0")),
        d => Ok(d),
    }
}

/// The command to run, last on the line: everything after `--`, or from
/// the first word that is not an option (its own options untouched).
#[derive(Clone, Debug, Args)]
pub struct CommandArg {
    /// The command and its arguments. Any bytes: an argument need not be
    /// UTF-8 (a file name in Latin-1, say) for a command run on the host.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

impl CommandArg {
    /// The command as strings, for a container: an OCI process's
    /// arguments are JSON strings, so one that is not UTF-8 is refused.
    pub fn utf8(&self) -> anyhow::Result<Vec<String>> {
        crate::session::run::utf8_command(&self.command)
    }
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
    pub mounts: Vec<BindMount>,
    /// Set an environment variable in the container (over the image's).
    #[arg(long = "env", value_name = "K=V", requires = "image")]
    pub envs: Vec<EnvVar>,
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

impl From<&ContainerArgs> for ContainerSpec {
    fn from(a: &ContainerArgs) -> ContainerSpec {
        ContainerSpec {
            engine: a.engine,
            engine_args: a.engine_args.clone(),
            runtime: a.runtime.clone(),
            mounts: a.mounts.clone(),
            envs: a.envs.clone(),
            workdir: a.workdir.clone(),
            user: a.user.clone(),
            network: a.network,
            seccomp: a.seccomp.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, parse_positive_seconds, parse_seconds};

    #[test]
    fn seconds_parse_with_fractions_and_refuse_the_rest() {
        assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        for bad in ["-1", "NaN", "inf", "soon", "", "1e300"] {
            assert!(parse_seconds(bad).is_err(), "{bad:?}");
        }
        assert!(parse_positive_seconds("0").is_err());
        assert_eq!(
            parse_positive_seconds("0.25"),
            Ok(Duration::from_millis(250))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        for bad in ["", "d", "7", "1.5h", "-1d", "7w"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
