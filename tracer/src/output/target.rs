//! Where the minimal image goes: a path (in `--format`), `oci:DIR[:TAG]`,
//! `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:NAME]`, or into an
//! engine: `docker-daemon:NAME[:TAG]` (`docker load`) and
//! `containers-storage:NAME[:TAG]` (`podman load`). An engine is given a
//! docker archive written to a private temporary directory, which is gone
//! afterwards whatever happens; the digest reported is the image ID the
//! engine then shows.
use std::path::{Path, PathBuf};

use super::{Format, OutputError, Spec, Written};
use crate::{
    engine::{self, Engine, EngineError},
    source::ImageRef,
};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{0}")]
    Engine(String, #[source] EngineError),
    #[error("-o {target}: {why}")]
    Conflict { target: String, why: String },
    #[error("a temporary directory for the image")]
    Temp(#[source] std::io::Error),
}

/// Where and how to write, decided before any work is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    File {
        path: PathBuf,
        format: Format,
        tag: Option<String>,
    },
    Engine {
        engine: Engine,
        name: String,
    },
}

/// What was written, and where an engine took it.
pub struct Delivered {
    pub written: Written,
    /// (engine, name, image ID) when loaded into an engine.
    pub loaded: Option<(Engine, String, String)>,
}

/// A reference's name and the `--tag` must agree when both are given.
fn one_tag(
    target: &ImageRef,
    from_ref: Option<&String>,
    tag: Option<&str>,
) -> Result<Option<String>, TargetError> {
    match (from_ref, tag) {
        (Some(a), Some(b)) if a != b => Err(TargetError::Conflict {
            target: target.to_string(),
            why: format!("names the image {a:?}, --tag says {b:?}"),
        }),
        (Some(a), _) => Ok(Some(a.clone())),
        (None, b) => Ok(b.map(String::from)),
    }
}

/// Decides where `target` goes. `format` is `--format` when given; it must
/// agree with a transport prefix.
pub fn plan(
    target: &ImageRef,
    format: Option<Format>,
    tag: Option<&str>,
) -> Result<Plan, TargetError> {
    let fixed = |want: Format| match format {
        Some(f) if f != want => Err(TargetError::Conflict {
            target: target.to_string(),
            why: format!("the transport writes {want:?}, --format says {f:?}"),
        }),
        _ => Ok(want),
    };
    Ok(match target {
        ImageRef::Path(p) => Plan::File {
            path: p.clone(),
            format: format.unwrap_or(Format::Oci),
            tag: tag.map(String::from),
        },
        ImageRef::Oci { dir, tag: t } => Plan::File {
            path: dir.clone(),
            format: fixed(Format::Oci)?,
            tag: one_tag(target, t.as_ref(), tag)?,
        },
        ImageRef::OciArchive { file, tag: t } => Plan::File {
            path: file.clone(),
            format: fixed(Format::OciArchive)?,
            tag: one_tag(target, t.as_ref(), tag)?,
        },
        ImageRef::DockerArchive { file, name } => Plan::File {
            path: file.clone(),
            format: fixed(Format::DockerArchive)?,
            tag: one_tag(target, name.as_ref(), tag)?,
        },
        ImageRef::Engine { engine, name } => {
            if format.is_some() {
                return Err(TargetError::Conflict {
                    target: target.to_string(),
                    why: "an engine takes the image as it likes; --format does not apply".into(),
                });
            }
            one_tag(target, Some(name), tag)?;
            Plan::Engine {
                engine: *engine,
                name: name.clone(),
            }
        }
    })
}

impl Plan {
    /// Fails early (before a build) when the output cannot be taken: a
    /// path that exists, an engine that does not answer.
    pub fn check(&self) -> Result<(), TargetError> {
        match self {
            Plan::File { path, .. } => {
                if path.exists() || path.is_symlink() {
                    return Err(OutputError::Exists(path.clone()).into());
                }
                Ok(())
            }
            Plan::Engine { engine, name } => engine::ping(*engine)
                .map_err(|e| TargetError::Engine(format!("{}:{name}", engine.transport()), e)),
        }
    }

    /// Writes (and loads) the image; `spec`'s format and tag are set from
    /// the plan.
    pub fn deliver(&self, spec: Spec) -> Result<Delivered, TargetError> {
        match self {
            Plan::File { path, format, tag } => {
                let written = super::write(
                    path,
                    &Spec {
                        format: *format,
                        tag: tag.clone(),
                        ..spec
                    },
                )?;
                Ok(Delivered {
                    written,
                    loaded: None,
                })
            }
            Plan::Engine { engine, name } => {
                let label = format!("{}:{name}", engine.transport());
                let dir = tempfile::Builder::new()
                    .prefix("trace-load-")
                    .tempdir()
                    .map_err(TargetError::Temp)?;
                crate::runtime::leftovers::record_path(dir.path());
                let archive = dir.path().join("image.tar");
                let written = super::write(
                    &archive,
                    &Spec {
                        format: Format::DockerArchive,
                        tag: Some(name.clone()),
                        ..spec
                    },
                )?;
                load(*engine, &archive).map_err(|e| TargetError::Engine(label.clone(), e))?;
                let info = engine::image::inspect(*engine, name)
                    .map_err(|e| TargetError::Engine(label.clone(), e))?;
                Ok(Delivered {
                    written,
                    loaded: Some((*engine, name.clone(), info.id)),
                })
            }
        }
    }

    /// The path artifacts (trace, report) are named after: the output path,
    /// or for an engine a file in the working directory named after the
    /// image (`app:min` -> `app_min`).
    pub fn artifact_base(&self) -> PathBuf {
        match self {
            Plan::File { path, .. } => path.clone(),
            Plan::Engine { name, .. } => PathBuf::from(
                name.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect::<String>(),
            ),
        }
    }
}

fn load(engine: Engine, archive: &Path) -> Result<(), EngineError> {
    engine::image::load(engine, archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn plans_follow_the_transport() {
        assert_eq!(
            plan(&r("out"), None, Some("app:1")).unwrap(),
            Plan::File {
                path: "out".into(),
                format: Format::Oci,
                tag: Some("app:1".into())
            }
        );
        assert_eq!(
            plan(&r("docker-archive:a.tar:app:1"), None, None).unwrap(),
            Plan::File {
                path: "a.tar".into(),
                format: Format::DockerArchive,
                tag: Some("app:1".into())
            }
        );
        assert!(plan(&r("oci:x"), Some(Format::DockerArchive), None).is_err());
        assert!(plan(&r("oci:x:a"), None, Some("b")).is_err());
        assert!(plan(&r("docker-daemon:app:min"), Some(Format::Oci), None).is_err());
        let p = plan(&r("docker-daemon:app:min"), None, None).unwrap();
        assert_eq!(p.artifact_base(), PathBuf::from("app_min"));
    }
}
