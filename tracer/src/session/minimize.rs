//! Minimize: run the tests in the full image under the trace, build the
//! minimal image from that trace, run the tests again in it.
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{
    build::{self, BuildSpec, ImageSpec, Report},
    run::RunSpec,
    runs,
    spec::{CaptureSpec, ContainerSpec},
    verify::{self, Outcome, VerifySpec},
};
use crate::{
    model::{trace::Trace, write},
    output::target,
    runtime::engine::{self, EngineArg},
    source::ImageRef,
};

/// The full image, the tests, and where the minimal image goes.
#[derive(Clone, Debug)]
pub struct MinimizeSpec {
    /// The image the tests pass in.
    pub image: ImageRef,
    /// The minimal image to write (a path that must not exist, or an
    /// engine). The trace, the report and the verification trace go
    /// beside it.
    pub output: ImageRef,
    pub build: ImageSpec,
    pub container: ContainerSpec,
    pub capture: CaptureSpec,
    /// Runs in the full image; the build takes the union of their traces.
    pub runs: u32,
    pub command: Vec<String>,
}

/// The files a minimize writes beside the image.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub trace: PathBuf,
    pub report: PathBuf,
    pub verify: PathBuf,
}

/// What a minimize did.
pub enum Minimized {
    /// The tests failed in the full image: nothing was built.
    FailedInFull { full: Trace, artifacts: Artifacts },
    Built {
        full: Trace,
        report: Box<Report>,
        verified: Box<Outcome>,
        artifacts: Artifacts,
    },
}

fn beside(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub async fn minimize(spec: &MinimizeSpec) -> Result<Minimized> {
    let plan = target::plan(&spec.output, spec.build.format, spec.build.tag.as_deref())?;
    if let target::Plan::File { path, .. } = &plan
        && path.exists()
    {
        bail!("{} already exists; not overwriting it", path.display());
    }
    plan.check()?;
    let base = plan.artifact_base();
    let artifacts = Artifacts {
        trace: beside(&base, ".trace.json"),
        report: beside(&base, ".report.json"),
        verify: beside(&base, ".verify.json"),
    };
    // Both runs under the same engine: the one the full image came from
    // unless the spec says otherwise.
    let mut container = spec.container.clone();
    container.engine = Some(match engine::resolve(container.engine, &spec.image) {
        Some(crate::engine::Engine::Docker) => EngineArg::Docker,
        Some(crate::engine::Engine::Podman) => EngineArg::Podman,
        None => EngineArg::Runc,
    });
    let (full, _) = runs::execute(
        &RunSpec::in_image(&spec.image, &container, &spec.capture, &spec.command),
        spec.runs as usize,
    )
    .await?;
    write::write_atomic(&artifacts.trace, &write::to_json(&full))?;
    if full.exit.code != 0 {
        return Ok(Minimized::FailedInFull { full, artifacts });
    }
    let report = build::build(&BuildSpec {
        from: spec.image.clone(),
        traces: vec![artifacts.trace.clone()],
        output: spec.output.clone(),
        image: spec.build.clone(),
        report: Some(artifacts.report.clone()),
        seccomp: false,
    })?;
    let verified = verify::check(&VerifySpec {
        image: spec.output.clone(),
        full: Some(spec.image.clone()),
        container,
        capture: spec.capture.clone(),
        command: spec.command.clone(),
    })
    .await?;
    write::write_atomic(&artifacts.verify, &write::to_json(&verified.trace))?;
    Ok(Minimized::Built {
        full,
        report: Box::new(report),
        verified: Box::new(verified),
        artifacts,
    })
}
