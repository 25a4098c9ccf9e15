//! `trace seccomp`: a seccomp profile allowing what the traced run used.
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::model::{seccomp, write};

#[derive(Debug, Args)]
pub struct SeccompArgs {
    #[arg(value_name = "TRACE.json")]
    pub trace: PathBuf,
    #[arg(short, long, value_name = "profile.json")]
    pub output: PathBuf,
}

/// Writes the profile for `trace_file` to `out`; returns how many syscalls
/// it allows.
pub fn write_profile(trace_file: &Path, out: &Path) -> Result<usize> {
    let trace = write::read(trace_file)?;
    let (profile, unknown) = seccomp::profile(&trace)?;
    if !unknown.is_empty() {
        eprintln!(
            "trace seccomp: warning: left out syscalls without a known name: {}",
            unknown.join(" ")
        );
    }
    let mut bytes = serde_json::to_vec_pretty(&profile)?;
    bytes.push(b'\n');
    write::write_atomic(out, &bytes)?;
    Ok(seccomp::allowed(&profile))
}

pub fn run(args: SeccompArgs) -> Result<i32> {
    let n = write_profile(&args.trace, &args.output)?;
    eprintln!(
        "trace seccomp: {n} syscalls allowed, everything else EPERM -> {}",
        args.output.display()
    );
    Ok(0)
}
