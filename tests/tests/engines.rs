//! Docker, Podman and containerd end to end, with real engines that this
//! test binary starts itself and stops at the end, also on failure: a
//! `dockerd` with its own data-root, exec-root, pidfile and socket under a
//! temporary directory (its managed containerd serves `ctr`), and Podman
//! with runc and a containers.conf / storage.conf of its own. Nothing is
//! shared with an engine the machine may already run.
//!
//! A custom harness (libtest-mimic) so the engines start once for all the
//! tests and are stopped after the last one, and the tests run one at a
//! time (they look at what `trace` left in the engines). That is why this
//! is a binary of its own and not a module of `it/`: libtest has no hook
//! to stop a daemon after the last test, and runs tests in parallel with
//! the rest. It shares `it/util.rs`.
#[path = "it/util.rs"]
mod util;

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use util::*;

const SUITE: &str = r#"import unittest, json, decimal
class T(unittest.TestCase):
    def test_json(self):
        self.assertEqual(json.loads('[1]'), [1])
    def test_data(self):
        self.assertIn('.', open('/etc/debian_version').read())
unittest.main()
"#;
/// The fixture image's name once loaded into an engine.
const FULL: &str = "trace/full:latest";
const CTR_NAMESPACE: &str = "trace-test";
const OWNER_LABEL: &str = "io.github.trace-rs.owner";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command to completion; panics if it cannot start.
fn out(c: &mut Command) -> Output {
    c.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{c:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
fn ok(c: &mut Command) -> String {
    let o = out(c);
    assert!(
        o.status.success(),
        "{c:?} failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn docker() -> Command {
    Command::new("docker")
}

fn podman() -> Command {
    Command::new("podman")
}

fn ctr() -> Command {
    let mut c = Command::new("ctr");
    c.args(["--namespace", CTR_NAMESPACE]);
    c
}

fn trace() -> Command {
    let mut c = Command::new(trace_bin());
    // cargo test puts target/ on the library path; keep it out.
    c.env_remove("LD_LIBRARY_PATH");
    c
}

fn suite() -> tempfile::TempDir {
    let d = tempdir();
    fs::write(d.path().join("test_app.py"), SUITE).unwrap();
    d
}

fn suite_mount(s: &tempfile::TempDir) -> String {
    format!("{}:/suite:ro", s.path().display())
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn kept(report: &Value) -> Vec<String> {
    report["kept"]
        .as_object()
        .expect("kept")
        .keys()
        .cloned()
        .collect()
}

/// Waits for `cond`, polling; false when it never held.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The one `trace: error:` line of a failed command, checked.
fn one_error_line(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    let e = text(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("trace: error: "), "{e}");
    e
}

// ---- The engines ---------------------------------------------------

/// dockerd and Podman's configuration under one temporary directory.
struct Engines {
    dir: tempfile::TempDir,
    dockerd: Option<Child>,
    /// Cgroups the engines make for themselves (docker/, libpod_parent/)
    /// that were not there before: removed at the end when empty.
    new_cgroups: Vec<PathBuf>,
}

/// Where the engines put cgroups of their own, in every hierarchy.
fn engine_cgroups() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        for name in ["docker", "libpod_parent"] {
            out.push(e.path().join(name));
        }
    }
    out
}

/// A cgroup parent of the test's own for the containers it starts itself.
fn test_cgroup() -> String {
    format!("/trace-engines-test-{}", std::process::id())
}

impl Engines {
    fn start() -> Result<Engines, String> {
        let archive = fixtures().join("bookworm-docker.tar");
        let dir = tempfile::Builder::new()
            .prefix("trace-engines-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        let mut engines = Engines {
            dir,
            dockerd: None,
            new_cgroups: engine_cgroups()
                .into_iter()
                .filter(|p| !p.exists())
                .collect(),
        };
        fs::write(d.join("daemon.json"), "{}\n").map_err(|e| e.to_string())?;
        // The clients' own configuration (podman reads docker's too).
        fs::create_dir(d.join("docker-client")).map_err(|e| e.to_string())?;
        fs::write(d.join("docker-client/config.json"), "{}\n").map_err(|e| e.to_string())?;
        fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = \"{0}/podman-events.log\"\n\
                 tmp_dir = \"{0}/podman-tmp\"\n\
                 volume_path = \"{0}/podman-volumes\"\n",
                d.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/podman-root\"\nrunroot = \"{0}/podman-run\"\n",
                d.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let sock = d.join("docker.sock");
        // SAFETY: main is single-threaded until the harness starts.
        unsafe {
            std::env::set_var("DOCKER_HOST", format!("unix://{}", sock.display()));
            std::env::set_var("DOCKER_CONFIG", d.join("docker-client"));
            std::env::set_var("CONTAINERS_CONF", d.join("containers.conf"));
            std::env::set_var("CONTAINERS_STORAGE_CONF", d.join("storage.conf"));
            std::env::set_var(
                "CONTAINERD_ADDRESS",
                d.join("exec/containerd/containerd.sock"),
            );
            std::env::remove_var("CONTAINERD_NAMESPACE");
        }
        let log = fs::File::create(d.join("dockerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .arg("--data-root")
            .arg(d.join("docker"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting dockerd: {e}"))?;
        engines.dockerd = Some(child);
        let up = wait_for(Duration::from_secs(60), || {
            docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !up {
            let log = fs::read_to_string(d.join("dockerd.log")).unwrap_or_default();
            return Err(format!("dockerd did not come up:\n{log}"));
        }
        for c in [
            docker().arg("load").arg("--input").arg(&archive),
            podman().args(["load", "--quiet", "--input"]).arg(&archive),
        ] {
            let o = out(c);
            if !o.status.success() {
                return Err(format!("{c:?}: {}", text(&o.stderr)));
            }
        }
        Ok(engines)
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        let quiet = |c: &mut Command| {
            let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        quiet(podman().args(["rm", "--all", "--force"]));
        quiet(podman().args(["system", "reset", "--force"]));
        if let Some(mut d) = self.dockerd.take() {
            quiet(docker().args(["rm", "--force", "trace-att-docker"]));
            // SAFETY: plain syscall on our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let gone = wait_for(Duration::from_secs(30), || {
                d.try_wait().is_ok_and(|s| s.is_some())
            });
            if !gone {
                let _ = d.kill();
            }
            let _ = d.wait();
        }
        // Whatever is still mounted below our directory, deepest first.
        let root = self.dir.path().display().to_string();
        let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: a NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        for p in &self.new_cgroups {
            remove_cgroup_tree(p);
        }
        // The test's own cgroup parent, in every hierarchy.
        let name = test_cgroup();
        if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
            for e in entries.filter_map(|e| e.ok()) {
                remove_cgroup_tree(&e.path().join(name.trim_start_matches('/')));
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

// ---- The tests -----------------------------------------------------

type Test = fn();

fn tests() -> Vec<(&'static str, Test)> {
    vec![
        (
            "docker_minimize_into_the_engine_then_plain_docker_run",
            docker_minimize,
        ),
        (
            "podman_minimize_into_containers_storage_then_plain_podman_run",
            podman_minimize,
        ),
        (
            "the_kept_set_is_the_same_under_runc_docker_and_podman",
            same_kept_set,
        ),
        (
            "docker_daemon_input_gives_the_bytes_of_its_docker_save_archive",
            daemon_equals_archive,
        ),
        (
            "docker_run_options_exit_status_stdout_and_the_engine_init",
            docker_options,
        ),
        ("podman_run_options_and_engine_args", podman_options),
        (
            "sigterm_passes_through_docker_and_the_container_is_removed",
            docker_sigterm,
        ),
        (
            "a_killed_traces_container_is_stopped_and_removed",
            docker_kill_9,
        ),
        (
            "an_image_file_runs_under_docker_through_a_temporary_copy",
            file_under_docker,
        ),
        ("attach_to_a_docker_container_by_name", attach_docker),
        ("attach_to_a_podman_container", attach_podman),
        ("attach_to_a_containerd_task", attach_ctr),
        ("engine_down_unknown_image_unknown_container", errors),
    ]
}

fn main() {
    let mut args = Arguments::from_args();
    // The tests look at what `trace` left in the engines: one at a time.
    args.test_threads = Some(1);
    let trials: Vec<Trial> = tests()
        .into_iter()
        .map(|(name, f)| {
            Trial::test(name, move || {
                f();
                Ok::<(), Failed>(())
            })
        })
        .collect();
    // Start the engines only when a test will run.
    let selected = tests().iter().any(|(name, _)| {
        let wanted = match &args.filter {
            Some(f) if args.exact => name == f,
            Some(f) => name.contains(f.as_str()),
            None => true,
        };
        wanted && !args.skip.iter().any(|s| name.contains(s.as_str()))
    });
    if args.list || !selected {
        libtest_mimic::run(&args, trials).exit();
    }
    let engines = match Engines::start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("engines test set-up failed: {e}");
            std::process::exit(1);
        }
    };
    let conclusion = libtest_mimic::run(&args, trials);
    drop(engines);
    conclusion.exit();
}

/// `trace minimize` of the suite in the full image kept by `engine`, into
/// that engine as `name`; returns (its stderr, the work dir).
fn minimize_into(transport: &str, name: &str) -> (String, tempfile::TempDir) {
    let s = suite();
    let work = tempdir();
    let o = out(trace()
        .current_dir(work.path())
        .args(["minimize", "--image", &format!("{transport}:{FULL}")])
        .args(["-o", &format!("{transport}:{name}")])
        .args(["--mount", &suite_mount(&s)])
        .args(["--", "/usr/bin/python3", "/suite/test_app.py"]));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("passed          passed"), "{err}");
    (err, work)
}

fn printed_id(stderr: &str, target: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("outputs: image"))
        .unwrap_or_else(|| panic!("no outputs line: {stderr}"));
    let at = line
        .find(&format!("{target} (sha256:"))
        .unwrap_or_else(|| panic!("no digest after {target}: {line}"));
    let rest = &line[at + target.len() + 2..];
    rest[..rest.find(')').unwrap()].to_string()
}

fn docker_minimize() {
    let (err, work) = minimize_into("docker-daemon", "trace/app:min");
    let id = printed_id(&err, "docker-daemon:trace/app:min");
    let shown = ok(docker().args(["image", "inspect", "--format", "{{.Id}}", "trace/app:min"]));
    assert_eq!(shown.trim(), id, "the digest printed is the engine's");
    let report = read_json(&work.path().join("trace_app_min.report.json"));
    assert_eq!(report["loaded"]["id"], id.as_str());
    let t = read_trace_file(&work.path().join("trace_app_min.trace.json"));
    assert_eq!(
        t.scope.image.as_deref(),
        Some(format!("docker-daemon:{FULL}").as_str())
    );
    assert_eq!(execs(&t).len(), 1, "{:?}", execs(&t));
    for p in paths(&t) {
        assert!(
            !p.contains("docker") && !p.contains("containerd"),
            "engine path {p}"
        );
    }
    // Plain docker, no trace: the suite passes in the minimal image, which
    // has no shell.
    let s = suite();
    let o = out(docker()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--volume",
            &suite_mount(&s),
        ])
        .args(["--cgroup-parent", &test_cgroup()])
        .args(["trace/app:min", "/usr/bin/python3", "/suite/test_app.py"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("Ran 2 tests"));
    let o = out(docker()
        .args(["run", "--rm", "--cgroup-parent", &test_cgroup()])
        .args(["trace/app:min", "/bin/sh", "-c", "true"]));
    assert_ne!(o.status.code(), Some(0), "a shell in the minimal image");
    // Nothing of the runs is left in the engine.
    let left = ok(docker().args([
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label={OWNER_LABEL}"),
    ]));
    assert_eq!(left.trim(), "");
}

fn podman_minimize() {
    let (err, work) = minimize_into("containers-storage", "trace/app:min");
    let id = printed_id(&err, "containers-storage:trace/app:min");
    let shown = ok(podman().args(["image", "inspect", "--format", "{{.Id}}", "trace/app:min"]));
    assert_eq!(format!("sha256:{}", shown.trim()), id);
    let t = read_trace_file(&work.path().join("trace_app_min.trace.json"));
    assert_eq!(execs(&t).len(), 1, "{:?}", execs(&t));
    let s = suite();
    let o = out(podman()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--volume",
            &suite_mount(&s),
        ])
        .args(["--cgroup-parent", &test_cgroup()])
        .args(["trace/app:min", "/usr/bin/python3", "/suite/test_app.py"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("Ran 2 tests"));
    let left = ok(podman().args([
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label={OWNER_LABEL}"),
    ]));
    assert_eq!(left.trim(), "");
}

/// Traces the suite in `image` under `engine`, builds from the docker
/// archive fixture; returns the report.
fn trace_and_build(image: &str, engine: &str, work: &Path, s: &tempfile::TempDir) -> Value {
    let t = work.join(format!("{engine}.json"));
    let o = out(trace()
        .args(["run", "--image", image, "--engine", engine, "-o"])
        .arg(&t)
        .args(["--mount", &suite_mount(s)])
        .args(["--", "/usr/bin/python3", "/suite/test_app.py"]));
    assert_eq!(o.status.code(), Some(0), "{engine}: {}", text(&o.stderr));
    let tr = read_trace_file(&t);
    // The engine's own moves of the container's processes (into its
    // cgroup below the run's, and its v1 trees) leave the scope whole.
    assert!(tr.complete, "{engine}: {:?}", tr.incomplete_reasons);
    assert_eq!(execs(&tr).len(), 1, "{engine}: {:?}", execs(&tr));
    let report = work.join(format!("{engine}.report.json"));
    ok(trace()
        .args(["build", "--from"])
        .arg(fixtures().join("bookworm-docker.tar"))
        .arg("--trace")
        .arg(&t)
        .arg("-o")
        .arg(work.join(format!("{engine}.oci")))
        .arg("--report")
        .arg(&report));
    read_json(&report)
}

fn same_kept_set() {
    let s = suite();
    let work = tempdir();
    let archive = fixtures().join("bookworm-docker.tar");
    let runc = trace_and_build(archive.to_str().unwrap(), "runc", work.path(), &s);
    let docker = trace_and_build(&format!("docker-daemon:{FULL}"), "docker", work.path(), &s);
    let podman = trace_and_build(
        &format!("containers-storage:{FULL}"),
        "podman",
        work.path(),
        &s,
    );
    assert!(kept(&runc).contains(&"/usr/bin/python3.11".to_string()));
    assert_eq!(kept(&runc), kept(&docker), "runc vs docker");
    assert_eq!(kept(&runc), kept(&podman), "runc vs podman");
    // Same files kept from the same source: the same image.
    assert_eq!(runc["manifest_digest"], docker["manifest_digest"]);
    assert_eq!(runc["manifest_digest"], podman["manifest_digest"]);
}

fn daemon_equals_archive() {
    let work = tempdir();
    let s = suite();
    let t = work.path().join("t.json");
    let o = out(trace()
        .args(["run", "--image", &format!("docker-daemon:{FULL}"), "-o"])
        .arg(&t)
        .args(["--mount", &suite_mount(&s)])
        .args(["--", "/usr/bin/python3", "/suite/test_app.py"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let saved = work.path().join("saved.tar");
    ok(docker().args(["save", "--output"]).arg(&saved).arg(FULL));
    let build = |from: &str, out_name: &str| {
        let dest = work.path().join(out_name);
        let o = out(trace()
            .args(["build", "--from", from, "--trace"])
            .arg(&t)
            .arg("-o")
            .arg(format!("oci-archive:{}", dest.display())));
        assert_eq!(o.status.code(), Some(0), "{from}: {}", text(&o.stderr));
        fs::read(dest).unwrap()
    };
    let a = build(&format!("docker-daemon:{FULL}"), "from-daemon.tar");
    let b = build(
        &format!("docker-archive:{}", saved.display()),
        "from-save.tar",
    );
    assert!(a.len() > 1_000_000);
    assert!(a == b, "docker-daemon: and its docker save archive differ");
    // The source digest is the engine's image ID either way.
    let id = ok(docker().args(["image", "inspect", "--format", "{{.Id}}", FULL]));
    let r = out(trace()
        .args([
            "build",
            "--from",
            &format!("docker-daemon:{FULL}"),
            "--trace",
        ])
        .arg(&t)
        .arg("-o")
        .arg(work.path().join("x.oci"))
        .arg("--report")
        .arg(work.path().join("x.json")));
    assert!(r.status.success());
    assert_eq!(
        read_json(&work.path().join("x.json"))["source_digest"],
        id.trim()
    );
}

/// `trace run --image docker-daemon:...` with extra flags; (exit, stdout,
/// trace).
fn run_docker(extra: &[&str], cmd: &[&str]) -> (Option<i32>, String, Trace) {
    let dir = tempdir();
    let t = dir.path().join("t.json");
    let o = out(trace()
        .args(["run", "--image", &format!("docker-daemon:{FULL}"), "-o"])
        .arg(&t)
        .args(extra)
        .arg("--")
        .args(cmd));
    let tr = read_trace_file(&t);
    (o.status.code(), text(&o.stdout), tr)
}

fn docker_options() {
    let (code, _, _) = run_docker(&[], &["/bin/sh", "-c", "exit 7"]);
    assert_eq!(code, Some(7));
    let host_net = fs::read_link("/proc/self/ns/net").unwrap();
    let host_net = host_net.to_string_lossy();
    let script = "id -u; id -g; echo \"$GREETING\"; pwd; readlink /proc/self/ns/net";
    let (code, stdout, t) = run_docker(
        &[
            "--user",
            "65534:65534",
            "--env",
            "GREETING=hello",
            "--workdir",
            "/usr/share",
        ],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        format!("65534\n65534\nhello\n/usr/share\n{host_net}\n")
    );
    assert_eq!(t.exit.code, 0);
    let (code, stdout, _) = run_docker(
        &["--network", "none"],
        &["/bin/readlink", "/proc/self/ns/net"],
    );
    assert_eq!(code, Some(0));
    assert_ne!(
        stdout.trim(),
        host_net,
        "--network none has a namespace of its own"
    );
    // The engine's init runs the command but is not recorded.
    let (code, _, t) = run_docker(
        &["--engine-arg=--init"],
        &["/bin/cat", "/etc/debian_version"],
    );
    assert_eq!(code, Some(0));
    let ex = execs(&t);
    assert_eq!(ex.len(), 1, "{ex:?}");
    assert_eq!(ex[0].path, "/bin/cat");
    assert!(file(&t, "/sbin/docker-init").is_none());
    assert!(has(&t, "/etc/debian_version", "open", "ok"));
}

fn podman_options() {
    let dir = tempdir();
    let t = dir.path().join("t.json");
    let cap = "grep CapEff /proc/self/status";
    let run = |extra: &[&str]| {
        let o = out(trace()
            .args([
                "run",
                "--image",
                &format!("containers-storage:{FULL}"),
                "-o",
            ])
            .arg(&t)
            .args(extra)
            .args(["--", "/bin/sh", "-c", cap]));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let s = text(&o.stdout);
        let hex = s.split_whitespace().nth(1).unwrap().to_string();
        u64::from_str_radix(&hex, 16).unwrap()
    };
    const CAP_NET_ADMIN: u64 = 1 << 12;
    assert_eq!(run(&[]) & CAP_NET_ADMIN, 0);
    assert_ne!(
        run(&["--engine-arg=--cap-add=NET_ADMIN"]) & CAP_NET_ADMIN,
        0
    );
    let tr = read_trace_file(&t);
    assert_eq!(
        tr.scope.image.as_deref(),
        Some(format!("containers-storage:{FULL}").as_str())
    );
    assert!(
        execs(&tr).iter().any(|e| e.path.ends_with("/grep")),
        "{:?}",
        execs(&tr)
    );
}

/// Containers `trace` started that are still in the engine.
fn ours(engine: fn() -> Command) -> Vec<String> {
    ok(engine().args([
        "ps",
        "--all",
        "--quiet",
        "--filter",
        &format!("label={OWNER_LABEL}"),
    ]))
    .lines()
    .map(String::from)
    .collect()
}

/// Starts `trace run` under docker with a command that waits, and waits
/// until its container is running.
fn spawn_waiting(dir: &Path, cmd: &str) -> Child {
    let child = trace()
        .args(["run", "--image", &format!("docker-daemon:{FULL}"), "-o"])
        .arg(dir.join("t.json"))
        .args(["--", "/bin/sh", "-c", cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let running = wait_for(Duration::from_secs(60), || {
        !ok(docker().args([
            "ps",
            "--quiet",
            "--filter",
            &format!("label={OWNER_LABEL}"),
            "--filter",
            "status=running",
        ]))
        .trim()
        .is_empty()
    });
    assert!(running, "the container never ran");
    child
}

fn docker_sigterm() {
    let dir = tempdir();
    let mut child = spawn_waiting(dir.path(), "trap 'exit 143' TERM; sleep 60 & wait");
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert_eq!(read_json(&dir.path().join("t.json"))["exit"]["code"], 143);
    assert!(
        ours(docker).is_empty(),
        "container left: {:?}",
        ours(docker)
    );
}

fn docker_kill_9() {
    let dir = tempdir();
    let mut child = spawn_waiting(dir.path(), "sleep 120");
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    // The supervisor the killed trace forked kills the container's
    // processes through its cgroup at once.
    let stopped = wait_for(Duration::from_secs(60), || {
        ok(docker().args([
            "ps",
            "--quiet",
            "--filter",
            &format!("label={OWNER_LABEL}"),
            "--filter",
            "status=running",
        ]))
        .trim()
        .is_empty()
    });
    assert!(stopped, "the killed run's container still runs");
    // The next run removes whatever is left of it (its owner is gone).
    let (code, _, _) = run_docker(&[], &["/bin/true"]);
    assert_eq!(code, Some(0));
    assert!(ours(docker).is_empty(), "left: {:?}", ours(docker));
    // And the cgroup of the killed run goes with the next run after it.
    let (code, _, t) = run_docker(&[], &["/bin/true"]);
    assert_eq!(code, Some(0));
    let mine = t.scope.cgroup.as_deref().unwrap().to_string();
    let parent = Path::new(&mine).parent().unwrap().to_path_buf();
    let stale: Vec<String> = fs::read_dir(&parent)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("trace-{}-", child.id())))
        .collect();
    assert!(stale.is_empty(), "{stale:?}");
}

fn file_under_docker() {
    let dir = tempdir();
    let t = dir.path().join("t.json");
    for image in [
        format!("oci:{}:full", fixtures().join("bookworm-oci").display()),
        fixtures().join("bookworm-docker.tar").display().to_string(),
    ] {
        let o = out(trace()
            .args(["run", "--engine", "docker", "--image", &image, "-o"])
            .arg(&t)
            .args(["--", "/bin/cat", "/etc/debian_version"]));
        assert_eq!(o.status.code(), Some(0), "{image}: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains('.'));
        assert!(has(
            &read_trace_file(&t),
            "/etc/debian_version",
            "open",
            "ok"
        ));
    }
    let images = ok(docker().args(["image", "ls", "--format", "{{.Repository}}"]));
    assert!(
        !images.contains("trace-tmp"),
        "temporary image left: {images}"
    );
    // A root filesystem directory is no image an engine can load.
    let o = out(trace()
        .args(["run", "--engine", "docker", "--image"])
        .arg(fixtures().join("bookworm-rootfs"))
        .args(["--", "/bin/true"]));
    let e = one_error_line(&o);
    assert!(e.contains("--engine runc"), "{e}");
}

/// A loop that reads a file the trace must see.
const LOOP: &str = "while :; do cat /etc/debian_version > /dev/null; sleep 0.1; done";

fn attach_and_check(args: &[&str]) -> Trace {
    let dir = tempdir();
    let t = dir.path().join("t.json");
    let o = out(trace()
        .arg("attach")
        .args(args)
        .args(["--duration", "2", "-o"])
        .arg(&t));
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
    let tr = read_trace_file(&t);
    assert!(
        has(&tr, "/etc/debian_version", "open", "ok"),
        "{args:?}: {:?}",
        paths(&tr)
    );
    assert!(
        execs(&tr)
            .iter()
            .any(|e| e.path == "/bin/cat" || e.path == "/usr/bin/cat")
    );
    tr
}

fn attach_docker() {
    let id = ok(docker()
        .args([
            "run",
            "--detach",
            "--name",
            "trace-att-docker",
            "--network",
            "none",
        ])
        .args([
            "--cgroup-parent",
            &test_cgroup(),
            FULL,
            "/bin/sh",
            "-c",
            LOOP,
        ]));
    let t = attach_and_check(&["--container", "trace-att-docker"]);
    assert!(
        t.scope.cgroup.as_deref().unwrap().ends_with(id.trim()),
        "{:?}",
        t.scope
    );
    let t = attach_and_check(&["--container", &id.trim()[..12], "--engine", "docker"]);
    assert!(t.scope.cgroup.as_deref().unwrap().ends_with(id.trim()));
    ok(docker().args(["rm", "--force", "trace-att-docker"]));
}

fn attach_podman() {
    let id = ok(podman()
        .args([
            "run",
            "--detach",
            "--name",
            "trace-att-podman",
            "--network",
            "none",
        ])
        .args([
            "--cgroup-parent",
            &test_cgroup(),
            FULL,
            "/bin/sh",
            "-c",
            LOOP,
        ]));
    let t = attach_and_check(&["--container", "trace-att-podman"]);
    assert!(
        t.scope.cgroup.as_deref().unwrap().contains(id.trim()),
        "{:?}",
        t.scope
    );
    ok(podman().args(["rm", "--force", "trace-att-podman"]));
}

fn attach_ctr() {
    ok(ctr()
        .args(["images", "import", "--all-platforms"])
        .arg(fixtures().join("bookworm-docker.tar")));
    let image = format!("docker.io/{FULL}");
    ok(ctr()
        .args([
            "run",
            "--detach",
            "--cgroup",
            &format!("{}/ctr-task", test_cgroup()),
        ])
        .args([&image, "trace-att-ctr", "/bin/sh", "-c", LOOP]));
    let t = attach_and_check(&["--container", "trace-att-ctr", "--namespace", CTR_NAMESPACE]);
    assert!(
        t.scope.cgroup.as_deref().unwrap().ends_with("ctr-task"),
        "{:?}",
        t.scope
    );
    attach_and_check(&[
        "--container",
        "trace-att-ctr",
        "--engine",
        "containerd",
        "--namespace",
        CTR_NAMESPACE,
    ]);
    // In another namespace there is no such task.
    let o = out(trace().args([
        "attach",
        "--container",
        "trace-att-ctr",
        "--engine",
        "containerd",
    ]));
    let e = one_error_line(&o);
    assert!(e.contains("no container"), "{e}");
    let _ = out(ctr().args(["task", "kill", "--signal", "SIGKILL", "trace-att-ctr"]));
    wait_for(Duration::from_secs(10), || {
        !ok(ctr().args(["task", "ls"])).contains("trace-att-ctr")
            || out(ctr().args(["task", "rm", "trace-att-ctr"]))
                .status
                .success()
    });
    let _ = out(ctr().args(["task", "rm", "--force", "trace-att-ctr"]));
    ok(ctr().args(["containers", "rm", "trace-att-ctr"]));
}

fn errors() {
    let work = tempdir();
    let t = work.path().join("t.json");
    ok(trace()
        .arg("run")
        .arg("-o")
        .arg(&t)
        .args(["--", "/bin/true"]));
    let down = format!("unix://{}", work.path().join("no-daemon.sock").display());
    let o1 = work.path().join("o1");
    let cases: Vec<(Vec<String>, &str, bool)> = vec![
        // Engine down, reading.
        (
            vec![
                "build".into(),
                "--from".into(),
                format!("docker-daemon:{FULL}"),
                "--trace".into(),
                t.display().to_string(),
                "-o".into(),
                o1.display().to_string(),
            ],
            "the Docker engine is not reachable",
            true,
        ),
        // Engine down, writing: refused before anything is built.
        (
            vec![
                "build".into(),
                "--from".into(),
                fixtures().join("bookworm-docker.tar").display().to_string(),
                "--trace".into(),
                t.display().to_string(),
                "-o".into(),
                "docker-daemon:app:x".into(),
            ],
            "the Docker engine is not reachable",
            true,
        ),
        // Engine down, running.
        (
            vec![
                "run".into(),
                "--image".into(),
                format!("docker-daemon:{FULL}"),
                "--".into(),
                "/bin/true".into(),
            ],
            "the Docker engine is not reachable",
            true,
        ),
        // Unknown images.
        (
            vec![
                "run".into(),
                "--image".into(),
                "docker-daemon:trace/nope:none".into(),
                "--".into(),
                "/bin/true".into(),
            ],
            "no image \"trace/nope:none\" in the Docker engine",
            false,
        ),
        (
            vec![
                "build".into(),
                "--from".into(),
                "containers-storage:trace/nope".into(),
                "--trace".into(),
                t.display().to_string(),
                "-o".into(),
                o1.display().to_string(),
            ],
            "no image \"trace/nope\" in the Podman engine",
            false,
        ),
        (
            vec![
                "build".into(),
                "--from".into(),
                format!("oci:{}:nope", fixtures().join("bookworm-oci").display()),
                "--trace".into(),
                t.display().to_string(),
                "-o".into(),
                o1.display().to_string(),
            ],
            "no image tagged \"nope\"",
            false,
        ),
        // A bad reference.
        (
            vec![
                "build".into(),
                "--from".into(),
                "docker://busybox".into(),
                "--trace".into(),
                t.display().to_string(),
                "-o".into(),
                o1.display().to_string(),
            ],
            "transport is not supported",
            false,
        ),
        // Unknown container.
        (
            vec![
                "attach".into(),
                "--container".into(),
                "trace-no-such-container".into(),
            ],
            "no container \"trace-no-such-container\"",
            false,
        ),
        (
            vec![
                "attach".into(),
                "--container".into(),
                "trace-no-such-container".into(),
                "--engine".into(),
                "podman".into(),
            ],
            "no container \"trace-no-such-container\" in Podman",
            false,
        ),
    ];
    for (args, want, engine_down) in cases {
        let mut c = trace();
        c.current_dir(work.path()).args(&args);
        if engine_down {
            c.env("DOCKER_HOST", &down);
        }
        let o = out(&mut c);
        let e = one_error_line(&o);
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!o1.exists(), "{args:?} wrote its output");
    }
    // Nothing but the trace file we wrote is in the work dir.
    let left: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
