//! `cargo xtask bench`: what tracing costs. Each workload runs untraced,
//! under `trace run` (and under a second `trace` binary with `--against`,
//! strace and a naive bpftrace script when installed), alternating the
//! configurations round by round so a busy machine slows them alike; the
//! figures are medians of wall time and of CPU time (the whole process
//! tree's user + system time, which includes the eBPF programs'). Measures;
//! asserts nothing.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// The workload of the reference figures in the platform notes.
pub const WORKLOAD: &str = "tar cf /dev/null /usr/share/doc /usr/lib/python3 && \
/usr/bin/python3 -c 'import json, email.parser, http.client, xml.dom.minidom, sqlite3, asyncio, unittest, decimal'";

/// A real project's own unittest suite: modules of CPython's test suite
/// (Debian's libpython3.11-testsuite), a few seconds of imports, file
/// access and computation.
pub const PYTHON_SUITE: &[&str] = &[
    "/usr/bin/python3",
    "-m",
    "unittest",
    "-q",
    "test.test_json",
    "test.test_csv",
    "test.test_argparse",
    "test.test_configparser",
    "test.test_difflib",
    "test.test_textwrap",
    "test.test_pathlib",
];

/// One run's cost.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    wall: Duration,
    cpu: Duration,
    /// Largest resident set of the process tree, KiB.
    max_rss_kib: u64,
}

/// Runs `argv` to completion; its wall time, and the CPU time and peak RSS
/// of its whole tree from wait4.
fn run_once(argv: &[String]) -> Result<Cost> {
    run_once_with(argv, &[])
}

/// [`run_once`] with extra environment variables.
fn run_once_with(argv: &[String], env: &[(&str, &str)]) -> Result<Cost> {
    let start = Instant::now();
    // In the temp dir: CPython's tests leave `@test_*_tmp` directories in
    // their cwd when a run is cut short.
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().copied())
        .current_dir(std::env::temp_dir())
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", argv[0]))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    if r != pid {
        bail!(
            "waiting for {}: {}",
            argv[0],
            std::io::Error::last_os_error()
        );
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{} failed (wait status {status})", argv.join(" "));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Cost {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A way to run a workload: a name and the words put before it.
struct Config {
    name: String,
    prefix: Vec<String>,
    /// The workload goes after the prefix as one word naming a script
    /// that runs it (`bpftrace -c "sh SCRIPT"` splits on spaces itself).
    one_word: bool,
}

/// A script in `work` that runs `argv`, for tools that take one command
/// line and split it on spaces.
fn as_script(work: &Path, argv: &[String]) -> Result<String> {
    let line: Vec<String> = argv
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let script = work.join(format!("workload-{}.sh", argv.len()));
    std::fs::write(&script, format!("exec {}\n", line.join(" ")))?;
    Ok(format!("/bin/sh {}", script.display()))
}

fn trace_config(name: &str, bin: &Path, out: &Path) -> Config {
    Config {
        name: name.to_string(),
        prefix: vec![
            bin.display().to_string(),
            "run".into(),
            "-o".into(),
            out.display().to_string(),
            "--".into(),
        ],
        one_word: false,
    }
}

/// The bpftrace script of the platform notes' reference figure: print
/// every open, stat and exec with its result.
const BPFTRACE: &str = "tracepoint:syscalls:sys_enter_openat,tracepoint:syscalls:sys_enter_newfstatat,tracepoint:syscalls:sys_enter_execve { @p[tid] = args->filename; } tracepoint:syscalls:sys_exit_openat,tracepoint:syscalls:sys_exit_newfstatat,tracepoint:syscalls:sys_exit_execve /@p[tid]/ { printf(\"%d %s %d\\n\", pid, str(@p[tid]), args->ret); delete(@p[tid]); }";

