//! Running a command inside an image with a real OCI runtime (runc): the
//! image's filesystem under an overlay, so the run's writes never touch
//! the source, and an OCI runtime bundle whose `config.json` is built
//! with the oci-spec types. Everything made here is removed on drop.
//!
//! - [`process`]: the command, environment, working directory and user.
//! - [`overlay`]: the root filesystem, an overlay over the image.
//! - [`spec`]: the runtime spec, `config.json`.
mod overlay;
pub mod process;
mod spec;

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::Command,
};

use self::overlay::Overlay;
pub use self::process::{UserError, check_command};
use super::{leftovers, options::ContainerSpec, unpack};
use crate::source::{self, ImageRef, transport::TransportError};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no OCI runtime: neither runc nor crun is on PATH (or pass --runtime)")]
    NoRuntime,
    #[error(
        "crun does not work with this machine's hybrid cgroups (cgroup v2 is not mounted at /sys/fs/cgroup); use runc (--runtime runc)"
    )]
    CrunHybrid,
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("--mount {spec}")]
    MountSource {
        spec: String,
        #[source]
        source: io::Error,
    },
    #[error("the image's Env entry {0:?} is not K=V with a non-empty name K")]
    ImageEnv(String),
    #[error("--workdir {0:?}: not an absolute path")]
    BadWorkdir(String),
    #[error("the image's WorkingDir {0:?} is not an absolute path")]
    ImageWorkdir(String),
    #[error("{0}: {1}")]
    BadUser(String, UserError),
    #[error("the command to run in the container is empty")]
    EmptyCommand,
    #[error("the runtime spec")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("seccomp profile {0}")]
    Seccomp(PathBuf, #[source] serde_json::Error),
    #[error("{0:?} cannot be used in an overlay mount option")]
    OverlayPath(PathBuf),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// What to run, and how.
pub struct Request<'a> {
    pub image: &'a ImageRef,
    /// The runtime, mounts, environment, workdir, user, network and
    /// seccomp profile (the engine fields are not runc's).
    pub options: &'a ContainerSpec,
    pub argv: &'a [String],
    /// Cgroup path for the container, relative to the cgroup root (the
    /// trace's scope, so the container's processes are in it).
    pub cgroup_path: String,
}

/// A ready bundle. `command()` starts it; dropping it cleans up.
pub struct Prepared {
    dir: BundleDir,
    /// The cached tree under the overlay, leased until after the unmount.
    _cached: Option<crate::cache::Lower>,
    merged: PathBuf,
    mounted: bool,
    id: String,
    runtime: PathBuf,
    /// Destinations of `--mount`: host paths, never part of the image.
    pub bind_targets: Vec<String>,
    /// The runtime invocation that runs the container in the foreground.
    pub command_argv: Vec<String>,
}

fn find_runtime(explicit: Option<&Path>) -> Result<PathBuf, ContainerError> {
    let found = match explicit {
        Some(p) if p.components().count() > 1 => Some(p.to_path_buf()),
        Some(name) => which(name.as_os_str()),
        None => which("runc".as_ref()).or_else(|| which("crun".as_ref())),
    }
    .ok_or(ContainerError::NoRuntime)?;
    if found.file_name().is_some_and(|n| n == "crun")
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return Err(ContainerError::CrunHybrid);
    }
    Ok(found)
}

fn which(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A bundle directory of this run, removed with all it holds on drop
/// (after the overlay on it is unmounted).
struct BundleDir(PathBuf);

impl BundleDir {
    fn create() -> Result<BundleDir, ContainerError> {
        let path = std::env::temp_dir().join(leftovers::unique_name("trace-bundle-"));
        fs::create_dir(&path).map_err(io_err(format!("creating {}", path.display())))?;
        leftovers::record_path(&path);
        Ok(BundleDir(path))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for BundleDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Opens the image, checks the configuration, lays out the overlay and
/// writes the bundle.
pub fn prepare(req: &Request) -> Result<Prepared, ContainerError> {
    let runtime = find_runtime(req.options.runtime.as_deref())?;
    process::check_command(req.argv)?;
    let (image, cached) = crate::cache::open_for_run(req.image)?;
    // Everything the runtime would refuse is checked before the image is
    // unpacked and long before the runtime starts.
    let config = image.config.as_ref().and_then(|c| c.config().clone());
    let process = process::resolve(req, image.rootfs.as_ref(), config.as_ref())?;
    let binds = spec::binds(req)?;
    let seccomp = spec::seccomp(req)?;

    let dir = BundleDir::create()?;
    let lower = cached.as_ref().map(|c| c.path());
    let overlay = Overlay::create(dir.path(), req.image, &image, lower)?;
    // The bundle's name carries the owner token too: `trace-<token>-<n>`.
    let id = dir
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("trace-bundle-"))
        .map(|rest| format!("trace-{rest}"))
        .ok_or_else(|| ContainerError::OverlayPath(dir.path().to_path_buf()))?;
    leftovers::record_runtime(&runtime);
    let mut prepared = Prepared {
        id,
        dir,
        _cached: cached,
        merged: overlay.merged.clone(),
        mounted: false,
        runtime,
        bind_targets: Vec::new(),
        command_argv: Vec::new(),
    };
    overlay.mount()?;
    prepared.mounted = true;
    let (mounts, targets): (Vec<_>, Vec<_>) = binds.into_iter().unzip();
    prepared.bind_targets = targets;
    spec::build(req, process, &overlay.merged, seccomp, mounts)?
        .save(prepared.dir.path().join("config.json"))?;
    prepared.command_argv = vec![
        prepared.runtime.display().to_string(),
        "--root".into(),
        leftovers::runtime_root().display().to_string(),
        "run".into(),
        "--bundle".into(),
        prepared.dir.path().display().to_string(),
        prepared.id.clone(),
    ];
    Ok(prepared)
}

impl Prepared {
    /// The container's id with the runtime.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = Command::new(&self.runtime)
            .arg("--root")
            .arg(leftovers::runtime_root())
            .args(["delete", "--force", &self.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if self.mounted {
            overlay::unmount(&self.merged);
        }
    }
}
