//! `cargo xtask <command>`: set-up, tests, demo and benchmark for `trace`.
//! Every command does its own set-up first, so each works on a fresh
//! machine.
mod bench;
mod bench_image;
mod cmd;
mod cross;
mod fixtures;
mod fuzz;
mod setup;
mod soak;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cmd::{cargo, nightly_cargo, root, run};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Set up, check formatting and lints, and run every test (as root).
    Test {
        /// Extra arguments for `cargo test` (a test name filter, ...).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Make (or reuse) the cached image fixtures the tests use.
    Fixtures,
    /// Set up, build, and trace the demo test suite shipped in examples/.
    Demo,
    /// Set up, build (release) and measure what tracing costs: the fixed
    /// cost, the reference workload, a Python suite, 1M opens, then the
    /// image rows (build, run --image, minimize).
    Bench {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also measure this `trace` binary, alternating with the new one
        /// (for example the release build of the commit before a change).
        #[arg(long, value_name = "TRACE_BIN")]
        against: Option<PathBuf>,
    },
    /// Run each cargo-fuzz target (fuzz/) for some seconds, one after
    /// another; fails when any crashes. Needs nightly (not run in CI).
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
    },
    /// Build (release) and run `trace attach` on a process tree that
    /// creates, opens and deletes files continuously; report trace's
    /// memory over time, its records and lost events.
    Soak {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        /// Files created (and opened, and deleted) per second, in all.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
    },
    /// Only the image rows of `bench`: `trace build`, `run --image` and
    /// `minimize` of the Debian python3 fixture, first time and cached.
    BenchImage {
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

/// The Debian python3 rootfs and its docker archive (made if missing).
fn image_fixtures() -> Result<bench_image::Fixtures> {
    let (_, _, docker_archive) = fixtures::debian_images()?;
    Ok(bench_image::Fixtures {
        rootfs: fixtures::debian_rootfs()?,
        docker_archive,
    })
}

fn trace_bin(profile: &str) -> PathBuf {
    root().join("target").join(profile).join("trace")
}

fn build_release() -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "tracer",
        "--bin",
        "trace",
    ]))
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::setup(&[]),
        Task::Fixtures => {
            setup::setup(setup::TEST_PACKAGES)?;
            fixtures::ensure_all()?;
            println!("{}", fixtures::cache_dir().display());
            Ok(())
        }
        Task::Test { args } => {
            setup::setup(setup::TEST_PACKAGES)?;
            fixtures::ensure_all()?;
            run(cargo().args(["fmt", "--all", "--check"]))?;
            run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
            // The library builds without the command line (no clap).
            run(cargo().args([
                "clippy",
                "--package",
                "tracer",
                "--lib",
                "--no-default-features",
                "--",
                "-D",
                "warnings",
            ]))?;
            // The eBPF crate lints for the bpf target, with the cfg that
            // aya-build passes, in its own target dir (other flags).
            run(nightly_cargo()
                .env(
                    "RUSTFLAGS",
                    format!("--cfg bpf_target_arch=\"{}\"", std::env::consts::ARCH),
                )
                .args([
                    "clippy",
                    "--package",
                    "tracer-ebpf",
                    "--release",
                    "--target",
                    "bpfel-unknown-none",
                    "-Z",
                    "build-std=core",
                    "--target-dir",
                    "target/ebpf-clippy",
                    "--",
                    "-D",
                    "warnings",
                ]))?;
            run(cargo().args(["build", "--package", "tracer", "--bin", "trace"]))?;
            let (sbom_python, cdxgen, node) = setup::sbom_tools()?;
            cmd::run_tests(
                cargo()
                    .env("TRACE_BIN", trace_bin("debug"))
                    .env("TRACE_FIXTURES", fixtures::cache_dir())
                    .env("TRACE_CST", setup::container_structure_test()?)
                    .env("TRACE_SBOM_PYTHON", sbom_python)
                    .env("TRACE_CDXGEN", cdxgen)
                    .env("TRACE_NODE", node)
                    .arg("test")
                    .args(&args),
            )?;
            // A filtered run is for one test here; the arm64 pass is whole.
            if args.is_empty() {
                cross::rust_std()?;
                cross::build_and_test()?;
            }
            Ok(())
        }
        Task::Demo => {
            setup::setup(&[])?;
            build_release()?;
            let demo = root().join("examples").join("demo-suite.sh");
            // `cargo run` puts target/ on LD_LIBRARY_PATH; the demo should
            // show what the suite itself looks up, not cargo's additions.
            run(std::process::Command::new(trace_bin("release"))
                .env_remove("LD_LIBRARY_PATH")
                .current_dir(root())
                .args(["run", "--format", "text", "--"])
                .arg(demo))
        }
        Task::Fuzz { seconds, target } => fuzz::fuzz(seconds, target.as_deref()),
        Task::Soak { minutes, rate } => {
            setup::setup(&[("gcc", "/usr/bin/gcc")])?;
            build_release()?;
            soak::soak(&trace_bin("release"), minutes, rate)
        }
        Task::BenchImage { runs } => {
            setup::setup(setup::TEST_PACKAGES)?;
            build_release()?;
            bench_image::images(&trace_bin("release"), &image_fixtures()?, runs)
        }
        Task::Bench { runs, against } => {
            setup::setup(&[
                ("strace", "/usr/bin/strace"),
                ("bpftrace", "/usr/bin/bpftrace"),
                ("gcc", "/usr/bin/gcc"),
                (
                    "libpython3.11-testsuite",
                    "/usr/lib/python3.11/test/test_json/__init__.py",
                ),
            ])?;
            setup::setup(setup::TEST_PACKAGES)?;
            build_release()?;
            bench::bench(&trace_bin("release"), against.as_deref(), runs)?;
            bench_image::images(&trace_bin("release"), &image_fixtures()?, runs)
        }
    }
}
