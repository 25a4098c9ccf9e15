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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("trace").chain(args.iter().copied()))
    }

    /// An unknown option before the command is a usage error (exit 2), not
    /// the program to run.
    #[test]
    fn unknown_options_are_usage_errors() {
        let cases: &[&[&str]] = &[
            &["run", "--no-such-flag", "--", "true"],
            &["run", "--no-such-flag", "true"],
            &[
                "minimize",
                "--image",
                "X",
                "-o",
                "Y",
                "--no-such-flag",
                "--",
                "cmd",
            ],
            &["verify", "--image", "X", "--no-such-flag", "cmd"],
            &[
                "build",
                "--from",
                "X",
                "-o",
                "Y",
                "--no-such-flag",
                "--trace",
                "t.json",
            ],
            &["merge", "-o", "Y", "--no-such-flag", "a.json"],
            &["seccomp", "-o", "Y", "--no-such-flag", "a.json"],
            &["allowlist", "--no-such-flag", "a.json"],
            &["report", "--no-such-flag", "a.json"],
            &["structure-test", "--no-such-flag", "a.json"],
            &["attach", "--pid", "1", "--no-such-flag"],
        ];
        for args in cases {
            let err = parse(args).expect_err(&args.join(" "));
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}"
            );
            assert_eq!(err.exit_code(), 2);
            let text = err.render().to_string();
            assert_eq!(
                text.lines().next(),
                Some("error: unexpected argument '--no-such-flag' found"),
                "{args:?}"
            );
        }
    }

    /// The command starts after `--` or at the first word that is not an
    /// option; its own options are passed through untouched.
    #[test]
    fn command_starts_after_dashdash_or_first_word() {
        for args in [
            &["run", "--", "ls", "-l", "--color"][..],
            &["run", "ls", "-l", "--color"][..],
        ] {
            let Ok(Cli {
                command: super::Command::Run(r),
            }) = parse(args)
            else {
                panic!("{args:?} did not parse as run");
            };
            assert_eq!(r.command, ["ls", "-l", "--color"]);
        }
        let Ok(Cli {
            command: super::Command::Minimize(m),
        }) = parse(&["minimize", "--image", "X", "-o", "Y", "--", "-weird", "--x"])
        else {
            panic!("minimize did not parse");
        };
        assert_eq!(m.command, ["-weird", "--x"]);
    }
}
