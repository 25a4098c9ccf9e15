//! `trace run --image`: a real OCI runtime (runc), the Debian fixture
//! image, a test suite bound in from the host.
mod common;

use std::{fs, path::PathBuf, process::Command};

use common::*;

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("TRACE_FIXTURES")
        .map(PathBuf::from)
        .expect("TRACE_FIXTURES not set: run the tests with `cargo xtask test`");
    assert!(dir.join("bookworm-rootfs/usr/bin/python3").exists());
    dir
}

const SUITE: &str = r#"import unittest, json, decimal
class T(unittest.TestCase):
    def test_json(self):
        self.assertEqual(json.loads('[1]'), [1])
    def test_data(self):
        self.assertIn('.', open('/etc/debian_version').read())
unittest.main()
"#;

fn suite_dir(fail: bool) -> tempfile::TempDir {
    let d = tempdir();
    let body = if fail {
        SUITE.replace("[1]'), [1]", "[1]'), [2]")
    } else {
        SUITE.to_string()
    };
    fs::write(d.path().join("test_app.py"), body).unwrap();
    d
}

#[test]
fn only_the_container_is_traced_with_paths_as_it_saw_them() {
    let suite = suite_dir(false);
    for image in [
        fixtures().join("bookworm-rootfs"),
        fixtures().join("bookworm-oci"),
        fixtures().join("bookworm-docker.tar"),
    ] {
        let dir = tempdir();
        let mount = format!("{}:/suite:ro", suite.path().display());
        let r = run_in(
            dir.path(),
            &["--image", image.to_str().unwrap(), "--mount", &mount],
            &["/usr/bin/python3", "/suite/test_app.py"],
        );
        assert_eq!(r.code(), 0, "{}", r.stderr());
        assert!(r.stderr().contains("Ran 2 tests"), "{}", r.stderr());
        let t = r.trace();
        assert_complete(t);
        assert_eq!(t["scope"]["bind_mounts"], serde_json::json!(["/suite"]));
        // One exec: the suite's. Not `runc run`, not `runc init`.
        let execs = execs(t);
        assert_eq!(execs.len(), 1, "{execs:?}");
        assert_eq!(
            execs[0]["argv"],
            serde_json::json!(["/usr/bin/python3", "/suite/test_app.py"])
        );
        // Paths are the container's: the suite under /suite, not the host dir.
        assert!(has(t, "/suite/test_app.py", "open", "ok"));
        assert!(has(t, "/etc/debian_version", "open", "ok"));
        let host_suite = suite.path().display().to_string();
        for p in paths(t) {
            assert!(!p.starts_with(&host_suite), "host path {p}");
            assert!(
                !p.contains("runc") && !p.contains("trace-bundle"),
                "runtime path {p}"
            );
        }
    }
}

#[test]
fn exit_status_env_workdir_and_a_read_only_source() {
    let suite = suite_dir(true);
    let image = fixtures().join("bookworm-rootfs");
    let dir = tempdir();
    let mount = format!("{}:/suite", suite.path().display());
    let r = run_in(
        dir.path(),
        &["--image", image.to_str().unwrap(), "--mount", &mount],
        &["/usr/bin/python3", "/suite/test_app.py"],
    );
    assert_eq!(r.code(), 1, "a failing suite fails trace run");
    let before = fs::read(image.join("etc/debian_version")).unwrap();
    let script =
        "echo \"$GREETING from $(pwd)\"; echo changed > /etc/debian_version; rm /usr/bin/apt";
    let r = run_in(
        dir.path(),
        &[
            "--image",
            image.to_str().unwrap(),
            "--env",
            "GREETING=hello",
            "--workdir",
            "/usr/share",
        ],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "hello from /usr/share\n");
    // The container's writes went to the overlay, not the image.
    assert_eq!(fs::read(image.join("etc/debian_version")).unwrap(), before);
    assert!(image.join("usr/bin/apt").exists());
    let t = r.trace();
    assert!(
        accesses(t, "/etc/debian_version")
            .iter()
            .any(|a| a["mode"] == "write"),
        "{:?}",
        accesses(t, "/etc/debian_version")
    );
}

#[test]
fn nothing_is_left_behind() {
    let image = fixtures().join("bookworm-oci");
    let dir = tempdir();
    let r = run_in(
        dir.path(),
        &["--image", image.to_str().unwrap()],
        &["/bin/true"],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let cg = r.trace()["scope"]["cgroup"].as_str().unwrap().to_string();
    let name = cg.rsplit('/').next().unwrap().to_string();
    assert!(!std::path::Path::new(&cg).exists());
    for v1 in ["cpu", "memory", "pids", "devices"] {
        assert!(
            !PathBuf::from("/sys/fs/cgroup")
                .join(v1)
                .join(&name)
                .exists(),
            "{v1}/{name}"
        );
    }
    // Other tests run containers at the same time: look for this one only.
    let id = r.trace()["scope"]["container"]
        .as_str()
        .unwrap()
        .to_string();
    let bundle = id.splitn(3, '-').nth(2).unwrap().to_string();
    assert!(bundle.starts_with("trace-bundle-"), "{id}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&bundle), "overlay still mounted");
    assert!(!std::env::temp_dir().join(&bundle).exists(), "bundle left");
    let list = Command::new("runc").arg("list").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&id),
        "container left"
    );
}

#[test]
fn sigterm_reaches_the_container_and_everything_is_cleaned_up() {
    let image = fixtures().join("bookworm-rootfs");
    let dir = tempdir();
    let mut child = trace_cmd(
        dir.path(),
        &["--image", image.to_str().unwrap()],
        // The container's PID 1 ignores SIGTERM unless it handles it (as
        // under docker): this one does.
        &["/bin/sh", "-c", "trap 'exit 143' TERM; sleep 30 & wait"],
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let t = read_trace(dir.path()).expect("trace written");
    assert_eq!(t["exit"]["code"], 143);
    let id = t["scope"]["container"].as_str().unwrap().to_string();
    let list = Command::new("runc").arg("list").output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&id));
    let bundle = id.splitn(3, '-').nth(2).unwrap().to_string();
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&bundle)
    );
}

#[test]
fn crun_on_hybrid_cgroups_is_refused_clearly() {
    let bin = tempdir();
    let crun = bin.path().join("crun");
    fs::write(&crun, "#!/bin/sh\nexit 1\n").unwrap();
    let dir = tempdir();
    let image = fixtures().join("bookworm-rootfs");
    let r = run_in(
        dir.path(),
        &[
            "--image",
            image.to_str().unwrap(),
            "--runtime",
            crun.to_str().unwrap(),
        ],
        &["/bin/true"],
    );
    let hybrid = !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(
        r.stderr()
            .contains("crun does not work with this machine's hybrid cgroups"),
        hybrid,
        "{}",
        r.stderr()
    );
    assert_ne!(r.code(), 0);
}
