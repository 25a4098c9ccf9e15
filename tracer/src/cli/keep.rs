//! `--keep`, `--keep-docs`, `--keep-listed`: shared by build, minimize,
//! allowlist and report.
use clap::Args;

use crate::closure::{Level, Options, programs};

#[derive(Clone, Debug, Default, Args)]
pub struct KeepArgs {
    /// What to keep around each used path: the file, its language module,
    /// its OS package, or the package and its dependencies.
    #[arg(long, value_enum, default_value = "file", value_name = "LEVEL")]
    pub keep: Level,
    /// With --keep package or package+deps: keep the packages'
    /// documentation, man pages and every locale too.
    #[arg(long)]
    pub keep_docs: bool,
    /// Keep every entry (not recursively) of each directory the run listed.
    #[arg(long)]
    pub keep_listed: bool,
}

impl KeepArgs {
    pub fn options(&self, config: Option<&oci_spec::image::ImageConfiguration>) -> Options {
        Options {
            keep: self.keep,
            keep_docs: self.keep_docs,
            keep_listed: self.keep_listed,
            config_programs: programs::from_config(config),
        }
    }
}
