//! The SBOM a build writes beside the minimal image: where, in which
//! format, and the facts it takes from the build (creation time, traces).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{
    model::write,
    sbom::{self, Format, Sbom, model::TraceRef},
};

/// Whether and where a build writes its SBOM.
#[derive(Clone, Debug)]
pub struct SbomSpec {
    /// None: beside the image, `OUT.cdx.json` or `OUT.spdx.json`.
    pub path: Option<PathBuf>,
    pub format: Format,
    /// Write none.
    pub disabled: bool,
    /// Who supplies the image (`Organization: NAME`, `Person: NAME (EMAIL)`).
    pub supplier: Option<String>,
}

impl Default for SbomSpec {
    fn default() -> Self {
        SbomSpec {
            path: None,
            format: Format::CyclonedxJson,
            disabled: false,
            supplier: None,
        }
    }
}

impl SbomSpec {
    /// The path to write, or None when disabled.
    pub fn path(&self, artifact_base: &Path) -> Option<PathBuf> {
        if self.disabled {
            return None;
        }
        Some(self.path.clone().unwrap_or_else(|| {
            let mut s = artifact_base.as_os_str().to_owned();
            s.push(self.format.suffix());
            PathBuf::from(s)
        }))
    }
}

/// The image's creation time: its config's `created`, else
/// SOURCE_DATE_EPOCH, else the epoch: never "now".
pub fn created(config: Option<&oci_spec::image::ImageConfiguration>) -> Result<String> {
    if let Some(c) = config.and_then(|c| c.created().as_deref()) {
        return Ok(sbom::time::normalize(c)?);
    }
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        let secs: i64 = v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?;
        return sbom::time::format_epoch(secs)
            .map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH={v:?} is out of range"));
    }
    Ok(sbom::time::EPOCH.to_string())
}

/// A trace the image was built from, named as given, with its hash.
pub fn trace_ref(path: &Path) -> Result<TraceRef> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(TraceRef {
        name: path.display().to_string(),
        sha256: crate::source::archive::hex(&sha2::Sha256::digest(&bytes)),
    })
}

/// An SBOM path must be a file name in an existing directory.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!("SBOM path {}: is a directory", path.display());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        anyhow::bail!(
            "SBOM path {}: {} is not a directory",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

/// Renders and writes atomically; returns a one-line summary.
pub fn write_sbom(sbom: &Sbom, format: Format, path: &Path) -> Result<String> {
    let bytes = sbom::render(sbom, format)?;
    write::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(describe(sbom, path))
}

pub fn describe(sbom: &Sbom, path: &Path) -> String {
    let partial = sbom.packages.iter().filter(|p| p.partial()).count();
    format!(
        "{} ({} packages, {} partly kept; {} files)",
        path.display(),
        sbom.packages.len(),
        partial,
        sbom.files.len()
    )
}
