//! `trace attach`: a container started by runc, a host process tree, a
//! cgroup, all already running when the trace starts.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::util::*;
use serde_json::Value;

fn attach(dir: &std::path::Path, target: &[&str]) -> Trace {
    let out = dir.join("attach.json");
    TestCommand::trace()
        .arg("attach")
        .args(target)
        .args(["--duration", "1.5", "-o"])
        .arg(&out)
        .expect_code(0);
    read_trace_file(&out)
}

/// A runc container on the read-only fixture rootfs, looping over a file.
struct RuncContainer {
    id: String,
    _bundle: tempfile::TempDir,
}

impl RuncContainer {
    fn start(script: &str) -> RuncContainer {
        let rootfs = PathBuf::from(std::env::var_os("TRACE_FIXTURES").expect("TRACE_FIXTURES"))
            .join("bookworm-rootfs");
        let bundle = tempdir();
        let ok = Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(bundle.path())
            .status()
            .unwrap();
        assert!(ok.success());
        let cfg_path = bundle.path().join("config.json");
        let mut cfg: Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
        cfg["root"] = serde_json::json!({"path": rootfs, "readonly": true});
        cfg["process"]["terminal"] = Value::Bool(false);
        cfg["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
        fs::write(&cfg_path, cfg.to_string()).unwrap();
        let id = format!("trace-attach-{}", std::process::id());
        let ok = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(bundle.path())
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "runc run -d");
        RuncContainer {
            id,
            _bundle: bundle,
        }
    }
}

impl Drop for RuncContainer {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
    }
}

#[test]
fn attach_to_a_runc_container_by_id_and_by_cgroup() {
    let c = RuncContainer::start("while :; do cat /etc/debian_version >/dev/null; sleep 0.1; done");
    let dir = tempdir();
    let t = attach(dir.path(), &["--container", &c.id]);
    assert_complete(&t);
    assert_eq!(t.scope.mode, "cgroup");
    // Paths as the container sees them, and what it ran while we watched.
    assert!(has(&t, "/etc/debian_version", "open", "ok"));
    let argvs: Vec<&[String]> = execs(&t).iter().map(|e| e.argv.as_slice()).collect();
    assert!(
        argvs.contains(&&["cat", "/etc/debian_version"].map(String::from)[..]),
        "{argvs:?}"
    );
    // A loop is one exec entry per command line, not one per iteration.
    assert_eq!(
        argvs.iter().filter(|a| a[0] == "cat").count(),
        1,
        "{argvs:?}"
    );
    // The same through its cgroup path.
    let cg = t.scope.cgroup.as_deref().unwrap().to_string();
    let t2 = attach(dir.path(), &["--cgroup", &cg]);
    assert!(has(&t2, "/etc/debian_version", "open", "ok"));
}

#[test]
fn attach_to_a_process_tree_and_nothing_else() {
    let base = tempdir();
    let mine = base.path().join("mine.txt");
    let other = base.path().join("other.txt");
    fs::write(&mine, "x").unwrap();
    fs::write(&other, "x").unwrap();
    let spawn = |f: &std::path::Path| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while :; do cat {} >/dev/null; sleep 0.05; done",
                f.display()
            ))
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut traced = spawn(&mine);
    let mut untraced = spawn(&other);
    let dir = tempdir();
    let t = attach(dir.path(), &["--pid", &traced.id().to_string()]);
    let _ = traced.kill();
    let _ = untraced.kill();
    let _ = traced.wait();
    let _ = untraced.wait();
    assert_eq!(t.scope.mode, "pids");
    assert!(has(&t, &mine.display().to_string(), "open", "ok"));
    assert!(file(&t, &other.display().to_string()).is_none());
}

#[test]
fn attach_to_nothing_is_an_error() {
    let o = TestCommand::trace()
        .args([
            "attach",
            "--container",
            "no-such-container-xyz",
            "--duration",
            "1",
        ])
        .expect_code(125);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("no-such-container-xyz"), "{e}");
    TestCommand::trace()
        .args(["attach", "--pid", "999999999"])
        .expect_code(125);
}

#[test]
fn attach_follows_a_process_whose_name_is_not_utf8() {
    // A process may give itself any bytes as its name (prctl
    // PR_SET_NAME); /proc/PID/stat read as text then failed and the
    // process was left out of the scope.
    let base = tempdir();
    let read = base.path().join("read.txt");
    let ready = base.path().join("ready");
    fs::write(&read, "x").unwrap();
    let py = format!(
        "import ctypes, time\n\
         ctypes.CDLL(None).prctl(15, b'\\xff\\xfehidden', 0, 0, 0)\n\
         open('{ready}', 'w').close()\n\
         while True:\n    open('{read}').read(); time.sleep(0.05)\n",
        ready = ready.display(),
        read = read.display()
    );
    let mut tree = Command::new("sh")
        .arg("-c")
        .arg("python3 -c \"$1\" & wait")
        .arg("sh")
        .arg(&py)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ready.exists(), "the renamed process never started");
    let dir = tempdir();
    let t = attach(dir.path(), &["--pid", &tree.id().to_string()]);
    // The whole group: sh and its python child.
    let _ = Command::new("pkill")
        .args(["-KILL", "-P", &tree.id().to_string()])
        .status();
    let _ = tree.kill();
    let _ = tree.wait();
    assert_eq!(t.scope.mode, "pids");
    assert!(
        has(&t, &read.display().to_string(), "open", "ok"),
        "the renamed process's opens are missing"
    );
}
