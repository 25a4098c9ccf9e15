//! `trace verify`: run the tests in the minimal image and say PASS or
//! FAIL, with what a failing run looked for that the full image has.
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{CaptureArgs, ContainerArgs};
use crate::{
    model::write,
    session::verify::{self, VerifySpec},
    source::{self, ImageRef},
};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The minimal image to check (a path or a transport reference).
    #[arg(long, value_name = "MIN", value_parser = source::transport::parse)]
    pub image: ImageRef,
    /// The full image it was built from: failed lookups that exist there
    /// are listed as candidates for `--include`.
    #[arg(long, value_name = "FULL", value_parser = source::transport::parse)]
    pub full: Option<ImageRef>,
    /// Also write the trace of the run here.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub container: ContainerArgs,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub cmd: super::args::CommandArg,
}

impl VerifyArgs {
    pub fn spec(&self) -> anyhow::Result<VerifySpec> {
        Ok(VerifySpec {
            image: self.image.clone(),
            full: self.full.clone(),
            container: (&self.container).into(),
            capture: (&self.capture).into(),
            command: self.cmd.utf8()?,
        })
    }
}

pub async fn run(args: VerifyArgs) -> Result<i32> {
    let o = verify::check(&args.spec()?).await?;
    if let Some(out) = &args.output {
        write::write_atomic(out, &write::to_json(&o.trace))?;
    }
    eprint!("{}", verify::describe(&o, &args.image, args.full.as_ref()));
    Ok(o.trace.exit.code)
}
