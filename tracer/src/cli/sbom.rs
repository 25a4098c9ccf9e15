//! `trace sbom`, and the SBOM `trace build` and `trace minimize` write
//! beside the minimal image: both from the same collector (crate::sbom).
use std::{collections::BTreeSet, path::PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    sbom::{self, Format, Subject, View},
    session::sbom::{SbomSpec, check_writable, created, write_sbom},
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

impl From<&SbomOpts> for SbomSpec {
    fn from(o: &SbomOpts) -> SbomSpec {
        SbomSpec {
            path: o.sbom.clone(),
            format: o.sbom_format,
            disabled: o.no_sbom,
            supplier: o.sbom_supplier.clone(),
        }
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

pub fn run(args: SbomArgs) -> Result<i32> {
    let image = args.from.open().context("reading the image")?;
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
