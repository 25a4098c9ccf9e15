//! `trace structure-test`: a container-structure-test config (schema
//! 2.0.0) that pins the minimal image down: what it must have (the
//! executables and files the run used, with their permissions), what it
//! must not (shells, package managers and tools the run never used), and
//! its metadata.
use std::{os::unix::ffi::OsStrExt, path::PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    closure::{self, rules::Rules},
    model::{escape, write},
    output::structure_test,
    source,
};

#[derive(Debug, Args)]
pub struct StructureArgs {
    #[arg(value_name = "TRACE.json")]
    pub trace: PathBuf,
    /// The source image the minimal one is built from.
    #[arg(long, value_name = "SRC", value_parser = source::transport::parse)]
    pub from: source::ImageRef,
    #[arg(short, long, value_name = "cst.yaml")]
    pub output: PathBuf,
}

pub fn run(args: StructureArgs) -> Result<i32> {
    let trace = write::read(&args.trace)?;
    let image = args.from.open().context("reading the source image")?;
    let fs = image.rootfs.as_ref();
    let kept = closure::compute(fs, std::slice::from_ref(&trace), &Rules::default())?;
    let config = image.config.as_ref().and_then(|c| c.config().as_ref());
    let built = structure_test::build(fs, &trace, &kept, config);
    for p in &built.unnamed {
        eprintln!(
            "trace structure-test: warning: no check for {}: a YAML string cannot name it",
            escape::path(p.as_os_str().as_bytes())
        );
    }
    let yaml = serde_yaml_ng::to_string(&built.doc).context("writing the config as YAML")?;
    write::write_atomic(&args.output, yaml.as_bytes())?;
    eprintln!(
        "trace structure-test: {} file checks -> {}",
        built.doc.file_existence_tests.len(),
        args.output.display()
    );
    Ok(0)
}
