//! The image rows of `cargo xtask bench`: `trace build` from a rootfs
//! directory and from a docker archive, `trace run --image`, and `trace
//! minimize`, each the first time (an empty image cache) and again (its
//! layers cached). Medians of wall time; asserts nothing.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// The test `minimize` runs twice (traced in the full image, then in the
/// minimal one): small, so the figure is mostly trace's own work.
const TEST: &[&str] = &["/usr/bin/python3", "-c", "import json"];

/// What the traced script of the build rows uses.
const SCRIPT: &str = "import json, email.parser, http.client, decimal, sqlite3; \
open('/usr/share/common-licenses/Apache-2.0').read()";

pub struct Fixtures {
    pub rootfs: PathBuf,
    pub docker_archive: PathBuf,
}

/// Runs `trace` with `args`, `TRACE_CACHE_DIR` set to `cache`; its wall
/// time.
fn timed(trace: &Path, args: &[&str], cache: &Path) -> Result<Duration> {
    let start = Instant::now();
    let out = Command::new(trace)
        .args(args)
        .env("TRACE_CACHE_DIR", cache)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", trace.display()))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "trace {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn clear(p: &Path) -> Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p).with_context(|| format!("removing {}", p.display()))?;
    } else if p.exists() {
        std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Files `minimize -o out` writes next to its image.
fn clear_minimized(out: &Path) -> Result<()> {
    clear(out)?;
    for ext in ["trace.json", "verify.json", "report.json", "cdx.json"] {
        clear(&PathBuf::from(format!("{}.{ext}", out.display())))?;
    }
    Ok(())
}

fn row(label: &str, first: Option<Duration>, again: Duration) {
    match first {
        Some(f) => println!(
            "  {label:<34} {:>7.3} s first time   {:>7.3} s cached",
            f.as_secs_f64(),
            again.as_secs_f64()
        ),
        None => println!("  {label:<34} {:>7.3} s", again.as_secs_f64()),
    }
}

pub fn images(trace: &Path, fx: &Fixtures, runs: usize) -> Result<()> {
    let runs = runs.max(1);
    let work = std::env::temp_dir().join(format!("trace-bench-image-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = measure(trace, fx, runs, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn measure(trace: &Path, fx: &Fixtures, runs: usize, work: &Path) -> Result<()> {
    let cache = work.join("cache");
    let s = |p: &Path| p.display().to_string();
    let (rootfs, archive) = (s(&fx.rootfs), s(&fx.docker_archive));
    let trace_json = s(&work.join("trace.json"));
    let mut args = vec!["run", "--root", &rootfs, "-o", &trace_json, "--"];
    args.extend(["/usr/bin/python3", "-c", SCRIPT]);
    timed(trace, &args, &cache)?;
    let size = std::fs::metadata(&fx.docker_archive)
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "images: {} ({:.0} MiB), its rootfs directory; median of {runs}",
        fx.docker_archive.display(),
        size as f64 / 1048576.0
    );

    // build: the python script's closure.
    let out = work.join("min.oci");
    let out_s = s(&out);
    let build = |from: &str, extra: &[&str]| -> Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..runs {
            clear(&out)?;
            let mut a = vec![
                "build",
                "--from",
                from,
                "--trace",
                &trace_json,
                "-o",
                &out_s,
            ];
            a.extend(extra);
            times.push(timed(trace, &a, &cache)?);
        }
        Ok(median(times))
    };
    row("trace build, rootfs directory", None, build(&rootfs, &[])?);
    let first = build(&archive, &["--no-cache"])?;
    // A run fills the cache (a build only reads it).
    let ri = s(&work.join("ri.json"));
    let fill = ["run", "--image", &archive, "-o", &ri, "--", "/bin/true"];
    timed(trace, &fill, &cache)?;
    row(
        "trace build, docker-archive",
        Some(first),
        build(&archive, &[])?,
    );

    // "First time" runs each get an empty cache of their own, all removed
    // at the end: an unpack right after a removal of the same size is
    // slowed by the filesystem (ext4 skips inodes freed moments ago), which
    // a user's first run does not meet.
    let fresh = std::cell::Cell::new(0);
    let cache_for = |first: bool| {
        if first {
            fresh.set(fresh.get() + 1);
            work.join(format!("fresh-cache-{}", fresh.get()))
        } else {
            cache.clone()
        }
    };

    // run --image: unpacking (or finding) the image, a container, /bin/true.
    let run_image = |first: bool| -> Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..runs {
            let a = ["run", "--image", &archive, "-o", &ri, "--", "/bin/true"];
            times.push(timed(trace, &a, &cache_for(first))?);
        }
        Ok(median(times))
    };
    let first = run_image(true)?;
    row(
        "trace run --image -- /bin/true",
        Some(first),
        run_image(false)?,
    );

    // minimize, minus its two test runs (the test's own time, untraced,
    // chrooted into the same tree).
    let mut test = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let st = Command::new("chroot")
            .arg(&fx.rootfs)
            .args(TEST)
            .stdout(Stdio::null())
            .status()?;
        test.push(start.elapsed());
        if !st.success() {
            bail!("the minimize test failed untraced: {st}");
        }
    }
    let test = median(test);
    let min = work.join("min.tar");
    let min_s = s(&min);
    let minimize = |first: bool| -> Result<Duration> {
        let mut times = Vec::new();
        for _ in 0..runs {
            clear_minimized(&min)?;
            let mut a = vec!["minimize", "--image", &archive, "-o", &min_s, "--"];
            a.extend(TEST);
            times.push(timed(trace, &a, &cache_for(first))?);
        }
        Ok(median(times))
    };
    let (first, again) = (minimize(true)?, minimize(false)?);
    row("trace minimize (whole)", Some(first), again);
    let net = |d: Duration| d.saturating_sub(test * 2);
    row(
        &format!(
            "  minus 2 x the test ({:.0} ms)",
            test.as_secs_f64() * 1000.0
        ),
        Some(net(first)),
        net(again),
    );
    Ok(())
}
