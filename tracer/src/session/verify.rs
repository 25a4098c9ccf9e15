//! Verification: run a command in a (minimal) image, and when it fails,
//! find what it looked for that the image lacks and the full image has.
use std::path::Path;

use anyhow::{Context, Result};

use super::{
    run::{self, RunSpec},
    spec::{CaptureSpec, ContainerSpec},
};
use crate::{
    closure::resolve::resolve,
    model::trace::{Op, Trace},
    source::{ImageRef, rootfs::Rootfs},
};

/// A command to run in an image.
#[derive(Clone, Debug)]
pub struct VerifySpec {
    /// The (minimal) image to run in.
    pub image: ImageRef,
    /// The full image it was built from, to explain a failure.
    pub full: Option<ImageRef>,
    pub container: ContainerSpec,
    pub capture: CaptureSpec,
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

/// Paths the run looked for and did not find, which exist in the full
/// image `fs`.
pub fn missing_in(trace: &Trace, fs: &dyn Rootfs) -> Vec<String> {
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
    out
}

/// Runs the command in the image; on failure, with a full image, finds
/// what the image lacks.
pub async fn check(spec: &VerifySpec) -> Result<Outcome> {
    let (image, full) = (&spec.image, spec.full.as_ref());
    // With FULL, the names a failing program asked for are read from
    // its error messages.
    let tee = match full {
        Some(_) => super::stderr_tee::Tee::start().ok(),
        None => None,
    };
    let trace = run::execute(&RunSpec::in_image(
        image,
        &spec.container,
        &spec.capture,
        &spec.command,
    ))
    .await;
    let stderr = tee.map(super::stderr_tee::Tee::finish).unwrap_or_default();
    let trace = trace?;
    let passed = trace.exit.code == 0;
    let (mut listed, mut creates) = (Vec::new(), Vec::new());
    let missing = match (passed, full) {
        (false, Some(full)) => {
            let f = crate::cache::open_for_read(full).context("reading the full image")?;
            let m = crate::cache::open_for_read(image).context("reading the image")?;
            let asked = super::hints::asked_names(&stderr);
            listed = super::hints::listed(&trace, m.rootfs.as_ref(), f.rootfs.as_ref(), &asked);
            creates = super::hints::create_parents(&trace, m.rootfs.as_ref(), f.rootfs.as_ref());
            missing_in(&trace, f.rootfs.as_ref())
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
