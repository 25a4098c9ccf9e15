//! Image references as skopeo and podman write them: `docker-daemon:NAME`,
//! `containers-storage:NAME`, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`,
//! `docker-archive:FILE[:NAME]`, or a plain path whose form is detected.
//! Images in an engine are streamed out of it (`docker save`, `podman
//! save`) into an unlinked temporary file: no copy for the user to manage.
use std::{
    fmt,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    str::FromStr,
};

use super::{
    decompress::Compression,
    error::SourceError,
    image::{self, Form, Image, Unmerged},
};
use crate::engine::{self, Engine, EngineError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// A path: root filesystem or OCI layout directory, OCI or docker
    /// archive (detected).
    Path(PathBuf),
    Oci {
        dir: PathBuf,
        tag: Option<String>,
    },
    OciArchive {
        file: PathBuf,
        tag: Option<String>,
    },
    DockerArchive {
        file: PathBuf,
        name: Option<String>,
    },
    /// An image in an engine's own store.
    Engine {
        engine: Engine,
        name: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("image reference {0:?}: {1}")]
    Bad(String, String),
    #[error("{0}")]
    Engine(String, #[source] EngineError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
}

/// skopeo transports this tool cannot use (no registry, no other stores).
const UNSUPPORTED: &[&str] = &["docker", "dir", "ostree", "sif", "tarball"];

fn split_tag(rest: &str) -> (PathBuf, Option<String>) {
    // As skopeo does: the path ends at the first ':'.
    match rest.split_once(':') {
        Some((p, t)) if !t.is_empty() => (PathBuf::from(p), Some(t.to_string())),
        Some((p, _)) => (PathBuf::from(p), None),
        None => (PathBuf::from(rest), None),
    }
}

/// An engine image name: non-empty, no spaces, not an option.
fn engine_name(s: &str, whole: &str) -> Result<String, TransportError> {
    if s.is_empty() {
        return Err(TransportError::Bad(
            whole.into(),
            "an image name is needed after the transport".into(),
        ));
    }
    if s.starts_with('-') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TransportError::Bad(
            whole.into(),
            format!("{s:?} is not an image name"),
        ));
    }
    if s.starts_with('[') {
        return Err(TransportError::Bad(
            whole.into(),
            "store specifiers are not supported; point CONTAINERS_STORAGE_CONF at the store".into(),
        ));
    }
    Ok(s.to_string())
}

impl FromStr for ImageRef {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<ImageRef, TransportError> {
        if s.is_empty() {
            return Err(TransportError::Bad(s.into(), "empty".into()));
        }
        let bad_path = |p: &Path| {
            if p.as_os_str().is_empty() {
                Err(TransportError::Bad(
                    s.into(),
                    "a path is needed after the transport".into(),
                ))
            } else {
                Ok(())
            }
        };
        if let Some(rest) = s.strip_prefix("docker-daemon:") {
            return Ok(ImageRef::Engine {
                engine: Engine::Docker,
                name: engine_name(rest, s)?,
            });
        }
        if let Some(rest) = s.strip_prefix("containers-storage:") {
            return Ok(ImageRef::Engine {
                engine: Engine::Podman,
                name: engine_name(rest, s)?,
            });
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = split_tag(rest);
            bad_path(&dir)?;
            return Ok(ImageRef::Oci { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = split_tag(rest);
            bad_path(&file)?;
            return Ok(ImageRef::OciArchive { file, tag });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (file, name) = split_tag(rest);
            bad_path(&file)?;
            return Ok(ImageRef::DockerArchive { file, name });
        }
        if let Some((prefix, _)) = s.split_once(':')
            && UNSUPPORTED.contains(&prefix)
        {
            return Err(TransportError::Bad(
                s.into(),
                format!(
                    "the {prefix}: transport is not supported (use docker-daemon:, containers-storage:, oci:, oci-archive:, docker-archive: or a path)"
                ),
            ));
        }
        Ok(ImageRef::Path(PathBuf::from(s)))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tagged = |f: &mut fmt::Formatter<'_>, t: &str, p: &Path, tag: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            match tag {
                Some(tag) => write!(f, ":{tag}"),
                None => Ok(()),
            }
        };
        match self {
            ImageRef::Path(p) => write!(f, "{}", p.display()),
            ImageRef::Oci { dir, tag } => tagged(f, "oci", dir, tag),
            ImageRef::OciArchive { file, tag } => tagged(f, "oci-archive", file, tag),
            ImageRef::DockerArchive { file, name } => tagged(f, "docker-archive", file, name),
            ImageRef::Engine { engine, name } => write!(f, "{}:{name}", engine.transport()),
        }
    }
}

/// For clap: `value_parser = parse` (the error is kept as the source, so
/// `main` can report it as trace's own failure).
pub fn parse(s: &str) -> Result<ImageRef, TransportError> {
    s.parse()
}

impl ImageRef {
    /// The engine whose store holds the image, if any.
    pub fn engine(&self) -> Option<Engine> {
        match self {
            ImageRef::Engine { engine, .. } => Some(*engine),
            _ => None,
        }
    }

