//! arm64: `trace` cross-built for `aarch64-unknown-linux-gnu` (its eBPF
//! object too: aya-build builds it with `bpf_target_arch="aarch64"`), and
//! the userspace unit tests run under `qemu-aarch64-static`.
//!
//! Linked with clang and lld against Debian's arm64 cross libc, not with
//! `gcc-aarch64-linux-gnu`: Debian's gcc cross compilers conflict with
//! `gcc-multilib`, which the ia32 capture tests need. Linked statically,
//! so qemu needs no `-L` sysroot (which would also remap the tests' `/`).
//! The eBPF tests need an arm64 kernel and stay x86_64-only here.
use std::process::Command;

use anyhow::{Context, Result};

use crate::cmd::{cargo, output, run, run_tests};

pub const TARGET: &str = "aarch64-unknown-linux-gnu";

/// The Rust standard library for the target, for the toolchain building
/// the workspace.
pub fn rust_std() -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed to add the arm64 standard library")?;
    if !installed.lines().any(|l| l.trim() == TARGET) {
        run(Command::new("rustup").args(["target", "add", TARGET]))?;
    }
    Ok(())
}

fn cross_cargo() -> Command {
    let mut c = cargo();
    c.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "clang")
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static -C link-arg=--target=aarch64-linux-gnu -C link-arg=-fuse-ld=lld",
        )
        .env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
            "qemu-aarch64-static",
        );
    c
}

/// Builds `trace` for arm64, checks what came out, runs the unit tests.
pub fn build_and_test() -> Result<()> {
    run(cross_cargo().args([
        "build",
        "--package",
        "tracer",
        "--bin",
        "trace",
        "--target",
        TARGET,
    ]))?;
    let bin = crate::cmd::root()
        .join("target")
        .join(TARGET)
        .join("debug")
        .join("trace");
    // An ELF for the right machine (e_machine 183, EM_AARCH64), that runs.
    let head = std::fs::read(&bin).with_context(|| format!("reading {}", bin.display()))?;
    anyhow::ensure!(
        head.get(..4) == Some(b"\x7fELF") && head.get(18..20) == Some(&183u16.to_le_bytes()[..]),
        "{} is not an arm64 ELF executable",
        bin.display()
    );
    run(Command::new("qemu-aarch64-static")
        .arg(&bin)
        .arg("--version"))?;
    run_tests(cross_cargo().args([
        "test",
        "--package",
        "tracer",
        "--package",
        "tracer-common",
        "--lib",
        "--target",
        TARGET,
    ]))
}
