//! Running the command in a container started by Docker or Podman (`docker
//! run`, `podman run`), with that engine's storage and options, scoped from
//! its first instruction: the container's cgroup is made below the run's
//! own (`--cgroup-parent`), and, as with runc, a process counts only once
//! it has exec'd in the container's mount namespace, so the engine's
//! client and runtime are not recorded. The engine's init (`--init`) is
//! taken out of the trace.

use super::{container as runc, options::ContainerSpec};
use crate::{
    engine::{self, Engine, EngineError, image::TempImage, owner},
    model::trace::{Exec, FileEntry, Trace},
    source::{ImageRef, transport::TransportError},
};

/// `--engine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum EngineArg {
    Docker,
    Podman,
    /// The OCI runtime directly (runc, or crun, or `--runtime`).
    Runc,
}

/// `--network`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Network {
    /// The host's network (a server and its client in one suite talk over
    /// loopback).
    #[default]
    Host,
    /// A network namespace of its own with only loopback, down or up as
    /// the runtime leaves it.
    None,
}

/// The engine to run under: `--engine`, else the engine the image is
/// kept in; None means runc.
pub fn resolve(arg: Option<EngineArg>, image: &ImageRef) -> Option<Engine> {
    match arg {
        Some(EngineArg::Docker) => Some(Engine::Docker),
        Some(EngineArg::Podman) => Some(Engine::Podman),
        Some(EngineArg::Runc) => None,
        None => image.engine(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Runc(#[from] runc::ContainerError),
    #[error("--mount {spec}")]
    MountSource {
        spec: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} is for --engine runc (with docker or podman, pass the engine's own flag with --engine-arg)"
    )]
    RuncOnly(&'static str),
}

/// A container ready to start; dropping it removes what it made.
pub trait Container: Send {
    /// The command that runs the container in the foreground.
    fn command_argv(&self) -> &[String];
    /// Destinations of `--mount` (and the engine's own mounts): never part
    /// of the image.
    fn bind_targets(&self) -> &[String];
    /// The container's name or id with its runtime or engine.
    fn id(&self) -> &str;
    /// Takes what belongs to the engine rather than the app out of the
    /// trace.
    fn finish(&self, _trace: &mut Trace) {}
    /// A file that belongs to the engine, left out of the trace's files.
    fn foreign_file(&self) -> Option<&str> {
        None
    }
}

impl Container for runc::Prepared {
    fn command_argv(&self) -> &[String] {
        &self.command_argv
    }
    fn bind_targets(&self) -> &[String] {
        &self.bind_targets
    }
    fn id(&self) -> &str {
        runc::Prepared::id(self)
    }
}

/// What to run, and how (the engine-independent part of the options).
pub struct Request<'a> {
    pub image: &'a ImageRef,
    /// Resolved from `options.engine` and the image ([`resolve`]).
    pub engine: Option<Engine>,
    pub options: &'a ContainerSpec,
    pub argv: &'a [String],
    /// The run's own cgroup, below the v2 root (`trace-…`).
    pub cgroup: &'a str,
}

/// Prepares the container under the chosen engine.
pub fn prepare(req: &Request) -> Result<Box<dyn Container>, RunError> {
    match req.engine {
        None => {
            if !req.options.engine_args.is_empty() {
                return Err(RunError::RuncOnly("--engine-arg"));
            }
            Ok(Box::new(runc::prepare(&runc::Request {
                image: req.image,
                options: req.options,
                argv: req.argv,
                cgroup_path: format!("/{}/ctr", req.cgroup),
            })?))
        }
        Some(engine) => Ok(Box::new(prepare_engine(engine, req)?)),
    }
}

/// Removes what killed `trace` runs left in the engine (containers, then
/// temporary images), before a new run makes its cgroup.
pub fn remove_stale(engine: Engine) {
    engine::container::remove_stale(engine);
    engine::image::remove_stale(engine);
}

/// A container under Docker or Podman.
pub struct EngineContainer {
    engine: Engine,
    name: String,
    /// The image copied into the engine for this run, when it was not
    /// there; removed after the container.
    temp: Option<TempImage>,
    bind_targets: Vec<String>,
    command_argv: Vec<String>,
}

fn prepare_engine(engine: Engine, req: &Request) -> Result<EngineContainer, RunError> {
    let o = req.options;
    if o.runtime.is_some() {
        return Err(RunError::RuncOnly("--runtime"));
    }
    super::leftovers::record_engine(engine);
    // What the engine would refuse only once started (its exit status
    // would then look like the command's).
    runc::check_command(req.argv)?;
    if let Some(w) = &o.workdir
        && !w.starts_with('/')
    {
        return Err(runc::ContainerError::BadWorkdir(w.to_string()).into());
    }
    let mut bind_targets = Vec::new();
    let mut flags: Vec<String> = Vec::new();
    for m in &o.mounts {
        let (src, dst, ro) = (&m.src, &m.dst, m.read_only);
        if let Err(source) = std::fs::metadata(src) {
            return Err(RunError::MountSource {
                spec: m.to_string(),
                source,
            });
        }
        let mut spec = format!("type=bind,source={src},target={dst}");
        if ro {
            spec.push_str(",readonly");
        }
        flags.extend(["--mount".into(), spec]);
        bind_targets.push(dst.clone());
    }
    for kv in &o.envs {
        flags.extend(["--env".into(), kv.to_string()]);
    }
    if let Some(w) = &o.workdir {
        flags.extend(["--workdir".into(), w.clone()]);
    }
    if let Some(u) = &o.user {
        flags.extend(["--user".into(), u.clone()]);
    }
    if let Some(p) = &o.seccomp {
        // As with runc: the filter is loaded right before the exec.
        flags.extend([
            "--security-opt".into(),
            format!("seccomp={}", p.display()),
            "--security-opt".into(),
            "no-new-privileges".into(),
        ]);
    }
    bind_targets.push(engine.init_path().to_string());

    // The engine must answer, and hold the image (or be given a copy).
    let (image, temp) = match req.image {
        ImageRef::Engine { engine: e, name } if *e == engine => {
            engine::image::inspect(engine, name)
                .map_err(|err| TransportError::Engine(req.image.to_string(), err))?;
            (name.clone(), None)
        }
        other => {
            engine::ping(engine)?;
            let t = TempImage::copy_in(engine, other)?;
            (t.name.clone(), Some(t))
        }
    };
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "trace-{}-{}",
        owner::token(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let program = engine::which(engine.program())
        .ok_or_else(|| EngineError::NotInstalled {
            program: engine.program().into(),
        })?
        .display()
        .to_string();
    let mut argv: Vec<String> = vec![
        program,
        "run".into(),
        "--rm".into(),
        "--interactive".into(),
        "--name".into(),
        name.clone(),
        "--label".into(),
        format!("{}={}", owner::LABEL, owner::token()),
        "--cgroup-parent".into(),
        format!("/{}", req.cgroup),
        "--network".into(),
        match o.network {
            Network::Host => "host".into(),
            Network::None => "none".into(),
        },
        "--pull".into(),
        "never".into(),
        // The command exactly as given, as with runc: not after the
        // image's entrypoint.
        "--entrypoint".into(),
        req.argv[0].clone(),
    ];
    argv.extend(flags);
    argv.extend(o.engine_args.iter().cloned());
    argv.push(image);
    argv.extend(req.argv[1..].iter().cloned());
    Ok(EngineContainer {
        engine,
        name,
        temp,
        bind_targets,
        command_argv: argv,
    })
}

impl Container for EngineContainer {
    fn command_argv(&self) -> &[String] {
        &self.command_argv
    }
    fn bind_targets(&self) -> &[String] {
        &self.bind_targets
    }
    fn id(&self) -> &str {
        &self.name
    }
    fn finish(&self, trace: &mut Trace) {
        strip_init(trace, self.engine.init_path());
    }
    fn foreign_file(&self) -> Option<&str> {
        Some(self.engine.init_path())
    }
}

impl Drop for EngineContainer {
    fn drop(&mut self) {
        // `--rm` has normally done it; this covers a client that died.
        engine::container::remove(self.engine, &self.name);
        drop(self.temp.take());
    }
}

/// Takes the engine's init (bind-mounted into the container, never the
/// image's) out of the trace: its exec and its file.
pub fn strip_init(trace: &mut Trace, init: &str) {
    strip(&mut trace.execs, &mut trace.files, init);
}

fn strip(execs: &mut Vec<Exec>, files: &mut Vec<FileEntry>, init: &str) {
    execs.retain(|e| e.path != init && e.exe.as_deref() != Some(init));
    files.retain(|f| f.path != init);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_choice() {
        let docker: ImageRef = "docker-daemon:app".parse().unwrap();
        let file: ImageRef = "app.tar".parse().unwrap();
        assert_eq!(resolve(None, &docker), Some(Engine::Docker));
        assert_eq!(resolve(None, &file), None);
        assert_eq!(resolve(Some(EngineArg::Runc), &docker), None);
        assert_eq!(
            resolve(Some(EngineArg::Podman), &file),
            Some(Engine::Podman)
        );
    }

    #[test]
    fn the_engine_init_is_not_part_of_the_trace() {
        let exec = |path: &str| -> Exec {
            serde_json::from_value(serde_json::json!({
                "path": path, "raw": path, "argv": [path], "pid": 1, "comm": "x"
            }))
            .unwrap()
        };
        let file = |path: &str| -> FileEntry {
            serde_json::from_value(serde_json::json!({"path": path, "accesses": []})).unwrap()
        };
        let mut execs = vec![exec("/sbin/docker-init"), exec("/usr/bin/python3")];
        let mut files = vec![file("/sbin/docker-init"), file("/usr/bin/python3")];
        strip(&mut execs, &mut files, Engine::Docker.init_path());
        assert_eq!(execs.len(), 1);
        assert_eq!(execs[0].path, "/usr/bin/python3");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "/usr/bin/python3");
    }
}
