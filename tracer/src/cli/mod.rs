//! Command-line interface: one module per subcommand.
pub mod build;
pub mod run;

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
}
