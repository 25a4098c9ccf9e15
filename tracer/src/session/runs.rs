//! `--runs N`: a suite is not deterministic (a retry loop sleeps in one
//! run and not the next, a cache is warm or cold), so run it N times and
//! unite the traces; what only some runs used is listed.
use anyhow::Result;

use super::run::{self, RunSpec};
use crate::model::{
    merge,
    sometimes::{self, Sometimes},
    trace::Trace,
};

/// The label of run `i` (from 1) in `seen_in`.
pub fn label(i: usize) -> String {
    format!("run-{i}")
}

/// Runs `spec` `n` times; returns the united trace (one run: its own
/// trace) and each run's exit status.
pub async fn execute(spec: &RunSpec, n: usize) -> Result<(Trace, Vec<i32>)> {
    if n <= 1 {
        let t = run::execute(spec).await?;
        let code = t.exit.code;
        return Ok((t, vec![code]));
    }
    let mut inputs = Vec::new();
    let mut codes = Vec::new();
    for i in 1..=n {
        let t = run::execute(spec).await?;
        codes.push(t.exit.code);
        inputs.push(merge::Input {
            label: label(i),
            trace: t,
        });
    }
    let first = inputs[0].trace.scope.clone();
    let mut merged = merge::merge(inputs);
    merged.command = super::run::lossy(&spec.command);
    merged.scope.image = first.image;
    // The exit status of the first run that failed.
    merged.exit.code = codes.iter().copied().find(|&c| c != 0).unwrap_or(0);
    Ok((merged, codes))
}

/// The lines that tell which files only some runs used.
pub fn describe(trace: &Trace) -> String {
    use std::fmt::Write as _;
    let list: Vec<Sometimes> = sometimes::sometimes(trace);
    let mut s = String::new();
    if trace.merged_from.len() < 2 {
        return s;
    }
    if list.is_empty() {
        let _ = writeln!(
            s,
            "trace: every file was used in all {} runs",
            trace.merged_from.len()
        );
        return s;
    }
    let _ = writeln!(
        s,
        "trace: {} files used in only some of {} runs (most likely needed again):",
        list.len(),
        trace.merged_from.len()
    );
    for x in &list {
        let _ = writeln!(
            s,
            "  {}  (seen in {})",
            crate::model::escape::path(x.path.as_bytes()),
            x.seen_in.join(", ")
        );
    }
    s
}
