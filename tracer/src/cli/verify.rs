//! `trace verify`: run the tests in the minimal image, and when they fail,
//! show what they looked for that the minimal image lacks.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::{
    args::{CaptureArgs, ContainerArgs},
    run::{self, RunArgs, ScopeArg},
};
use crate::{
    closure::resolve::resolve,
    model::{
        trace::{Op, Trace},
        write,
    },
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
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// What a verification run found.
pub struct Outcome {
    pub trace: Trace,
    pub passed: bool,
    /// Looked up in the minimal image, not found there, present in FULL.
    pub missing: Vec<String>,
    /// Entries of directories the run listed that FULL has and MIN lacks.
    pub listed: Vec<super::hints::ListedHint>,
    /// Files that could not be created, and the missing directory.
    pub creates: Vec<super::hints::CreateHint>,
}

/// The `trace run --image` that verify and minimize make.
pub fn run_args(
    image: &ImageRef,
    c: &ContainerArgs,
    capture: &CaptureArgs,
    command: &[String],
) -> RunArgs {
    RunArgs {
        output: None,
        format: None,
        scope: ScopeArg::Cgroup,
        wait_descendants: 10.0,
        capture: capture.clone(),
        image: Some(image.clone()),
        container: c.clone(),
        root: None,
        runs: 1,
        command: command.to_vec(),
    }
}

/// Paths the run looked for and did not find, which exist in `full`.
pub fn missing_in(trace: &Trace, full: &ImageRef) -> Result<Vec<String>> {
    let image = crate::cache::open_for_read(full).with_context(|| format!("reading {full}"))?;
    let fs = image.rootfs.as_ref();
    let mut out = Vec::new();
    for f in &trace.files {
        let path = Path::new(&f.path);
        let looked_for = f.failed_only()
            && f.accesses
                .iter()
                .any(|a| a.errno == Some(libc::ENOENT) && a.op != Op::Chdir);
        if !looked_for || trace.beyond_image(path) {
            continue;
        }
        if matches!(resolve(fs, path, true), Ok(Some(_))) {
            out.push(f.path.clone());
        }
    }
    Ok(out)
}

pub async fn check(
    image: &ImageRef,
    full: Option<&ImageRef>,
    c: &ContainerArgs,
    capture: &CaptureArgs,
    command: &[String],
) -> Result<Outcome> {
    // With FULL, the names a failing program asked for are read from
    // its error messages.
    let tee = match full {
        Some(_) => super::stderr_tee::Tee::start().ok(),
        None => None,
    };
    let trace = run::execute(&run_args(image, c, capture, command)).await;
    let stderr = tee.map(super::stderr_tee::Tee::finish).unwrap_or_default();
    let trace = trace?;
    let passed = trace.exit.code == 0;
    let (mut listed, mut creates) = (Vec::new(), Vec::new());
    let missing = match (passed, full) {
        (false, Some(full)) => {
            let f = full.open().with_context(|| format!("reading {full}"))?;
            let m = image.open().with_context(|| format!("reading {image}"))?;
            let asked = super::hints::asked_names(&stderr);
            listed = super::hints::listed(&trace, m.rootfs.as_ref(), f.rootfs.as_ref(), &asked);
            creates = super::hints::create_parents(&trace, m.rootfs.as_ref(), f.rootfs.as_ref());
            missing_in(&trace, full)?
        }
        _ => Vec::new(),
    };
    Ok(Outcome {
        trace,
        passed,
        missing,
        listed,
        creates,
    })
}

pub fn describe(o: &Outcome, image: &ImageRef, full: Option<&ImageRef>) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let verdict = if o.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(
        s,
        "trace verify: {verdict} (exit {}) in {}",
        o.trace.exit.code, image
    );
    if !o.passed
        && let Some(full) = full
    {
        s.push_str(&super::hints::describe(o, full));
    }
    if !o.passed {
        match full {
            Some(full) if !o.missing.is_empty() => {
                let _ = writeln!(
                    s,
                    "  looked up, missing here, present in {} (add with --include):",
                    full
                );
                for m in &o.missing {
                    let _ = writeln!(s, "    {}", crate::model::escape::path(m.as_bytes()));
                }
            }
            Some(full) if o.listed.is_empty() && o.creates.is_empty() => {
                let _ = writeln!(s, "  no failed lookup exists in {full}");
            }
            Some(_) => {}
            None => {
                let _ = writeln!(
                    s,
                    "  give --full IMG to list failed lookups that the full image has"
                );
            }
        }
    }
    s
}

pub async fn verify(args: VerifyArgs) -> Result<i32> {
    let o = check(
        &args.image,
        args.full.as_ref(),
        &args.container,
        &args.capture,
        &args.command,
    )
    .await?;
    if let Some(out) = &args.output {
        write::write_atomic(out, &write::to_json(&o.trace))?;
    }
    eprint!("{}", describe(&o, &args.image, args.full.as_ref()));
    Ok(o.trace.exit.code)
}
