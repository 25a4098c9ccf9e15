//! Running the `trace` binary and reading its trace in tests.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;

/// The binary under test: `TRACE_BIN` (set by `cargo xtask test`), else the
/// debug build in the workspace's target directory.
pub fn trace_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TRACE_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target").join("debug").join("trace")
}

/// The cached image fixtures (`TRACE_FIXTURES`, set by `cargo xtask test`):
/// the Debian rootfs and its OCI / docker-archive images.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("TRACE_FIXTURES")
        .map(PathBuf::from)
        .expect("TRACE_FIXTURES not set: run the tests with `cargo xtask test`");
    assert!(
        dir.join("bookworm-images.complete").exists(),
        "fixtures missing in {}",
        dir.display()
    );
    dir
}

pub struct Run {
    pub out: Output,
    pub trace: Option<Value>,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn trace(&self) -> &Value {
        match &self.trace {
            Some(t) => t,
            None => panic!("no trace written; stderr:\n{}", self.stderr()),
        }
    }
}

/// A `trace` invocation that writes its JSON into `dir`.
pub fn trace_cmd(dir: &Path, extra: &[&str], cmd: &[&str]) -> Command {
    let mut c = Command::new(trace_bin());
    c.arg("run")
        .arg("-o")
        .arg(dir.join("trace.json"))
        .args(extra)
        .arg("--")
        .args(cmd)
        // cargo test puts target/ on the library path; keep the traced
        // programs' lookups to their own.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null());
    c
}

/// Starts `trace run` of `sh -c SCRIPT` in the background and returns once
/// the traced shell is running (it touches a marker first), so a test can
/// signal a trace that is certainly set up, however slow start-up is.
pub fn spawn_started(dir: &Path, script: &str) -> std::process::Child {
    let marker = dir.join("started");
    let full = format!("touch {}; exec {script}", marker.display());
    let child = trace_cmd(dir, &[], &["sh", "-c", &full])
        .stderr(Stdio::null())
        .spawn()
        .expect("trace binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the traced command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&marker);
    child
}

pub fn run_in(dir: &Path, extra: &[&str], cmd: &[&str]) -> Run {
    let out = trace_cmd(dir, extra, cmd)
        .output()
        .expect("trace binary runs");
    Run {
        out,
        trace: read_trace(dir),
    }
}

/// The trace `trace_cmd` wrote into `dir`, if any.
pub fn read_trace(dir: &Path) -> Option<Value> {
    std::fs::read(dir.join("trace.json"))
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("trace file is JSON"))
}

pub fn files(t: &Value) -> &Vec<Value> {
    t["files"].as_array().expect("files array")
}

pub fn file<'a>(t: &'a Value, path: &str) -> Option<&'a Value> {
    files(t).iter().find(|f| f["path"] == path)
}

/// The accesses recorded for `path` (empty when the path is absent).
pub fn accesses<'a>(t: &'a Value, path: &str) -> Vec<&'a Value> {
    file(t, path)
        .and_then(|f| f["accesses"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

pub fn has(t: &Value, path: &str, op: &str, result: &str) -> bool {
    accesses(t, path)
        .iter()
        .any(|a| a["op"] == op && a["result"] == result)
}

pub fn paths(t: &Value) -> Vec<String> {
    files(t)
        .iter()
        .filter_map(|f| f["path"].as_str().map(String::from))
        .collect()
}

pub fn execs(t: &Value) -> &Vec<Value> {
    t["execs"].as_array().expect("execs array")
}

/// Asserts the trace is complete and shows what is missing if not.
pub fn assert_complete(t: &Value) {
    assert_eq!(
        t["complete"], true,
        "trace incomplete: lost {} / counters {}",
        t["lost_events"], t["counters"]
    );
}

pub fn canonical(p: &str) -> String {
    std::fs::canonicalize(p)
        .expect("path exists")
        .to_string_lossy()
        .into_owned()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trace-it-")
        .tempdir()
        .expect("tempdir")
}

/// The helper programs' sources (tests/programs).
pub fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// Compiles tests/programs/NAME.c with `gcc -O1 -Wall` and `flags` (`-m32`,
/// `-pthread`, `-luring` go last, where the linker wants libraries) into
/// `out/OUTNAME`, and returns the binary's path.
pub fn build_c(name: &str, out: &Path, outname: &str, flags: &[&str]) -> PathBuf {
    let src = programs_dir().join(format!("{name}.c"));
    let bin = out.join(outname);
    let o = Command::new("gcc")
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(flags)
        .output()
        .expect("gcc runs (cargo xtask test installs it)");
    assert!(
        o.status.success(),
        "gcc {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

/// Whether `access` has every key of `want` with the same value; a null
/// in `want` means the key must be absent.
pub fn access_matches(access: &Value, want: &Value) -> bool {
    want.as_object()
        .expect("an object of wanted fields")
        .iter()
        .all(|(k, v)| {
            if v.is_null() {
                access.get(k).is_none()
            } else {
                access.get(k) == Some(v)
            }
        })
}

/// The accesses of `path` that match `want` (see [`access_matches`]).
pub fn matching<'a>(t: &'a Value, path: &str, want: &Value) -> Vec<&'a Value> {
    accesses(t, path)
        .into_iter()
        .filter(|a| access_matches(a, want))
        .collect()
}

/// Panics, showing what was recorded for `path` instead, unless some access
/// of `path` matches `want`; returns the first that does.
pub fn expect_access<'a>(t: &'a Value, path: &str, want: &Value) -> &'a Value {
    match matching(t, path, want).first() {
        Some(a) => a,
        None => panic!(
            "no access of {path} matching {want}; recorded for it: {}",
            serde_json::to_string(&accesses(t, path)).unwrap_or_default()
        ),
    }
}

/// Every access in the trace, with the path of its entry.
pub fn all_accesses(t: &Value) -> Vec<(&str, &Value)> {
    files(t)
        .iter()
        .flat_map(|f| {
            let p = f["path"].as_str().unwrap_or_default();
            f["accesses"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |a| (p, a))
        })
        .collect()
}
