//! Command-line interface: one module per subcommand, each with its
//! clap arguments and one entry point, `run(args) -> Result<exit status>`,
//! that turns the arguments into a library value (a session's spec, a
//! trace to derive from), calls the library, and prints the result.
pub mod allowlist;
pub mod args;
pub mod attach;
pub mod build;
pub mod cache;
pub mod keep;
pub mod levels;
pub mod merge;
pub mod minimize;
pub mod output;
pub mod report;
pub mod run;
pub mod sbom;
pub mod seccomp;
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
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Read and unpack images as if there were no image cache (run,
    /// verify, minimize and build use it; see `trace cache`).
    #[arg(long, global = true)]
    pub no_cache: bool,
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
    /// Write the SBOM of any image (CycloneDX or SPDX JSON).
    Sbom(sbom::SbomArgs),
    /// Show the cache of unpacked images, or prune it.
    Cache(cache::CacheArgs),
}

impl Command {
    /// Whether the subcommand may make cgroups, containers or temporary
    /// files, which a killed run leaves behind.
    pub fn makes_leftovers(&self) -> bool {
        matches!(
            self,
            Command::Run(_)
                | Command::Build(_)
                | Command::Verify(_)
                | Command::Minimize(_)
                | Command::Attach(_)
        )
    }

    /// Runs the subcommand; returns the exit status.
    pub async fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Run(args) => run::run(args).await,
            Command::Build(args) => build::run(args),
            Command::Verify(args) => verify::run(args).await,
            Command::Minimize(args) => minimize::run(args).await,
            Command::Attach(args) => attach::run(args).await,
            Command::Merge(args) => merge::run(args),
            Command::Allowlist(args) => allowlist::run(args),
            Command::Seccomp(args) => seccomp::run(args),
            Command::StructureTest(args) => structure::run(args),
            Command::Report(args) => report::run(args),
            Command::Sbom(args) => sbom::run(args),
            Command::Cache(args) => cache::run(args),
        }
    }
}

/// Limits on reading images, for every subcommand that reads one.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Refuse an image layer (or compressed image archive) that
    /// decompresses to more than SIZE (bytes, or with K, M, G, T).
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size,
          default_value_t = crate::source::decompress::DEFAULT_MAX_LAYER_BYTES)]
    pub max_layer_bytes: u64,
    /// Refuse a layer that decompresses to more than N times its
    /// compressed size (checked past its first GiB).
    #[arg(long, global = true, value_name = "N",
          default_value_t = crate::source::decompress::DEFAULT_MAX_LAYER_RATIO,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_layer_ratio: u64,
}

impl LimitArgs {
    pub fn limits(&self) -> crate::source::decompress::Limits {
        crate::source::decompress::Limits {
            max_bytes: self.max_layer_bytes,
            max_ratio: self.max_layer_ratio,
            ..Default::default()
        }
    }
}

/// `123`, `64K`, `10M`, `64G`, `1T` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        Some(b'T' | b't') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 512M or 64G)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
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
            &["sbom", "--from", "X", "--no-such-flag"],
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
                ..
            }) = parse(args)
            else {
                panic!("{args:?} did not parse as run");
            };
            assert_eq!(r.cmd.command, ["ls", "-l", "--color"]);
        }
        let Ok(Cli {
            command: super::Command::Minimize(m),
            ..
        }) = parse(&["minimize", "--image", "X", "-o", "Y", "--", "-weird", "--x"])
        else {
            panic!("minimize did not parse");
        };
        assert_eq!(m.cmd.command, ["-weird", "--x"]);
    }

    #[test]
    fn layer_limits_parse_sizes() {
        let c = parse(&[
            "build",
            "--from",
            "X",
            "-o",
            "Y",
            "--trace",
            "t",
            "--max-layer-bytes",
            "3M",
        ])
        .unwrap();
        assert_eq!(c.limits.max_layer_bytes, 3 << 20);
        assert_eq!(c.limits.max_layer_ratio, 200);
        assert_eq!(super::parse_size("64G"), Ok(64 << 30));
        assert_eq!(super::parse_size("17"), Ok(17));
        assert_eq!(
            super::parse_size("lots"),
            Err("\"lots\" is not a size (like 512M or 64G)".to_string())
        );
        assert!(super::parse_size("99999999999T").is_err());
        let err = parse(&["run", "--max-layer-ratio", "0", "--", "true"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    /// Every capturing subcommand takes the capture options, with the
    /// same defaults and the same checks.
    #[test]
    fn capture_options_are_shared() {
        use super::{Command, args::CaptureArgs};
        let extra = ["--btf", "/x/btf", "--ringbuf-size", "65536"];
        let cases: &[&[&str]] = &[
            &["run"],
            &["attach", "--pid", "1"],
            &["verify", "--image", "X"],
            &["minimize", "--image", "X", "-o", "Y"],
        ];
        let capture = |c: Cli| -> CaptureArgs {
            match c.command {
                Command::Run(a) => a.capture,
                Command::Attach(a) => a.capture,
                Command::Verify(a) => a.capture,
                Command::Minimize(a) => a.capture,
                _ => panic!("not a capturing subcommand"),
            }
        };
        for head in cases {
            let tail: &[&str] = if head[0] == "attach" {
                &[]
            } else {
                &["--", "true"]
            };
            let args: Vec<&str> = head.iter().chain(&extra).chain(tail).copied().collect();
            let c = capture(parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}")));
            assert_eq!((c.ringbuf_size, c.btf.to_str()), (65536, Some("/x/btf")));
            let args: Vec<&str> = head.iter().chain(tail).copied().collect();
            let c = capture(parse(&args).unwrap());
            let d = crate::session::CaptureSpec::default();
            assert_eq!((c.ringbuf_size, c.btf), (d.ringbuf_bytes, d.btf));
            let args: Vec<&str> = head
                .iter()
                .chain(&["--ringbuf-size", "5000"])
                .chain(tail)
                .copied()
                .collect();
            assert_eq!(parse(&args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }
}
