//! `--keep`, `--keep-docs`, `--keep-listed`: shared by build, minimize,
//! allowlist and report.
use clap::Args;

use crate::{
    closure::{Level, Options},
    session::build::KeepSpec,
};

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

impl From<&KeepArgs> for KeepSpec {
    fn from(a: &KeepArgs) -> KeepSpec {
        KeepSpec {
            level: a.keep,
            docs: a.keep_docs,
            listed: a.keep_listed,
        }
    }
}

impl KeepArgs {
    pub fn options(&self, config: Option<&oci_spec::image::ImageConfiguration>) -> Options {
        KeepSpec::from(self).options(config)
    }
}
