//! `cargo xtask bench`: the open-heavy reference workload, untraced and
//! under `trace run` (and under strace when installed), median wall time
//! of several runs. Measures; asserts nothing.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// The workload of the reference figures in the platform notes.
pub const WORKLOAD: &str = "tar cf /dev/null /usr/share/doc /usr/lib/python3 && \
/usr/bin/python3 -c 'import json, email.parser, http.client, xml.dom.minidom, sqlite3, asyncio, unittest, decimal'";

fn time_once(argv: &[&str]) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .env_remove("LD_LIBRARY_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", argv[0]))?;
    let took = start.elapsed();
    if !status.success() {
        bail!("{} exited with {status}", argv.join(" "));
    }
    Ok(took)
}

fn median(argv: &[&str], runs: usize) -> Result<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(time_once(argv)?);
    }
    times.sort();
    Ok(times[runs / 2])
}

pub fn bench(trace_bin: &Path, runs: usize) -> Result<()> {
    let runs = runs.max(1);
    let trace = trace_bin.to_string_lossy().into_owned();
    let out = std::env::temp_dir().join(format!("trace-bench-{}.json", std::process::id()));
    let out_s = out.to_string_lossy().into_owned();
    let untraced = ["sh", "-c", WORKLOAD];
    let traced = [
        trace.as_str(),
        "run",
        "-o",
        out_s.as_str(),
        "--",
        "sh",
        "-c",
        WORKLOAD,
    ];
    // Warm the page cache so the first measured run is not the slow one.
    time_once(&untraced)?;
    let base = median(&untraced, runs)?;
    let with_trace = median(&traced, runs)?;
    let t: serde_like::Summary = serde_like::summary(&out)?;
    // What any run costs, however small the command: loading and
    // verifying the eBPF programs, the cgroup, writing the trace.
    let fixed = median(
        &[trace.as_str(), "run", "-o", out_s.as_str(), "--", "true"],
        runs,
    )?;
    let _ = std::fs::remove_file(&out);
    println!("workload: {WORKLOAD}");
    println!("runs: {runs} each, median wall time");
    println!("untraced:    {:>8.3} s", base.as_secs_f64());
    println!(
        "trace run:   {:>8.3} s   ({:.2}x)   {} syscalls seen, {} records, {} lost",
        with_trace.as_secs_f64(),
        with_trace.as_secs_f64() / base.as_secs_f64(),
        t.seen,
        t.records,
        t.lost
    );
    let marginal = with_trace.as_secs_f64() - fixed.as_secs_f64();
    println!(
        "fixed cost:  {:>8.3} s   (trace run -- true: start-up and teardown)",
        fixed.as_secs_f64()
    );
    println!(
        "marginal:    {:>8.3} s   ({:.2}x: traced minus the fixed cost, over untraced)",
        marginal,
        marginal / base.as_secs_f64()
    );
    if Path::new("/usr/bin/strace").exists() {
        let strace = [
            "strace",
            "-f",
            "-e",
            "trace=%file,execve",
            "-o",
            "/dev/null",
            "sh",
            "-c",
            WORKLOAD,
        ];
        let s = median(&strace, runs)?;
        println!(
            "strace:      {:>8.3} s   ({:.2}x)",
            s.as_secs_f64(),
            s.as_secs_f64() / base.as_secs_f64()
        );
    }
    Ok(())
}

/// Traces a python script chrooted into `rootfs`, then times `trace
/// build` of a minimal OCI image from it.
pub fn bench_build(trace_bin: &Path, rootfs: &Path, runs: usize) -> Result<()> {
    let runs = runs.max(1);
    let work = std::env::temp_dir().join(format!("trace-bench-build-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let trace = work.join("trace.json");
    let script = "import json, email.parser, http.client, decimal, sqlite3;                   open('/usr/share/common-licenses/Apache-2.0').read()";
    let status = Command::new(trace_bin)
        .arg("run")
        .arg("--root")
        .arg(rootfs)
        .arg("-o")
        .arg(&trace)
        .args(["--", "/usr/bin/python3", "-c", script])
        .env_remove("LD_LIBRARY_PATH")
        .status()?;
    if !status.success() {
        bail!("tracing the python script failed: {status}");
    }
    let mut times = Vec::new();
    let report = work.join("report.json");
    for i in 0..runs {
        let out = work.join(format!("min-{i}.oci"));
        let start = Instant::now();
        let status = Command::new(trace_bin)
            .arg("build")
            .arg("--from")
            .arg(rootfs)
            .arg("--trace")
            .arg(&trace)
            .arg("-o")
            .arg(&out)
            .arg("--report")
            .arg(&report)
            .stderr(Stdio::null())
            .status()?;
        times.push(start.elapsed());
        if !status.success() {
            bail!("trace build failed: {status}");
        }
        std::fs::remove_dir_all(&out)?;
    }
    times.sort();
    let text = std::fs::read_to_string(&report)?;
    let bytes: Vec<u64> = text
        .match_indices("\"bytes\":")
        .filter_map(|(i, _)| {
            text[i + 8..]
                .trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect();
    let _ = std::fs::remove_dir_all(&work);
    println!("source: {} (python3 rootfs)", rootfs.display());
    println!(
        "trace build, median of {runs}: {:.3} s",
        times[runs / 2].as_secs_f64()
    );
    if let [before, after, ..] = bytes[..] {
        println!(
            "size: {:.1} MiB -> {:.1} MiB ({:.1}x smaller)",
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            before as f64 / after.max(1) as f64
        );
    }
    Ok(())
}

/// Just enough of the trace file to print its counters, without making
/// xtask depend on the tracer crate (which would build the eBPF object).
mod serde_like {
    use std::path::Path;

    use anyhow::{Context, Result};

    pub struct Summary {
        pub seen: u64,
        pub records: u64,
        pub lost: u64,
    }

    fn number_after(text: &str, key: &str) -> u64 {
        text.find(&format!("\"{key}\""))
            .and_then(|i| text[i..].split(':').nth(1))
            .map(|v| v.trim().trim_end_matches([',', '}']).trim())
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn summary(path: &Path) -> Result<Summary> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Summary {
            seen: number_after(&text, "syscalls_seen"),
            records: number_after(&text, "records"),
            lost: number_after(&text, "total"),
        })
    }
}
