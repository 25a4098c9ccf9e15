//! Command-line interface: one module per subcommand.
pub mod allowlist;
pub mod attach;
pub mod build;
pub mod hints;
pub mod keep;
pub mod levels;
pub mod merge;
pub mod minimize;
pub mod report;
pub mod run;
pub mod runs;
pub mod seccomp;
pub mod stderr_tee;
pub mod structure;
pub mod verify;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "trace",
    version,
    about = "Record every file a program opens, probes and executes (eBPF), to build minimal container images"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command and record the files it and all its descendants use.
    Run(run::RunArgs),
    /// Build a minimal image from a full one and the traces of a run.
    Build(build::BuildArgs),
    /// Run a command in a (minimal) image and report whether it passes.
    Verify(verify::VerifyArgs),
    /// Trace a command in the full image, build the minimal one, verify it.
    Minimize(minimize::MinimizeArgs),
    /// Trace a running process tree, cgroup or container.
    Attach(attach::AttachArgs),
    /// Unite several traces (shards, suites, sessions) into one.
    Merge(merge::MergeArgs),
    /// List the paths an image needs (for `trace build --include-from`).
    Allowlist(allowlist::AllowlistArgs),
    /// Write a seccomp profile allowing the syscalls a trace recorded.
    Seccomp(seccomp::SeccompArgs),
    /// Write a container-structure-test config for the minimal image.
    StructureTest(structure::StructureArgs),
    /// Summarize a trace on the terminal and as an HTML page.
    Report(report::ReportArgs),
}
