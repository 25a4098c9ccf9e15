//! `trace minimize`: the arguments, and the summary table printed after
//! the session (run in the full image, build, verify).
use anyhow::Result;
use clap::Args;

use super::{
    args::{CaptureArgs, ContainerArgs},
    build::ImageArgs,
};
use crate::{
    session::{
        build,
        minimize::{self, MinimizeSpec, Minimized},
        runs, verify,
    },
    source::{self, ImageRef},
};

#[derive(Debug, Args)]
pub struct MinimizeArgs {
    /// The full image the tests pass in (a path or a transport reference).
    #[arg(long, value_name = "FULL", value_parser = source::transport::parse)]
    pub image: ImageRef,
    /// The minimal image to write: a path (must not exist) or a transport
    /// reference (docker-daemon:NAME:TAG loads it into Docker). The trace,
    /// the report and the verification trace go beside it (for an engine,
    /// in the working directory, named after the image).
    #[arg(short, long, value_name = "MIN", value_parser = source::transport::parse)]
    pub output: ImageRef,
    #[command(flatten)]
    pub build: ImageArgs,
    #[command(flatten)]
    pub container: ContainerArgs,
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Run the tests this many times in the full image and build from the
    /// union of the traces; files seen in only some runs are listed.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    #[command(flatten)]
    pub cmd: super::args::CommandArg,
}

impl MinimizeArgs {
    pub fn spec(&self) -> anyhow::Result<MinimizeSpec> {
        Ok(MinimizeSpec {
            image: self.image.clone(),
            output: self.output.clone(),
            build: (&self.build).into(),
            container: (&self.container).into(),
            capture: (&self.capture).into(),
            runs: self.runs,
            command: self.cmd.utf8()?,
        })
    }
}

pub async fn run(args: MinimizeArgs) -> Result<i32> {
    let (full, report, o, paths) = match minimize::minimize(&args.spec()?).await? {
        Minimized::FailedInFull { full, artifacts } => {
            eprintln!(
                "trace minimize: the command failed in the full image (exit {}); nothing built. Trace: {}",
                full.exit.code,
                artifacts.trace.display()
            );
            return Ok(full.exit.code);
        }
        Minimized::Built {
            full,
            report,
            verified,
            artifacts,
        } => (full, report, verified, artifacts),
    };
    let verdict = |ok: bool| if ok { "passed" } else { "FAILED" };
    let mut execs: Vec<&str> = full
        .execs
        .iter()
        .map(|e| e.exe.as_deref().unwrap_or(&e.path))
        .collect();
    execs.sort();
    execs.dedup();
    eprintln!("trace minimize: {}", args.cmd.utf8()?.join(" "));
    eprintln!("                 {:>14}  {:>14}", "full", "minimal");
    eprintln!(
        "  size           {:>14}  {:>14}   ({:.1}x smaller)",
        build::human(report.before.bytes),
        build::human(report.after.bytes),
        report.before.bytes as f64 / report.after.bytes.max(1) as f64
    );
    eprintln!(
        "  files          {:>14}  {:>14}",
        report.before.entries, report.after.entries
    );
    eprintln!(
        "  tests          {:>14}  {:>14}",
        verdict(true),
        verdict(o.passed)
    );
    eprintln!("  executables kept: {}", execs.join(" "));
    eprint!("{}", runs::describe(&full));
    if let Some(sbom) = &report.sbom {
        eprintln!("  sbom: {sbom}");
    }
    eprintln!(
        "  outputs: image {}{}, trace {}, report {}, verification trace {}",
        args.output,
        report
            .loaded
            .as_ref()
            .map(|l| format!(" ({})", l.id))
            .unwrap_or_default(),
        paths.trace.display(),
        paths.report.display(),
        paths.verify.display()
    );
    if !o.passed {
        eprint!("{}", verify::describe(&o, &args.output, Some(&args.image)));
        return Ok(if o.trace.exit.code != 0 {
            o.trace.exit.code
        } else {
            1
        });
    }
    Ok(0)
}