    /// The file or directory the reference names, if it is not in an
    /// engine.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ImageRef::Path(p) => Some(p),
            ImageRef::Oci { dir, .. } => Some(dir),
            ImageRef::OciArchive { file, .. } | ImageRef::DockerArchive { file, .. } => Some(file),
            ImageRef::Engine { .. } => None,
        }
    }

    /// A plain root filesystem directory (no image config).
    pub fn is_rootfs_dir(&self) -> bool {
        matches!(self, ImageRef::Path(p) if p.is_dir() && !p.join("oci-layout").is_file())
    }

    /// Opens the image for reading.
    pub fn open(&self) -> Result<Image, TransportError> {
        Ok(self.open_unmerged()?.merge()?)
    }

    /// Opens the image as far as its config and layer list (see
    /// [`Unmerged`]).
    pub fn open_unmerged(&self) -> Result<Unmerged, TransportError> {
        Ok(match self {
            ImageRef::Path(p) => image::open_as_unmerged(p, Form::Any, None)?,
            ImageRef::Oci { dir, tag } => {
                image::open_as_unmerged(dir, Form::OciLayout, tag.as_deref())?
            }
            ImageRef::OciArchive { file, tag } => {
                image::open_as_unmerged(file, Form::OciArchive, tag.as_deref())?
            }
            ImageRef::DockerArchive { file, name } => {
                image::open_as_unmerged(file, Form::DockerArchive, name.as_deref())?
            }
            ImageRef::Engine { engine, name } => {
                let label = self.to_string();
                let file = engine::image::save(*engine, name)
                    .map_err(|e| TransportError::Engine(label.clone(), e))?;
                let origin = Path::new(&label);
                image::open_file_unmerged(file, origin, &label, Form::DockerArchive, None)?
            }
        })
    }

    /// The same image as a skopeo reference (to copy it into an engine).
    pub fn skopeo(&self) -> Result<String, TransportError> {
        let ImageRef::Path(p) = self else {
            return Ok(self.to_string());
        };
        let kind = detect(p).map_err(|e| TransportError::Io(p.display().to_string(), e))?;
        match kind {
            Some(t) => Ok(format!("{t}:{}", p.display())),
            None => Err(TransportError::Bad(
                p.display().to_string(),
                "a root filesystem directory is not an image an engine can load; run it with --engine runc".into(),
            )),
        }
    }
}

/// The transport of a plain path: `oci`, `oci-archive`, `docker-archive`,
/// or None for a root filesystem directory.
fn detect(p: &Path) -> std::io::Result<Option<&'static str>> {
    if p.is_dir() {
        return Ok(p.join("oci-layout").is_file().then_some("oci"));
    }
    let mut head = Vec::with_capacity(512);
    File::open(p)?.take(512).read_to_end(&mut head)?;
    let how = Compression::detect(&head);
    let mut ar = tar::Archive::new(how.reader(File::open(p)?));
    for entry in ar.entries()? {
        let entry = entry?;
        let name = entry.path_bytes();
        let name = name.strip_prefix(b"./").unwrap_or(&name);
        if name == b"oci-layout" {
            return Ok(Some("oci-archive"));
        }
        if name == b"manifest.json" {
            return Ok(Some("docker-archive"));
        }
    }
    Ok(Some("docker-archive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn references_parse_and_print_back() {
        for s in [
            "docker-daemon:app:full",
            "docker-daemon:localhost:5000/app:1",
            "containers-storage:localhost/app:min",
            "oci:/srv/app",
            "oci:/srv/app:v1",
            "oci-archive:app.tar:latest",
            "docker-archive:app.tar",
            "docker-archive:app.tar:app:full",
            "/srv/rootfs",
            "relative/dir",
        ] {
            assert_eq!(r(s).to_string(), s);
        }
        assert_eq!(
            r("docker-daemon:localhost:5000/app:1"),
            ImageRef::Engine {
                engine: Engine::Docker,
                name: "localhost:5000/app:1".into()
            }
        );
        assert_eq!(
            r("oci:/srv/app:v1"),
            ImageRef::Oci {
                dir: "/srv/app".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            r("docker-archive:a.tar:app:full"),
            ImageRef::DockerArchive {
                file: "a.tar".into(),
                name: Some("app:full".into())
            }
        );
        assert_eq!(r("containers-storage:x").engine(), Some(Engine::Podman));
        assert_eq!(r("oci:x").engine(), None);
    }

    #[test]
    fn bad_references_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("docker-daemon:", "an image name is needed"),
            ("docker-daemon:-rm", "not an image name"),
            ("docker-daemon:a b", "not an image name"),
            ("containers-storage:[overlay@/x]app", "store specifiers"),
            ("oci:", "a path is needed"),
            ("docker://busybox", "transport is not supported"),
            ("dir:/x", "transport is not supported"),
        ] {
            let e = s.parse::<ImageRef>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn a_path_of_the_wrong_form_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = r(&format!("oci:{}", d.path().display()))
            .open()
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("without oci-layout"), "{e}");
        let f = d.path().join("x");
        std::fs::write(&f, b"x").unwrap();
        let e = r(&format!("oci-archive:{}", f.display()))
            .open()
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a tar"), "{e}");
        assert!(r(&d.path().display().to_string()).is_rootfs_dir());
        assert!(r(&d.path().display().to_string()).skopeo().is_err());
    }
}
