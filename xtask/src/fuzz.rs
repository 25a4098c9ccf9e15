//! `cargo xtask fuzz`: runs the cargo-fuzz targets in fuzz/ one after
//! another for a fixed time each, from a working corpus seeded with the
//! committed seeds, and tabulates executions, corpus size and crashes.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{Context, Result, bail};

use crate::cmd::{cargo, nightly_cargo, root, run, succeeds};

/// cargo-fuzz version installed when missing (pinned, `--locked`).
const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// The targets in fuzz/Cargo.toml, in the order they run.
pub const TARGETS: &[&str] = &[
    "layer_tar",
    "oci_archive",
    "docker_archive",
    "trace_json",
    "elf",
    "ldcache",
    "btf",
];

struct Outcome {
    target: String,
    executions: Option<u64>,
    corpus: usize,
    crashes: Vec<PathBuf>,
}

fn ensure_cargo_fuzz() -> Result<()> {
    if succeeds(nightly_cargo().args(["fuzz", "--version"])) {
        return Ok(());
    }
    run(cargo().args([
        "install",
        "--locked",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// libFuzzer's last words: `Done 123456 runs in 61 second(s)`.
fn executions(log: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix("Done ")?.split(' ').next()?.parse().ok())
}

fn fuzz_one(target: &str, seconds: u64) -> Result<Outcome> {
    let top = root();
    let corpus = top.join("target/fuzz-corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
    // The working corpus grows; the committed seeds stay as they are.
    for seed in files(&top.join("fuzz/seeds").join(target)) {
        if let Some(name) = seed.file_name() {
            let to = corpus.join(name);
            if !to.exists() {
                fs::copy(&seed, &to).with_context(|| format!("copy {}", seed.display()))?;
            }
        }
    }
    let artifacts = top.join("fuzz/artifacts").join(target);
    let before = files(&artifacts);
    let logs = top.join("target/fuzz-logs");
    fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    let log = fs::File::create(&log_path)?;
    eprintln!(
        "xtask: fuzzing {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let status = nightly_cargo()
        .args(["fuzz", "run", "-O", target])
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            // A single input taking this long is a hang, reported as a crash.
            "-timeout=10",
            "-rss_limit_mb=2048",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .context("cannot start cargo fuzz")?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let crashes: Vec<PathBuf> = files(&artifacts)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if !status.success() && crashes.is_empty() {
        bail!(
            "cargo fuzz run {target} failed ({status}); see {}",
            log_path.display()
        );
    }
    Ok(Outcome {
        target: target.to_string(),
        executions: executions(&text),
        corpus: files(&corpus).len(),
        crashes,
    })
}

pub fn fuzz(seconds: u64, only: Option<&str>) -> Result<()> {
    let targets: Vec<&str> = match only {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target {t:?}; targets: {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    ensure_cargo_fuzz()?;
    let mut outcomes = Vec::new();
    for t in targets {
        outcomes.push(fuzz_one(t, seconds)?);
    }
    println!(
        "{:<16} {:>8} {:>12} {:>8} {:>8}",
        "target", "seconds", "executions", "corpus", "crashes"
    );
    for o in &outcomes {
        let execs = o.executions.map_or("?".to_string(), |n| n.to_string());
        println!(
            "{:<16} {:>8} {:>12} {:>8} {:>8}",
            o.target,
            seconds,
            execs,
            o.corpus,
            o.crashes.len()
        );
        for c in &o.crashes {
            println!("  crash: {}", c.display());
        }
    }
    let crashed = outcomes.iter().filter(|o| !o.crashes.is_empty()).count();
    if crashed > 0 {
        bail!(
            "{crashed} target(s) crashed; reproduce with `cargo +nightly fuzz run <target> <file>`"
        );
    }
    Ok(())
}
