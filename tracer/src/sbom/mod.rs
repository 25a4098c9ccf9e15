//! Software bills of materials: what a (minimal) image holds, in the
//! forms scanners and auditors read (CycloneDX 1.6 JSON, SPDX 2.3 JSON).
//! One model is gathered from an image's files — the OS packages its dpkg
//! database records, the language packages whose metadata is in it, every
//! regular file with its hashes — and each writer only renders it, so the
//! two documents always say the same thing.
pub mod collect;
pub mod cyclonedx;
pub mod dpkg;
pub mod gem;
pub mod model;
pub mod npm;
pub mod purl;
pub mod pypi;
pub mod spdx;
pub mod time;

use std::path::PathBuf;

pub use collect::{View, collect, walk};
pub use model::{Ecosystem, File, Package, Sbom, Subject};

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("reading {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image's creation time {0:?} is not an RFC 3339 time")]
    Time(String),
    #[error("rendering the SBOM")]
    Json(#[from] serde_json::Error),
}

/// The document formats written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Format {
    /// CycloneDX 1.6, JSON.
    CyclonedxJson,
    /// SPDX 2.3, JSON.
    SpdxJson,
}

impl Format {
    /// The file name suffix of the default SBOM path beside an image.
    pub fn suffix(self) -> &'static str {
        match self {
            Format::CyclonedxJson => ".cdx.json",
            Format::SpdxJson => ".spdx.json",
        }
    }
}

/// The document's bytes (pretty JSON, one trailing newline).
pub fn render(sbom: &Sbom, format: Format) -> Result<Vec<u8>, SbomError> {
    let mut out = match format {
        Format::CyclonedxJson => cyclonedx::render(sbom)?,
        Format::SpdxJson => spdx::render(sbom)?,
    };
    out.push(b'\n');
    Ok(out)
}

/// A name derived from the content, for serial numbers and namespaces:
/// the same document gets the same one, a different one another.
pub(crate) fn content_id(bytes: &[u8]) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(bytes);
    crate::source::archive::hex(&h)
}
