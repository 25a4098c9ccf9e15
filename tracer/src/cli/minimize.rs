//! `trace minimize`: run the tests in the full image under the trace,
//! build the minimal image, run the tests again in it.
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::{
    args::{CaptureArgs, ContainerArgs},
    build::{self, BuildArgs, ImageArgs},
    verify,
};
use crate::{
    model::write,
    output::{self, target},
    runtime::engine::{self, EngineArg},
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
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn beside(out: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub async fn minimize(args: MinimizeArgs) -> Result<i32> {
    let plan = target::plan(
        &args.output,
        args.build.format.map(|f| match f {
            build::OutFormat::Oci => output::Format::Oci,
            build::OutFormat::OciArchive => output::Format::OciArchive,
            build::OutFormat::DockerArchive => output::Format::DockerArchive,
        }),
        args.build.tag.as_deref(),
    )?;
    if let target::Plan::File { path, .. } = &plan
        && path.exists()
    {
        bail!("{} already exists; not overwriting it", path.display());
    }
    plan.check()?;
    let base = plan.artifact_base();
    let (trace_path, report_path, verify_path) = (
        beside(&base, ".trace.json"),
        beside(&base, ".report.json"),
        beside(&base, ".verify.json"),
    );
    // Both runs under the same engine: the one the full image came from
    // unless --engine says otherwise.
    let mut container = args.container.clone();
    container.engine = Some(match engine::resolve(container.engine, &args.image) {
        Some(crate::engine::Engine::Docker) => EngineArg::Docker,
        Some(crate::engine::Engine::Podman) => EngineArg::Podman,
        None => EngineArg::Runc,
    });
    let (full, _) = super::runs::execute(
        &verify::run_args(&args.image, &container, &args.capture, &args.command),
        args.runs as usize,
    )
    .await?;
    write::write_atomic(&trace_path, &write::to_json(&full))?;
    if full.exit.code != 0 {
        eprintln!(
            "trace minimize: the command failed in the full image (exit {}); nothing built. Trace: {}",
            full.exit.code,
            trace_path.display()
        );
        return Ok(full.exit.code);
    }
    let report = build::build_image(&BuildArgs {
        from: args.image.clone(),
        traces: vec![trace_path.clone()],
        output: args.output.clone(),
        image: args.build.clone(),
        report: Some(report_path.clone()),
        seccomp: false,
    })?;
    let o = verify::check(
        &args.output,
        Some(&args.image),
        &container,
        &args.capture,
        &args.command,
    )
    .await?;
    write::write_atomic(&verify_path, &write::to_json(&o.trace))?;

    let verdict = |ok: bool| if ok { "passed" } else { "FAILED" };
    let mut execs: Vec<&str> = full
        .execs
        .iter()
        .map(|e| e.exe.as_deref().unwrap_or(&e.path))
        .collect();
    execs.sort();
    execs.dedup();
    eprintln!("trace minimize: {}", args.command.join(" "));
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
    eprint!("{}", super::runs::describe(&full));
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
        trace_path.display(),
        report_path.display(),
        verify_path.display()
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
