//! `cargo xtask soak`: `trace attach` on a process tree that creates,
//! opens and deletes thousands of distinct files a second, for minutes;
//! samples trace's resident memory, then reports it with the trace's
//! record and lost-event counts. Fails when memory keeps growing after
//! the warm-up.
use std::{
    collections::BTreeMap,
    fs,
    io::Read,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::cmd::{root, run};

/// How often trace's memory is sampled.
const SAMPLE: Duration = Duration::from_secs(5);
/// Memory after the warm-up may exceed its level just after the warm-up
/// by this fraction plus [`SLACK_KB`] (allocator noise) and no more.
const MARGIN: f64 = 0.20;
const SLACK_KB: u64 = 8 << 10;

/// What the soak reads back from the trace file; `files` is counted, not
/// held (a soak's trace names millions of files).
#[derive(Deserialize)]
struct TraceCounts {
    lost_events: Lost,
    counters: Counters,
    files: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Lost {
    total: u64,
    by_cause: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct Counters {
    syscalls_seen: u64,
    records: u64,
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we have not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// Waits for `child` at most `limit`; kills it past that.
fn wait_for(child: &mut Child, what: &str, limit: Duration) -> Result<std::process::ExitStatus> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not stop within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn soak(trace_bin: &Path, minutes: u64, rate: u64) -> Result<()> {
    let out = root().join("target/soak");
    fs::create_dir_all(&out)?;
    let workload_bin = out.join("soak_files");
    run(Command::new("gcc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&workload_bin)
        .arg(root().join("tests/programs/soak_files.c")))?;
    let work = tempfile::Builder::new()
        .prefix("trace-soak-")
        .tempdir()
        .context("temporary directory")?;
    let trace_json = out.join("trace.json");
    let trace_log = out.join("trace.log");

    let mut workload = Command::new(&workload_bin)
        .arg(work.path())
        .args(["2", &rate.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the workload")?;
    let mut trace = match Command::new(trace_bin)
        .args(["attach", "--pid", &workload.id().to_string(), "-o"])
        .arg(&trace_json)
        .stderr(fs::File::create(&trace_log)?)
        .spawn()
    {
        Ok(t) => t,
        Err(e) => {
            let _ = workload.kill();
            let _ = workload.wait();
            return Err(e).context("cannot start trace");
        }
    };
    eprintln!(
        "xtask: soak: {rate} files/s for {minutes} min; trace pid {}, log {}",
        trace.id(),
        trace_log.display()
    );
    let total = Duration::from_secs(minutes * 60);
    let start = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut failure = None;
    while start.elapsed() < total {
        std::thread::sleep(SAMPLE);
        if trace.try_wait()?.is_some() {
            failure = Some("trace exited before the end of the soak");
            break;
        }
        if let Some(kb) = rss_kb(trace.id()) {
            samples.push((start.elapsed().as_secs(), kb));
        }
    }
    // Stop trace first, in the middle of the flood, as Ctrl-C would.
    signal(&trace, libc::SIGINT);
    let trace_status = wait_for(&mut trace, "trace", Duration::from_secs(600))?;
    signal(&workload, libc::SIGTERM);
    let workload_status = wait_for(&mut workload, "the workload", Duration::from_secs(30))?;
    let mut created = String::new();
    if let Some(mut o) = workload.stdout.take() {
        o.read_to_string(&mut created)?;
    }
    if let Some(why) = failure {
        bail!("{why}; see {}", trace_log.display());
    }
    if !trace_status.success() {
        bail!(
            "trace attach failed ({trace_status}); see {}",
            trace_log.display()
        );
    }
    if !workload_status.success() {
        bail!("the workload failed ({workload_status})");
    }
    let counts: TraceCounts = serde_json::from_reader(std::io::BufReader::new(
        fs::File::open(&trace_json).with_context(|| format!("reading {}", trace_json.display()))?,
    ))
    .with_context(|| format!("parsing {}", trace_json.display()))?;
    // Close to a gigabyte for ten minutes: not worth keeping once counted.
    let _ = fs::remove_file(&trace_json);

    println!("minute  trace RSS (MiB, max of the minute's samples)");
    for m in 0..minutes.max(1) {
        let max = samples
            .iter()
            .filter(|(s, _)| s / 60 == m)
            .map(|(_, kb)| *kb)
            .max();
        if let Some(kb) = max {
            println!("{:>6}  {:>8.1}", m + 1, kb as f64 / 1024.0);
        }
    }
    // The workload runs on for a moment after trace has stopped.
    println!("files created by the workload: {}", created.trim());
    println!("files in the trace:            {}", counts.files.len());
    println!(
        "syscalls seen:                 {}",
        counts.counters.syscalls_seen
    );
    println!("records:                       {}", counts.counters.records);
    let causes: Vec<String> = counts
        .lost_events
        .by_cause
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    println!(
        "lost events:                   {}{}",
        counts.lost_events.total,
        if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(", "))
        }
    );

    // Warm-up: the first fifth of the soak, at least a minute. The level
    // is the highest sample of the minute after it; every later sample
    // must stay within the margin of that level.
    let warm = (total.as_secs() / 5).max(60);
    let level = samples
        .iter()
        .filter(|(s, _)| *s >= warm && *s < warm + 60)
        .map(|(_, kb)| *kb)
        .max();
    let Some(level) = level else {
        bail!("the soak is too short to judge memory: run it for at least 3 minutes");
    };
    let limit = (level as f64 * (1.0 + MARGIN)) as u64 + SLACK_KB;
    let peak = samples
        .iter()
        .filter(|(s, _)| *s >= warm)
        .map(|(_, kb)| *kb)
        .max()
        .unwrap_or(level);
    println!(
        "after the {warm} s warm-up: level {:.1} MiB, peak {:.1} MiB, limit {:.1} MiB (+{:.0}% + {} MiB)",
        level as f64 / 1024.0,
        peak as f64 / 1024.0,
        limit as f64 / 1024.0,
        MARGIN * 100.0,
        SLACK_KB / 1024
    );
    if peak > limit {
        bail!("trace's memory kept growing after the warm-up");
    }
    Ok(())
}