/// Untraced, traced (and the rest), `runs` rounds alternating.
fn compare(
    label: &str,
    workload: &[String],
    configs: &[Config],
    runs: usize,
    work: &Path,
) -> Result<()> {
    // One untraced run first, to warm the page cache.
    run_once(workload)?;
    let mut costs: Vec<Vec<Cost>> = vec![Vec::new(); configs.len() + 1];
    for _ in 0..runs {
        costs[0].push(run_once(workload)?);
        for (i, c) in configs.iter().enumerate() {
            let mut argv = c.prefix.clone();
            if c.one_word {
                argv.push(as_script(work, workload)?);
            } else {
                argv.extend(workload.iter().cloned());
            }
            costs[i + 1].push(run_once(&argv)?);
        }
    }
    let summary = |c: &[Cost]| {
        (
            median(c.iter().map(|x| x.wall).collect()),
            median(c.iter().map(|x| x.cpu).collect()),
        )
    };
    let (base_wall, base_cpu) = summary(&costs[0]);
    println!("{label}: median of {runs}, wall / CPU (user+sys of the whole tree)");
    println!(
        "  {:<14} {:>8.3} s          {:>8.3} s",
        "untraced",
        base_wall.as_secs_f64(),
        base_cpu.as_secs_f64()
    );
    for (i, c) in configs.iter().enumerate() {
        let (w, cpu) = summary(&costs[i + 1]);
        println!(
            "  {:<14} {:>8.3} s {:>6.3}x  {:>8.3} s {:>6.3}x",
            c.name,
            w.as_secs_f64(),
            w.as_secs_f64() / base_wall.as_secs_f64(),
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / base_cpu.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

/// The fixed cost: `trace run -- true` minus untraced `true`, with the
/// programs kept loaded by the run before (what a user's second and later
/// runs cost), and loaded afresh every time (`TRACE_KEEP_PROGRAMS=0`:
/// what the first run of a boot costs).
fn fixed_cost(bins: &[(String, PathBuf)], out: &Path, runs: usize) -> Result<()> {
    let t = |argv: &[String], env: &[(&str, &str)]| run_once_with(argv, env).map(|c| c.wall);
    let truth = vec!["/usr/bin/true".to_string()];
    let modes: [(&str, &[(&str, &str)]); 2] =
        [("kept", &[]), ("fresh", &[("TRACE_KEEP_PROGRAMS", "0")])];
    let mut base = Vec::new();
    let mut per: Vec<Vec<Duration>> = vec![Vec::new(); bins.len() * modes.len()];
    for _ in 0..runs {
        base.push(t(&truth, &[])?);
        for (i, (_, bin)) in bins.iter().enumerate() {
            let mut argv = trace_config("", bin, out).prefix;
            argv.push("/usr/bin/true".into());
            for (m, (_, env)) in modes.iter().enumerate() {
                per[i * modes.len() + m].push(t(&argv, env)?);
            }
        }
    }
    let base = median(base);
    println!("fixed cost: `trace run -- true` minus untraced `true`, median of {runs}");
    for (i, (name, _)) in bins.iter().enumerate() {
        for (m, (mode, _)) in modes.iter().enumerate() {
            let med = median(per[i * modes.len() + m].clone());
            println!(
                "  {:<14} {:>8.1} ms  (programs {mode})",
                name,
                (med.as_secs_f64() - base.as_secs_f64()) * 1000.0
            );
        }
    }
    Ok(())
}

/// A C program that opens `n` distinct paths, split over `procs`
/// processes, as fast as it can (they do not exist: each is a distinct
/// failed open, which is what a record costs without the disk).
const OPENS_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]); int procs = atoi(argv[2]);
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            char path[64];
            for (long i = p; i < n; i += procs) {
                snprintf(path, sizeof path, "/nonexistent-trace-bench/%ld", i);
                open(path, O_RDONLY);
            }
            _exit(0);
        }
    }
    while (wait(NULL) > 0) {}
    return 0;
}
"#;

