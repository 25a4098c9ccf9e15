//! Containers in an engine: from a name or id to the container's main
//! process (and so its cgroup), asked of the engine itself; and the
//! containers of `trace` runs that were killed before they could remove
//! them.
use std::process::Stdio;

use super::{Engine, EngineError, owner, query};

/// Who knows about containers, for `attach --container`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manager {
    Runc,
    Engine(Engine),
    /// containerd through `ctr`, in this namespace.
    Containerd {
        namespace: String,
    },
}

impl std::fmt::Display for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Manager::Runc => f.write_str("runc"),
            Manager::Engine(e) => write!(f, "{e}"),
            Manager::Containerd { namespace } => write!(f, "containerd (namespace {namespace})"),
        }
    }
}

impl Manager {
    fn program(&self) -> &'static str {
        match self {
            Manager::Runc => "runc",
            Manager::Engine(e) => e.program(),
            Manager::Containerd { .. } => "ctr",
        }
    }

    /// Its client is installed (and for containerd, its socket exists:
    /// a missing one would cost a connection timeout).
    pub fn installed(&self) -> bool {
        if let Manager::Containerd { .. } = self {
            let address = std::env::var_os("CONTAINERD_ADDRESS")
                .unwrap_or_else(|| "/run/containerd/containerd.sock".into());
            if !std::path::Path::new(&address).exists() {
                return false;
            }
        }
        super::which(self.program()).is_some()
    }
}

/// The pid of the container's first process, as its manager reports it.
pub fn main_pid(manager: &Manager, name: &str) -> Result<u32, EngineError> {
    let label = manager.to_string();
    let none = || EngineError::NoContainer {
        engine: label.clone(),
        name: name.to_string(),
    };
    let not_running = || EngineError::NotRunning {
        engine: label.clone(),
        name: name.to_string(),
    };
    let pid = match manager {
        Manager::Runc => {
            // runc's default root first (containers the user started),
            // then the one `trace run --image` keeps its own in.
            let own = crate::runtime::leftovers::runtime_root();
            let out = match query(&label, "runc", ["state", name], none) {
                Err(EngineError::NoContainer { .. }) => query(
                    &label,
                    "runc",
                    [
                        std::ffi::OsStr::new("--root"),
                        own.as_os_str(),
                        "state".as_ref(),
                        name.as_ref(),
                    ],
                    none,
                )?,
                other => other?,
            };
            let state: serde_json::Value =
                serde_json::from_str(&out).map_err(|e| EngineError::Failed {
                    command: format!("runc state {name}"),
                    detail: e.to_string(),
                })?;
            state["pid"].as_u64().unwrap_or(0)
        }
        Manager::Engine(e) => {
            let out = query(
                &label,
                e.program(),
                ["container", "inspect", "--format", "{{.State.Pid}}", name],
                none,
            )?;
            out.trim().parse().unwrap_or(0)
        }
        Manager::Containerd { namespace } => {
            let out = query(
                &label,
                "ctr",
                [
                    "--connect-timeout",
                    "3s",
                    "--namespace",
                    namespace,
                    "task",
                    "ls",
                ],
                none,
            )?;
            // TASK PID STATUS, one task a line after the header.
            out.lines()
                .skip(1)
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f.first() == Some(&name))
                .ok_or_else(none)?
                .get(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        }
    };
    match u32::try_from(pid) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(not_running()),
    }
}

/// Removes the containers of `trace` processes that are gone (killed with
/// SIGKILL, which leaves no chance to clean up).
pub fn remove_stale(engine: Engine) {
    let format = format!("{{{{.ID}}}} {{{{.Label \"{}\"}}}}", owner::LABEL);
    let Ok(out) = query(
        &engine.to_string(),
        engine.program(),
        [
            "container",
            "ls",
            "--all",
            "--filter",
            &format!("label={}", owner::LABEL),
            "--format",
            &format,
        ],
        || EngineError::Down {
            engine: engine.to_string(),
            detail: String::new(),
        },
    ) else {
        return;
    };
    for line in out.lines() {
        let mut f = line.split_whitespace();
        if let (Some(id), Some(token)) = (f.next(), f.next())
            && !owner::alive(token)
        {
            remove(engine, id);
        }
    }
}

/// Removes a container, running or not.
pub fn remove(engine: Engine, name: &str) {
    if let Ok(mut c) = super::client(engine.program()) {
        let _ = c
            .args(["container", "rm", "--force", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
