//! `trace build`: the arguments of a build (traces and a full image in,
//! a minimal image out).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::{
    output,
    session::build::{self, BuildSpec, ImageSpec},
    source::{self, ImageRef},
};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Source: a root filesystem directory, an OCI image layout (directory
    /// or tar) or a `docker save` archive; or docker-daemon:NAME,
    /// containers-storage:NAME, oci:DIR[:TAG], oci-archive:FILE[:TAG],
    /// docker-archive:FILE.
    #[arg(long, value_name = "SRC", value_parser = source::transport::parse)]
    pub from: ImageRef,
    /// Trace file(s) from `trace run`; several are merged.
    #[arg(long = "trace", value_name = "TRACE.json", required = true)]
    pub traces: Vec<PathBuf>,
    /// Where to write the image: a path (must not exist; in --format), or
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME],
    /// docker-daemon:NAME:TAG (loaded into Docker), containers-storage:NAME:TAG
    /// (into Podman).
    #[arg(short, long, value_name = "OUT", value_parser = source::transport::parse)]
    pub output: ImageRef,
    #[command(flatten)]
    pub image: ImageArgs,
    /// Also write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also write a seccomp profile allowing the traced syscalls, beside
    /// the image as OUT.seccomp.json.
    #[arg(long)]
    pub seccomp: bool,
}

/// How the minimal image is made; shared by build and minimize.
#[derive(Clone, Debug, Args)]
pub struct ImageArgs {
    /// For a plain output path (default: oci).
    #[arg(long, value_enum)]
    pub format: Option<output::Format>,
    /// Image name, e.g. `app:minimal`.
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// Also keep this path or glob (absolute, in the image).
    #[arg(long, value_name = "PATH|GLOB")]
    pub include: Vec<String>,
    /// Never keep paths matching this glob.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Keep the paths or globs listed in FILE, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub include_from: Vec<PathBuf>,
    /// Leave the (trimmed) dpkg database out of the image.
    #[arg(long)]
    pub no_package_db: bool,
    #[command(flatten)]
    pub keep: super::keep::KeepArgs,
    #[command(flatten)]
    pub sbom: super::sbom::SbomOpts,
}

impl From<&ImageArgs> for ImageSpec {
    fn from(a: &ImageArgs) -> ImageSpec {
        ImageSpec {
            format: a.format,
            tag: a.tag.clone(),
            include: a.include.clone(),
            exclude: a.exclude.clone(),
            include_from: a.include_from.clone(),
            no_package_db: a.no_package_db,
            keep: (&a.keep).into(),
            sbom: (&a.sbom).into(),
        }
    }
}

impl BuildArgs {
    pub fn spec(&self) -> BuildSpec {
        BuildSpec {
            from: self.from.clone(),
            traces: self.traces.clone(),
            output: self.output.clone(),
            image: (&self.image).into(),
            report: self.report.clone(),
            seccomp: self.seccomp,
        }
    }
}

pub fn run(args: BuildArgs) -> Result<i32> {
    let report = build::build(&args.spec())?;
    eprint!("{}", build::summary(&report));
    Ok(0)
}