fn opens_at_scale(bins: &[(String, PathBuf)], work: &Path) -> Result<()> {
    let src = work.join("opens.c");
    let exe = work.join("opens");
    std::fs::write(&src, OPENS_C)?;
    let ok = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .context("gcc")?;
    if !ok.success() {
        bail!("gcc failed on the scale benchmark");
    }
    println!("1M distinct opens from 2 processes at full speed, default ring buffer:");
    for (name, bin) in bins {
        let out = work.join(format!("scale-{name}.json"));
        let argv = vec![
            bin.display().to_string(),
            "run".into(),
            "-o".into(),
            out.display().to_string(),
            "--".into(),
            exe.display().to_string(),
            "1000000".into(),
            "2".into(),
        ];
        let c = run_once(&argv)?;
        let s = serde_like::summary(&out)?;
        println!(
            "  {:<14} {:>8.3} s   {} records, {} lost, trace peak RSS {:.1} MiB",
            name,
            c.wall.as_secs_f64(),
            s.records,
            s.lost,
            c.max_rss_kib as f64 / 1024.0
        );
        let _ = std::fs::remove_file(&out);
    }
    Ok(())
}

/// `against`: a second trace binary measured alternately with the first
/// (the build before a change, say).
pub fn bench(trace_bin: &Path, against: Option<&Path>, runs: usize) -> Result<()> {
    let runs = runs.max(1);
    let work = std::env::temp_dir().join(format!("trace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut bins = vec![("trace".to_string(), trace_bin.to_path_buf())];
    if let Some(a) = against {
        bins.push(("against".to_string(), a.to_path_buf()));
    }
    let mut configs: Vec<Config> = bins
        .iter()
        .map(|(name, bin)| trace_config(name, bin, &work.join(format!("{name}.json"))))
        .collect();
    let result = (|| {
        fixed_cost(&bins, &work.join("fixed.json"), runs * 2)?;
        let reference: Vec<String> = ["sh", "-c", WORKLOAD].map(String::from).to_vec();
        let mut with_tools: Vec<Config> = Vec::new();
        if Path::new("/usr/bin/strace").exists() {
            with_tools.push(Config {
                name: "strace".into(),
                prefix: [
                    "/usr/bin/strace",
                    "-f",
                    "-e",
                    "trace=%file,execve",
                    "-o",
                    "/dev/null",
                ]
                .map(String::from)
                .to_vec(),
                one_word: false,
            });
        }
        // bpftrace's tracepoint probes need tracefs.
        if !Path::new("/sys/kernel/tracing/events").exists() {
            let _ = Command::new("mount")
                .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
                .status();
        }
        if Path::new("/usr/bin/bpftrace").exists() {
            with_tools.push(Config {
                name: "bpftrace".into(),
                prefix: vec![
                    "/usr/bin/bpftrace".into(),
                    "-q".into(),
                    "-e".into(),
                    BPFTRACE.into(),
                    "-c".into(),
                ],
                one_word: true,
            });
        }
        configs.extend(with_tools);
        println!("reference workload: {WORKLOAD}");
        compare("reference workload", &reference, &configs, runs, &work)?;
        configs.retain(|c| c.name != "bpftrace");
        let suite: Vec<String> = PYTHON_SUITE.iter().map(|s| s.to_string()).collect();
        println!(
            "python suite: {} (CPython's own tests)",
            PYTHON_SUITE[4..].join(" ")
        );
        compare("python suite", &suite, &configs, runs, &work)?;
        opens_at_scale(&bins, &work)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Just enough of the trace file to print its counters, without making
/// xtask depend on the tracer crate (which would build the eBPF object).
mod serde_like {
    use std::path::Path;

    use anyhow::{Context, Result};
    use serde::Deserialize;

    pub struct Summary {
        pub records: u64,
        pub lost: u64,
    }

    #[derive(Deserialize)]
    struct Counters {
        records: u64,
    }

    #[derive(Deserialize)]
    struct Lost {
        total: u64,
    }

    /// The two figures, read from the stream: the files are skipped, not
    /// kept. (Reading the whole 1M-file trace into memory made this
    /// process 284 MiB, and every child spawned after that reported it as
    /// its own peak RSS: the kernel counts the memory a child leaves at
    /// exec.)
    #[derive(Deserialize)]
    struct Head {
        counters: Counters,
        lost_events: Lost,
    }

    pub fn summary(path: &Path) -> Result<Summary> {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let head: Head = serde_json::from_reader(std::io::BufReader::new(file))
            .with_context(|| format!("parsing {}", path.display()))?;
        Ok(Summary {
            records: head.counters.records,
            lost: head.lost_events.total,
        })
    }
}
