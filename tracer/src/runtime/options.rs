//! How a command runs in a container, as one value ([`ContainerSpec`])
//! that the runc and the Docker/Podman paths both read; `--mount` and
//! `--env` parsed once into types, never re-parsed from text.
use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use super::engine::{EngineArg, Network};

/// A malformed `--mount` or `--env`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("--mount {0}: expected SRC:DST[:ro] with absolute paths, DST not /")]
    Mount(String),
    #[error("--env {0}: expected K=V with a non-empty name K")]
    Env(String),
}

/// `SRC:DST[:ro]`: a host directory or file bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute, on the host.
    pub src: String,
    /// Absolute, in the container, not `/`, without `..`.
    pub dst: String,
    pub read_only: bool,
}

impl FromStr for BindMount {
    type Err = OptionError;

    fn from_str(spec: &str) -> Result<BindMount, OptionError> {
        let bad = || OptionError::Mount(spec.to_string());
        let mut parts = spec.split(':');
        let (src, dst) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        let read_only = match parts.next() {
            None => false,
            Some("ro") => true,
            Some(_) => return Err(bad()),
        };
        let dst_path = Path::new(dst);
        if !src.starts_with('/')
            || !dst.starts_with('/')
            || parts.next().is_some()
            || dst_path.parent().is_none()
            || dst_path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(bad());
        }
        Ok(BindMount {
            src: src.to_string(),
            dst: dst.to_string(),
            read_only,
        })
    }
}

impl fmt::Display for BindMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.src, self.dst)?;
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

/// `K=V` with a non-empty K and no NUL byte (runc fails on anything
/// else, and only after starting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar(String);

impl EnvVar {
    /// Whether an entry (from an image's config, say) is well formed.
    pub fn is_valid(kv: &str) -> bool {
        !kv.contains('\0') && kv.split_once('=').is_some_and(|(k, _)| !k.is_empty())
    }

    pub fn key(&self) -> &str {
        self.0.split_once('=').map_or(&self.0, |(k, _)| k)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EnvVar {
    type Err = OptionError;

    fn from_str(kv: &str) -> Result<EnvVar, OptionError> {
        match EnvVar::is_valid(kv) {
            true => Ok(EnvVar(kv.to_string())),
            false => Err(OptionError::Env(kv.to_string())),
        }
    }
}

impl fmt::Display for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_and_refuse() {
        let m: BindMount = "/src:/dst:ro".parse().unwrap();
        assert_eq!(
            (m.src.as_str(), m.dst.as_str(), m.read_only),
            ("/src", "/dst", true)
        );
        assert_eq!(m.to_string(), "/src:/dst:ro");
        assert!(!"/a:/b".parse::<BindMount>().unwrap().read_only);
        for bad in [
            "/a",
            "a:/b",
            "/a:b",
            "/a:/",
            "/a:/b:rw",
            "/a:/b:ro:x",
            "/a:/b/../c",
            "",
        ] {
            assert_eq!(
                bad.parse::<BindMount>(),
                Err(OptionError::Mount(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn env_entries_need_a_name() {
        let e: EnvVar = "K=v=w".parse().unwrap();
        assert_eq!((e.key(), e.as_str()), ("K", "K=v=w"));
        assert_eq!("E=".parse::<EnvVar>().unwrap().key(), "E");
        for bad in ["=x", "NOVALUE", "", "K=\0"] {
            assert!(bad.parse::<EnvVar>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "=x".parse::<EnvVar>().unwrap_err().to_string(),
            "--env =x: expected K=V with a non-empty name K"
        );
    }
}
