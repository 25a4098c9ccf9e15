//! Images in an engine: looking one up, streaming it out (`docker save`,
//! `podman save`) into an unlinked temporary file that only this process
//! can see, loading an archive in (`docker load`, `podman load`), and the
//! temporary copies a run under an engine needs.
use std::{
    fs::File,
    io::{Seek, SeekFrom},
    path::Path,
    process::Stdio,
};

use super::{Engine, EngineError, owner, query};
use crate::{
    progress,
    source::{ImageRef, transport::TransportError},
};

/// What an engine says about one of its images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// `sha256:<hex>` of the image config: the image ID both engines show.
    pub id: String,
    /// The engine's idea of the image's size (for progress only).
    pub size: u64,
}

fn missing(engine: Engine, name: &str) -> impl FnOnce() -> EngineError {
    let name = name.to_string();
    move || EngineError::NoImage { engine, name }
}

/// Looks `name` up in the engine.
pub fn inspect(engine: Engine, name: &str) -> Result<Info, EngineError> {
    let out = query(
        &engine.to_string(),
        engine.program(),
        ["image", "inspect", "--format", "{{.Id}} {{.Size}}", name],
        missing(engine, name),
    )?;
    let mut fields = out.split_whitespace();
    let id = fields.next().unwrap_or_default();
    let size = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    if id.is_empty() {
        return Err(missing(engine, name)());
    }
    // Podman prints the bare hex.
    let id = if id.starts_with("sha256:") {
        id.to_string()
    } else {
        format!("sha256:{id}")
    };
    Ok(Info { id, size })
}

/// Streams the image out of the engine as a docker archive into an
/// unlinked temporary file, and returns that file (rewound).
pub fn save(engine: Engine, name: &str) -> Result<File, EngineError> {
    let info = inspect(engine, name)?;
    let mut c = super::client(engine.program())?;
    match engine {
        Engine::Docker => c.args(["save", name]),
        Engine::Podman => c.args(["save", "--quiet", "--format", "docker-archive", name]),
    };
    let command = format!("{} save {name}", engine.program());
    let io = |what: &str| {
        let what = format!("{command}: {what}");
        move |source| EngineError::Io { what, source }
    };
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("starting"))?;
    let mut file = tempfile::tempfile().map_err(io("making a temporary file"))?;
    let bar = progress::bytes(
        format!("reading {}:{name}", engine.transport()),
        Some(info.size).filter(|s| *s > 0),
    );
    let copied = match child.stdout.take() {
        Some(mut out) => progress::copy(&mut out, &mut file, &bar),
        None => Ok(0),
    };
    bar.finish_and_clear();
    let out = child.wait_with_output().map_err(io("waiting"))?;
    if !out.status.success() {
        return Err(EngineError::Failed {
            command,
            detail: super::first_line(&out.stderr),
        });
    }
    copied.map_err(io("copying its output"))?;
    file.seek(SeekFrom::Start(0)).map_err(io("rewinding"))?;
    Ok(file)
}

/// Loads a docker or OCI archive into the engine (the names in it are
/// what the engine tags).
pub fn load(engine: Engine, archive: &Path) -> Result<(), EngineError> {
    let command = format!("{} load", engine.program());
    let io = |what: &str| {
        let what = format!("{command}: {what}");
        move |source| EngineError::Io { what, source }
    };
    let mut input = File::open(archive).map_err(io("opening the archive"))?;
    let total = input.metadata().map(|m| m.len()).ok();
    let mut c = super::client(engine.program())?;
    c.arg("load");
    if engine == Engine::Podman {
        c.arg("--quiet");
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("starting"))?;
    let bar = progress::bytes(format!("loading into {engine}"), total);
    let copied = match child.stdin.take() {
        // Dropping stdin at the end tells the client the archive is whole.
        Some(mut stdin) => progress::copy(&mut input, &mut stdin, &bar),
        None => Ok(0),
    };
    bar.finish_and_clear();
    let out = child.wait_with_output().map_err(io("waiting"))?;
    if !out.status.success() {
        let detail = super::first_line(&out.stderr);
        if super::says_down(&detail) {
            return Err(EngineError::Down {
                engine: engine.to_string(),
                detail,
            });
        }
        return Err(EngineError::Failed { command, detail });
    }
    copied.map_err(io("sending the archive"))?;
    Ok(())
}

/// Untags (and, when nothing else holds it, removes) an image.
pub fn remove(engine: Engine, name: &str) {
    if let Ok(mut c) = super::client(engine.program()) {
        let _ = c
            .args(["image", "rm", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// An image copied into an engine for one run, under a name of our own
/// (`localhost/trace-tmp:<owner>-<n>`); removed on drop, or by a later run
/// when this process was killed.
pub struct TempImage {
    pub engine: Engine,
    pub name: String,
}

impl TempImage {
    /// Copies an image into the engine under a temporary name: skopeo
    /// writes it as a docker archive carrying that name (so no name the
    /// user has is touched), which the engine then loads. skopeo reads
    /// every file transport; an image in the other engine is saved out of
    /// it first (skopeo would not see DOCKER_HOST).
    pub fn copy_in(engine: Engine, source: &ImageRef) -> Result<TempImage, TransportError> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{}:{}-{n}", owner::TEMP_REPO, owner::token());
        let label = source.to_string();
        let io = |what: &'static str| {
            let label = label.clone();
            move |e: std::io::Error| TransportError::Io(format!("{label}: {what}"), e)
        };
        let dir = tempfile::Builder::new()
            .prefix("trace-copy-")
            .tempdir()
            .map_err(io("a temporary directory"))?;
        crate::runtime::leftovers::record_path(dir.path());
        let from = match source {
            ImageRef::Engine {
                engine: other,
                name,
            } => {
                let mut saved =
                    save(*other, name).map_err(|e| TransportError::Engine(label.clone(), e))?;
                let path = dir.path().join("saved.tar");
                let mut file = File::create(&path).map_err(io("a temporary file"))?;
                std::io::copy(&mut saved, &mut file).map_err(io("a temporary file"))?;
                format!("docker-archive:{}", path.display())
            }
            other => other.skopeo()?,
        };
        let archive = dir.path().join("image.tar");
        let dest = format!("docker-archive:{}:{name}", archive.display());
        let bar = progress::bytes(format!("converting {label}"), None);
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let copied = query(
            "skopeo",
            "skopeo",
            ["--insecure-policy", "copy", "--quiet", &from, &dest],
            || EngineError::Failed {
                command: format!("skopeo copy {from}"),
                detail: "image not found".into(),
            },
        );
        bar.finish_and_clear();
        copied.map_err(|e| TransportError::Engine(label.clone(), e))?;
        load(engine, &archive).map_err(|e| TransportError::Engine(label.clone(), e))?;
        Ok(TempImage { engine, name })
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        remove(self.engine, &self.name);
    }
}

/// Temporary images of `trace` processes that are gone.
pub fn remove_stale(engine: Engine) {
    let Ok(out) = query(
        &engine.to_string(),
        engine.program(),
        ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        || EngineError::Down {
            engine: engine.to_string(),
            detail: String::new(),
        },
    ) else {
        return;
    };
    for name in out.lines().map(str::trim) {
        let tag = name
            .strip_prefix(owner::TEMP_REPO)
            .or_else(|| name.strip_prefix("trace-tmp"))
            .and_then(|t| t.strip_prefix(':'));
        if let Some(tag) = tag
            && let Some((token, _)) = tag.rsplit_once('-')
            && !owner::alive(token)
        {
            remove(engine, name);
        }
    }
}
