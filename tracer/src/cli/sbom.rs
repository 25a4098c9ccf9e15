//! `trace sbom`, and the SBOM `trace build` and `trace minimize` write
//! beside the minimal image: both from the same collector (crate::sbom).
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    model::write,
    sbom::{self, Format, Sbom, Subject, View, model::TraceRef},
    source::{self, ImageRef},
};

/// The SBOM options of `build` and `minimize`.
#[derive(Clone, Debug, Args)]
pub struct SbomOpts {
    /// Where to write the minimal image's SBOM (default: beside the
    /// image, OUT.cdx.json or OUT.spdx.json).
    #[arg(long, value_name = "FILE", conflicts_with = "no_sbom")]
    pub sbom: Option<PathBuf>,
    /// The SBOM's format.
    #[arg(long, value_enum, default_value_t = Format::CyclonedxJson)]
    pub sbom_format: Format,
    /// Write no SBOM.
    #[arg(long)]
    pub no_sbom: bool,
    /// Who supplies the minimal image (`Organization: NAME` or `Person:
    /// NAME (EMAIL)`), for the SBOM; NTIA's minimum elements want one.
    #[arg(long, value_name = "SUPPLIER")]
    pub sbom_supplier: Option<String>,
}

impl SbomOpts {
    /// The path to write, or None with `--no-sbom`.
    pub fn path(&self, artifact_base: &Path) -> Option<PathBuf> {
        if self.no_sbom {
            return None;
        }
        Some(self.sbom.clone().unwrap_or_else(|| {
            let mut s = artifact_base.as_os_str().to_owned();
            s.push(self.sbom_format.suffix());
            PathBuf::from(s)
        }))
    }
}

#[derive(Debug, Args)]
pub struct SbomArgs {
    /// The image: a root filesystem directory, an OCI layout (directory or
    /// tar), a docker archive, or a transport reference.
    #[arg(long, value_name = "IMAGE", value_parser = source::transport::parse)]
    pub from: ImageRef,
    /// Where to write it (default: standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::CyclonedxJson)]
    pub format: Format,
    /// Who supplies the image (`Organization: NAME` or `Person: NAME`).
    #[arg(long, value_name = "SUPPLIER")]
    pub supplier: Option<String>,
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

pub fn run(args: SbomArgs) -> Result<i32> {
    let image = args
        .from
        .open()
        .with_context(|| format!("reading the image {}", args.from))?;
    if let Some(p) = &args.output {
        check_writable(p)?;
    }
    let fs = image.rootfs.as_ref();
    let paths: BTreeSet<PathBuf> = sbom::walk(fs)?;
    let config = image.config.as_ref();
    let label = |k: &str| {
        config
            .and_then(|c| c.config().as_ref())
            .and_then(|c| c.labels().as_ref())
            .and_then(|l| l.get(k).cloned())
    };
    let subject = Subject {
        name: args.from.to_string(),
        tag: match &args.from {
            ImageRef::Oci { tag, .. } | ImageRef::OciArchive { tag, .. } => tag.clone(),
            ImageRef::DockerArchive { name, .. } => name.clone(),
            ImageRef::Engine { name, .. } => Some(name.clone()),
            _ => None,
        },
        digest: image.digest.clone(),
        // An image trace built names its source in a label.
        source_digest: label(crate::output::config::SOURCE_DIGEST_KEY),
        source_name: None,
        traces: Vec::new(),
        supplier: args.supplier.clone(),
        created: created(config)?,
    };
    let doc = sbom::collect(&View { fs, paths: &paths }, subject)?;
    match &args.output {
        Some(path) => {
            let line = write_sbom(&doc, args.format, path)?;
            eprintln!("trace sbom: {line}");
        }
        None => {
            use std::io::Write;
            let bytes = sbom::render(&doc, args.format)?;
            std::io::stdout()
                .write_all(&bytes)
                .context("writing the SBOM to standard output")?;
        }
    }
    Ok(0)
}
