//! Running the `trace` binary and reading its trace in tests.
// Shared by the `it` and `engines` binaries, each of which uses part of it.
#![allow(dead_code, unused_imports)]

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

use serde_json::Value;
pub use tracer::model::trace::{Access, Exec, FileEntry, Op, OpenMode, Syscalls, Trace};

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

/// A command under test, built like `std::process::Command`, whose
/// `run`/`expect_*` methods panic with everything needed to see why: the
/// command line, its status, its stdout and its stderr.
pub struct TestCommand {
    cmd: Command,
}

impl TestCommand {
    pub fn new(program: impl AsRef<OsStr>) -> TestCommand {
        TestCommand {
            cmd: Command::new(program),
        }
    }

    /// The `trace` binary under test, with stdin from /dev/null and without
    /// cargo's `LD_LIBRARY_PATH` (the traced programs' lookups stay their
    /// own).
    /// Its image cache is the build's own temporary directory (shared
    /// by the tests, safe under concurrent use) unless `TRACE_CACHE_DIR`
    /// says otherwise: tests never fill the user's ~/.cache.
    pub fn trace() -> TestCommand {
        let mut c = TestCommand::new(trace_bin());
        c.env_remove("LD_LIBRARY_PATH").stdin(Stdio::null());
        if std::env::var_os("TRACE_CACHE_DIR").is_none() {
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-cache");
            c.env("TRACE_CACHE_DIR", cache);
        }
        c
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut TestCommand {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut TestCommand {
        self.cmd.env(key, val);
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut TestCommand {
        self.cmd.env_remove(key);
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut TestCommand {
        self.cmd.current_dir(dir);
        self
    }

    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut TestCommand {
        self.cmd.stdin(cfg);
        self
    }

    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut TestCommand {
        self.cmd.stdout(cfg);
        self
    }

    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut TestCommand {
        self.cmd.stderr(cfg);
        self
    }

    /// The command line, for messages.
    pub fn shown(&self) -> String {
        let mut s = self.cmd.get_program().to_string_lossy().into_owned();
        for a in self.cmd.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Starts the command in the background.
    pub fn spawn(&mut self) -> Child {
        match self.cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start {}: {e}", self.shown()),
        }
    }

    /// Runs the command to its end, whatever its status.
    pub fn run(&mut self) -> Output {
        match self.cmd.output() {
            Ok(o) => o,
            Err(e) => panic!("cannot start {}: {e}", self.shown()),
        }
    }

    /// Runs the command; panics with its output unless it exits 0.
    pub fn expect_success(&mut self) -> Output {
        let o = self.run();
        if !o.status.success() {
            panic!("expected success:\n{}", self.report(&o));
        }
        o
    }

    /// Runs the command; panics with its output if it exits 0.
    pub fn expect_failure(&mut self) -> Output {
        let o = self.run();
        if o.status.success() {
            panic!("expected failure:\n{}", self.report(&o));
        }
        o
    }

    /// Runs the command; panics with its output unless it exits `code`.
    pub fn expect_code(&mut self, code: i32) -> Output {
        let o = self.run();
        if o.status.code() != Some(code) {
            panic!("expected exit status {code}:\n{}", self.report(&o));
        }
        o
    }

    /// The command, its status and its output, for a panic message.
    pub fn report(&self, o: &Output) -> String {
        format!(
            "command: {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.shown(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }
}

/// What a `trace run` did: its output and the trace it wrote, read into
/// the library's own typed model.
pub struct Run {
    pub out: Output,
    pub trace: Option<Trace>,
}

impl Run {
    /// The result of a `trace run -o DIR/trace.json` that has ended.
    pub fn new(out: Output, dir: &Path) -> Run {
        Run {
            out,
            trace: read_trace(dir),
        }
    }
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    /// The trace written, typed.
    pub fn trace(&self) -> &Trace {
        match &self.trace {
            Some(t) => t,
            None => panic!("no trace written; stderr:\n{}", self.stderr()),
        }
    }
}

/// A `trace run` invocation that writes its JSON into `dir`.
pub fn trace_cmd(dir: &Path, extra: &[&str], cmd: &[&str]) -> TestCommand {
    let mut c = TestCommand::trace();
    c.arg("run")
        .arg("-o")
        .arg(dir.join("trace.json"))
        .args(extra)
        .arg("--")
        .args(cmd);
    c
}

/// Starts `trace run` of `sh -c SCRIPT` in the background and returns once
/// the traced shell is running (it touches a marker first), so a test can
/// signal a trace that is certainly set up, however slow start-up is.
pub fn spawn_started(dir: &Path, script: &str) -> Child {
    let marker = dir.join("started");
    let full = format!("touch {}; exec {script}", marker.display());
    let child = trace_cmd(dir, &[], &["sh", "-c", &full])
        .stderr(Stdio::null())
        .spawn();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the traced command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&marker);
    // The marker is touched before `exec`: wait until the script's own
    // program runs, or a signal sent now may reach the shell instead.
    let program = script.split_whitespace().next().unwrap_or_default();
    let name: String = program
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .take(15)
        .collect();
    while !descendant_named(child.id(), &name) {
        assert!(
            std::time::Instant::now() < deadline,
            "the traced command never ran {program}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}

/// Whether some descendant of `root` has the command name `name`.
fn descendant_named(root: u32, name: &str) -> bool {
    // pid -> (parent, comm), from /proc/PID/stat: "pid (comm) state ppid".
    let mut procs = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (
            stat.iter().position(|&b| b == b'('),
            stat.iter().rposition(|&b| b == b')'),
        ) else {
            continue;
        };
        let comm = String::from_utf8_lossy(&stat[open + 1..close]).into_owned();
        let rest = String::from_utf8_lossy(&stat[close + 1..]).into_owned();
        let Some(ppid) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        procs.insert(pid, (ppid, comm));
    }
    procs.iter().any(|(&pid, (_, comm))| {
        if comm != name {
            return false;
        }
        let mut at = pid;
        for _ in 0..64 {
            match procs.get(&at) {
                Some(&(parent, _)) if parent == root => return true,
                Some(&(parent, _)) if parent > 1 => at = parent,
                _ => return false,
            }
        }
        false
    })
}

pub fn run_in(dir: &Path, extra: &[&str], cmd: &[&str]) -> Run {
    Run::new(trace_cmd(dir, extra, cmd).run(), dir)
}

/// The trace `trace_cmd` wrote into `dir`, if any, read by the library's
/// own reader (which also checks its format, version and paths).
pub fn read_trace(dir: &Path) -> Option<Trace> {
    let path = dir.join("trace.json");
    path.exists().then(|| read_trace_file(&path))
}

/// The trace at `path`, read by the library's own reader; panics naming
/// the file when it is missing or not a valid trace.
pub fn read_trace_file(path: &Path) -> Trace {
    match tracer::model::write::read(path) {
        Ok(t) => t,
        Err(e) => panic!("{} is not a valid trace: {e:#}", path.display()),
    }
}

pub fn files(t: &Trace) -> &[FileEntry] {
    &t.files
}

pub fn file<'a>(t: &'a Trace, path: &str) -> Option<&'a FileEntry> {
    t.files.iter().find(|f| f.path == path)
}

/// The accesses recorded for `path` (empty when the path is absent).
pub fn accesses<'a>(t: &'a Trace, path: &str) -> Vec<&'a Access> {
    file(t, path)
        .map(|f| f.accesses.iter().collect())
        .unwrap_or_default()
}

pub fn has(t: &Trace, path: &str, op: &str, result: &str) -> bool {
    accesses(t, path)
        .iter()
        .any(|a| op_name(a.op) == op && a.result == result)
}

/// An op as the trace names it (`open`, `pivot_root`).
pub fn op_name(op: Op) -> String {
    match serde_json::to_value(op) {
        Ok(Value::String(s)) => s,
        other => panic!("op {op:?} serializes as {other:?}"),
    }
}

pub fn paths(t: &Trace) -> Vec<String> {
    t.files.iter().map(|f| f.path.clone()).collect()
}

pub fn execs(t: &Trace) -> &[Exec] {
    &t.execs
}

/// Asserts the trace is complete and shows what is missing if not.
pub fn assert_complete(t: &Trace) {
    assert!(
        t.complete,
        "trace incomplete: {:?}; lost {:?} / counters {:?}",
        t.incomplete_reasons, t.lost_events, t.counters
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
    // gcc: `cargo xtask test` installs it.
    TestCommand::new("gcc")
        .args(["-O1", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(flags)
        .expect_success();
    bin
}

/// Whether `access`, as the trace file writes it, has every key of `want`
/// with the same value; a null in `want` means the key must be absent.
pub fn access_matches(access: &Access, want: &Value) -> bool {
    let access = access_json(access);
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

/// An access as the trace file writes it.
pub fn access_json(access: &Access) -> Value {
    serde_json::to_value(access).expect("an access serializes")
}

/// The accesses of `path` that match `want` (see [`access_matches`]).
pub fn matching<'a>(t: &'a Trace, path: &str, want: &Value) -> Vec<&'a Access> {
    accesses(t, path)
        .into_iter()
        .filter(|a| access_matches(a, want))
        .collect()
}

/// Panics, showing what was recorded for `path` instead, unless some access
/// of `path` matches `want`; returns the first that does.
pub fn expect_access<'a>(t: &'a Trace, path: &str, want: &Value) -> &'a Access {
    match matching(t, path, want).first() {
        Some(a) => a,
        None => panic!(
            "no access of {path} matching {want}; recorded for it: {}",
            serde_json::to_string(&accesses(t, path)).unwrap_or_default()
        ),
    }
}

/// Every access in the trace, with the path of its entry.
pub fn all_accesses(t: &Trace) -> Vec<(&str, &Access)> {
    t.files
        .iter()
        .flat_map(|f| f.accesses.iter().map(move |a| (f.path.as_str(), a)))
        .collect()
}
