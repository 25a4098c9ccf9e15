//! Container engines (Docker, Podman; containerd for `attach`), driven
//! through their own command-line clients, so the user's configuration
//! (DOCKER_HOST and contexts, CONTAINERS_CONF, storage.conf,
//! CONTAINERD_ADDRESS) applies exactly as it does for them.
//!
//! - [`image`]: reading an image out of an engine, loading one into it.
//! - [`container`]: finding a running container's cgroup; removing what an
//!   earlier, killed `trace` left in an engine.
pub mod container;
pub mod image;
pub mod owner;

use std::{
    ffi::OsStr,
    fmt,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

/// An engine that keeps images and runs containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    Docker,
    Podman,
}

impl Engine {
    /// Its command-line client.
    pub fn program(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }

    /// The image transport that names its store (skopeo's names).
    pub fn transport(self) -> &'static str {
        match self {
            Engine::Docker => "docker-daemon",
            Engine::Podman => "containers-storage",
        }
    }

    /// Where the engine bind-mounts its init (`--init`) into a container:
    /// the engine's, not the image's, and never recorded.
    pub fn init_path(self) -> &'static str {
        match self {
            Engine::Docker => "/sbin/docker-init",
            Engine::Podman => "/run/podman-init",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Docker => "Docker",
            Engine::Podman => "Podman",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{program} is not installed (not on PATH)")]
    NotInstalled { program: String },
    #[error("the {engine} engine is not reachable: {detail}")]
    Down { engine: String, detail: String },
    #[error("no image {name:?} in the {engine} engine")]
    NoImage { engine: Engine, name: String },
    #[error("no container {name:?} in {engine}")]
    NoContainer { engine: String, name: String },
    #[error("container {name:?} in {engine} is not running")]
    NotRunning { engine: String, name: String },
    #[error("`{command}` failed: {detail}")]
    Failed { command: String, detail: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Finds `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The client of `program`, or NotInstalled.
pub fn client(program: &str) -> Result<Command, EngineError> {
    let bin = which(program).ok_or_else(|| EngineError::NotInstalled {
        program: program.to_string(),
    })?;
    let mut c = Command::new(bin);
    c.stdin(Stdio::null());
    Ok(c)
}

/// The first meaningful line of a client's stderr, without its `Error:`
/// decorations: what the user would read.
pub fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no message)");
    let line = line
        .trim_start_matches("Error: ")
        .trim_start_matches("Error response from daemon: ")
        .trim_start_matches("ctr: ");
    line.to_string()
}

/// Messages by which a client says it could not reach its engine.
pub(crate) fn says_down(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("cannot connect to the docker daemon")
        || m.contains("error during connect")
        || m.contains("is the docker daemon running")
        || m.contains("connection refused")
        || m.contains("no such file or directory") && m.contains(".sock")
        || m.contains("failed to dial")
        || m.contains("unable to connect to podman")
}

fn says_missing(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("no such image")
        || m.contains("image not known")
        || m.contains("no such object")
        || m.contains("no such container")
        || m.contains("no container with name or id")
        || m.contains("not found")
        || m.contains("does not exist")
}

/// What went wrong with a client call that failed, as a typed error.
fn classify(
    engine: &str,
    command: &str,
    out: &Output,
    missing: impl FnOnce() -> EngineError,
) -> EngineError {
    let msg = first_line(&out.stderr);
    if says_down(&msg) {
        EngineError::Down {
            engine: engine.to_string(),
            detail: msg,
        }
    } else if says_missing(&msg) {
        missing()
    } else {
        EngineError::Failed {
            command: command.to_string(),
            detail: msg,
        }
    }
}

/// Runs a client command to completion and returns its stdout; a failure
/// is classified (engine down, object missing, anything else).
pub fn query<I, S>(
    engine: &str,
    program: &str,
    args: I,
    missing: impl FnOnce() -> EngineError,
) -> Result<String, EngineError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = client(program)?;
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    c.args(&args);
    let command = format!(
        "{program} {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = c.output().map_err(|source| EngineError::Io {
        what: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(classify(engine, &command, &out, missing));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks that the engine answers (before a long build whose result it
/// must take).
pub fn ping(engine: Engine) -> Result<(), EngineError> {
    let args: &[&str] = match engine {
        Engine::Docker => &["version", "--format", "{{.Server.Version}}"],
        // Podman has no daemon: opening its store is what can fail.
        Engine::Podman => &["info", "--format", "{{.Store.GraphRoot}}"],
    };
    query(&engine.to_string(), engine.program(), args, || {
        EngineError::Down {
            engine: engine.to_string(),
            detail: "no answer".into(),
        }
    })
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_are_one_line_and_classified() {
        assert_eq!(
            first_line(b"\nError response from daemon: No such image: app:x\nmore\n"),
            "No such image: app:x"
        );
        assert!(says_down(
            "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?"
        ));
        assert!(says_missing("No such image: app:x"));
        assert!(says_missing(
            "failed to find image nope: nope: image not known"
        ));
        assert!(!says_down("No such image: app:x"));
    }
}
