//! Why an image could not be opened. Every way a hostile or broken image
//! can fail has its own variant, so callers and tests can tell a digest
//! mismatch from a path escape without parsing messages.
use std::{fmt, io, path::PathBuf};

/// What is wrong with an entry name inside a layer or an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// Starts with `/` (other than the bare root entry `/`).
    Absolute,
    /// Has a `..` component.
    DotDot,
    /// Contains a NUL byte.
    Nul,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::Absolute => "absolute name",
            NameProblem::DotDot => "`..` component",
            NameProblem::Nul => "NUL byte",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not an image: {why}")]
    NotAnImage { path: PathBuf, why: String },
    #[error("{what}: malformed JSON")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: {why}")]
    Malformed { what: String, why: String },
    #[error("blob {0} is missing from the image")]
    MissingBlob(String),
    #[error("blob {name}: sha256 mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("blob {name}: size mismatch: its descriptor says {expected} bytes, it has {actual}")]
    SizeMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}: unsupported digest (only sha256 is supported)")]
    UnsupportedDigest(String),
    #[error("{0}: no image manifest found")]
    NoManifest(String),
    #[error(
        "{what}: expected exactly one image manifest (or one for linux/{arch}), found {}: {}",
        found.len(),
        found.join("; ")
    )]
    AmbiguousManifest {
        what: String,
        arch: String,
        found: Vec<String>,
    },
    #[error("{what}: no image tagged {tag:?} (it has: {})", if found.is_empty() { "no tags".to_string() } else { found.join(", ") })]
    NoSuchTag {
        what: String,
        tag: String,
        found: Vec<String>,
    },
    #[error("{layer}: corrupt {what} data")]
    Corrupt {
        layer: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{layer}: malformed tar")]
    BadTar {
        layer: String,
        #[source]
        source: io::Error,
    },
    #[error("{layer}: truncated tar: {name} needs bytes up to {needed}, the stream has {have}")]
    TruncatedTar {
        layer: String,
        name: String,
        needed: u64,
        have: u64,
    },
    #[error("{layer}: data after the end of the tar archive, at byte {at}")]
    TrailingData { layer: String, at: u64 },
    #[error("{layer}: decompresses to more than {limit} bytes (--max-layer-bytes); refusing it")]
    LayerTooLarge { layer: String, limit: u64 },
    #[error(
        "{layer}: decompresses to more than {ratio} times its {compressed} compressed bytes (--max-layer-ratio); refusing it"
    )]
    LayerRatio {
        layer: String,
        compressed: u64,
        ratio: u64,
    },
    #[error("{layer}: does not fit in the {free} bytes free in {dir} once decompressed")]
    NoSpace {
        layer: String,
        dir: PathBuf,
        free: u64,
    },
    #[error("{layer}: unsafe entry name {name:?}: {why}")]
    UnsafeName {
        layer: String,
        name: String,
        why: NameProblem,
    },
    #[error("{layer}: {path} lies under {link}, which is a symlink in the image")]
    SymlinkParent {
        layer: String,
        path: PathBuf,
        link: PathBuf,
    },
    #[error("{layer}: {path} lies under {parent}, which is not a directory")]
    NotADirectory {
        layer: String,
        path: PathBuf,
        parent: PathBuf,
    },
    #[error("{layer}: hardlink {path} points to {target}, which does not exist")]
    HardlinkMissing {
        layer: String,
        path: PathBuf,
        target: PathBuf,
    },
    #[error("{layer}: {path}: {why}")]
    BadEntry {
        layer: String,
        path: String,
        why: String,
    },
}

impl SourceError {
    /// A closure for `map_err` that attaches the path an I/O error is about.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SourceError {
        let path = path.into();
        move |source| SourceError::Io { path, source }
    }
}
