//! `trace run --image`: a real OCI runtime (runc), the Debian fixture
//! image, a test suite bound in from the host.

use std::{fs, path::PathBuf, process::Command};

use crate::util::*;

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

/// Where `trace` keeps the OCI runtime's state of its containers.
const RUNTIME_ROOT: &str = "/run/trace/runc";

fn runc_list() -> std::process::Output {
    Command::new("runc")
        .args(["--root", RUNTIME_ROOT, "list"])
        .output()
        .unwrap()
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
        assert_eq!(t.scope.bind_mounts, ["/suite"]);
        // One exec: the suite's. Not `runc run`, not `runc init`.
        let execs = execs(t);
        assert_eq!(execs.len(), 1, "{execs:?}");
        assert_eq!(execs[0].argv, ["/usr/bin/python3", "/suite/test_app.py"]);
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
            .any(|a| a.mode == Some(OpenMode::Write)),
        "{:?}",
        accesses(t, "/etc/debian_version")
    );
}

#[test]
fn privileges_are_dockers_defaults_and_nothing_is_ambient() {
    let image = fixtures().join("bookworm-rootfs");
    let dir = tempdir();
    // As a non-root user: noNewPrivileges is off without a seccomp profile
    // (so setuid programs and file capabilities work, as under docker),
    // and no capability survives exec (inheritable and ambient empty).
    let script = "grep -E '^(NoNewPrivs|CapAmb|CapInh|CapEff)' /proc/self/status";
    let r = run_in(
        dir.path(),
        &["--image", image.to_str().unwrap(), "--user", "65534:65534"],
        &["/bin/sh", "-c", script],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    for line in [
        "NoNewPrivs:\t0",
        "CapAmb:\t0000000000000000",
        "CapInh:\t0000000000000000",
        "CapEff:\t0000000000000000",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    // Root keeps docker's default set (CHOWN ... AUDIT_WRITE, SETFCAP).
    let r = run_in(
        dir.path(),
        &["--image", image.to_str().unwrap()],
        &[
            "/bin/sh",
            "-c",
            "grep -E '^(CapEff|CapAmb)' /proc/self/status",
        ],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stdout().contains("CapEff:\t00000000a80425fb")
            && r.stdout().contains("CapAmb:\t0000000000000000"),
        "{}",
        r.stdout()
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
    let cg = r.trace().scope.cgroup.as_deref().unwrap().to_string();
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
    let id = r.trace().scope.container.as_deref().unwrap().to_string();
    let bundle = format!("trace-bundle-{}", id.strip_prefix("trace-").unwrap());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&bundle), "overlay still mounted");
    assert!(!std::env::temp_dir().join(&bundle).exists(), "bundle left");
    let list = runc_list();
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
    .spawn();
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let t = read_trace(dir.path()).expect("trace written");
    assert_eq!(t.exit.code, 143);
    let id = t.scope.container.as_deref().unwrap().to_string();
    let list = runc_list();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&id));
    let bundle = format!("trace-bundle-{}", id.strip_prefix("trace-").unwrap());
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

// A `trace` killed with SIGKILL: the supervisor it forked at start kills
// the container and removes what the run made; the next `trace` start
// removes whatever is still left of a dead run. Names carry the owner
// (`trace-<pid>-<start>-…`), so only the killed run's things are looked at.

/// What is left on the host of the `trace` process `pid` whose output
/// directory was `dir`: one line per leftover.
fn leftovers_of(pid: u32, dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let cg = format!("/trace-{pid}-");
    let dir_s = dir.display().to_string();
    for e in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let n = e.file_name().to_string_lossy().into_owned();
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // An exited process not yet reaped by init runs nothing.
        if stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'))
        {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cgroups = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        if cgroups.contains(&cg) || cmdline.contains(&dir_s) {
            found.push(format!("process {n}: {cmdline}"));
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bundle = format!("trace-bundle-{pid}-");
    for l in mountinfo.lines() {
        if l.contains(&bundle) {
            found.push(format!("mount {l}"));
        }
        let (pre, post) = l.split_once(" - ").unwrap();
        if matches!(post.split_whitespace().next(), Some("cgroup" | "cgroup2")) {
            let root = pre.split_whitespace().nth(4).unwrap();
            for e in fs::read_dir(root).unwrap().filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(&cg[1..]) {
                    found.push(format!("cgroup {}", e.path().display()));
                }
            }
        }
    }
    let prefixed = |d: &str, prefix: &str, what: &str, found: &mut Vec<String>| {
        for e in fs::read_dir(d).into_iter().flatten().filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(format!("{what} {}", e.path().display()));
            }
        }
    };
    prefixed(RUNTIME_ROOT, &cg[1..], "runtime state", &mut found);
    prefixed(
        "/run/trace/owners",
        &format!("{pid}-"),
        "owner record",
        &mut found,
    );
    let tmp = std::env::temp_dir().display().to_string();
    prefixed(&tmp, &bundle, "bundle", &mut found);
    for e in fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with('.') && n.contains(".tmp-") {
            found.push(format!("temporary {}", e.path().display()));
        }
    }
    found
}

fn wait_for(what: &str, child: &mut std::process::Child, ready: impl Fn() -> bool) {
    // Opening a compressed image in a debug build on a loaded machine is
    // slow: the deadline only catches a trace that never gets there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "trace ended before {what}"
        );
        assert!(std::time::Instant::now() < deadline, "never {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Kills `child` (a `trace` writing into `dir`) with SIGKILL once `ready`;
/// then nothing of it may keep running, and after one more `trace`
/// invocation nothing of it may be left.
fn kill_and_check(
    what: &str,
    mut child: std::process::Child,
    dir: &std::path::Path,
    ready: impl Fn() -> bool,
) {
    let pid = child.id();
    wait_for(what, &mut child, ready);
    assert!(
        !leftovers_of(pid, dir).is_empty(),
        "{what}: the run made nothing to look for"
    );
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // Nothing keeps running: the supervisor kills the container at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let running = || {
        leftovers_of(pid, dir)
            .into_iter()
            .filter(|l| l.starts_with("process"))
            .collect::<Vec<_>>()
    };
    while !running().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(running(), Vec::<String>::new(), "{what}: still running");
    let next = tempdir();
    let r = run_in(next.path(), &[], &["/bin/true"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(leftovers_of(pid, dir), Vec::<String>::new(), "{what}");
}

#[test]
fn killed_while_unpacking_the_image() {
    let image = fixtures().join("bookworm-oci");
    let dir = tempdir();
    // The per-run unpack (the cache's own kill safety: tests/cache.rs).
    let child = trace_cmd(
        dir.path(),
        &["--no-cache", "--image", image.to_str().unwrap()],
        &["/bin/true"],
    )
    .stderr(std::process::Stdio::null())
    .spawn();
    let pid = child.id();
    let tmp = std::env::temp_dir();
    kill_and_check("unpacking", child, dir.path(), || {
        fs::read_dir(&tmp).unwrap().filter_map(|e| e.ok()).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("trace-bundle-{pid}-"))
                && e.path().join("lower/usr/bin").exists()
        })
    });
}

#[test]
fn killed_while_the_container_runs() {
    let image = fixtures().join("bookworm-rootfs");
    let dir = tempdir();
    let shared = dir.path().join("m");
    fs::create_dir(&shared).unwrap();
    let mount = format!("{}:/m", shared.display());
    let child = trace_cmd(
        dir.path(),
        &["--image", image.to_str().unwrap(), "--mount", &mount],
        &["/bin/sh", "-c", "touch /m/started; sleep 600 & wait"],
    )
    .stderr(std::process::Stdio::null())
    .spawn();
    let started = shared.join("started");
    kill_and_check("running the container", child, dir.path(), || {
        started.exists()
    });
}

#[test]
fn killed_while_writing_the_trace() {
    let image = fixtures().join("bookworm-rootfs");
    let dir = tempdir();
    let child = trace_cmd(
        dir.path(),
        &["--image", image.to_str().unwrap()],
        &["/bin/true"],
    )
    .env("TRACE_DEBUG_STALL_WRITE", "trace.json")
    .stderr(std::process::Stdio::null())
    .spawn();
    let d = dir.path().to_path_buf();
    kill_and_check("writing the trace", child, dir.path(), || {
        fs::read_dir(&d).unwrap().filter_map(|e| e.ok()).any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".trace.json.tmp-")
        })
    });
    assert!(!dir.path().join("trace.json").exists());
}

#[test]
fn killed_while_minimize_builds() {
    let image = fixtures().join("bookworm-rootfs");
    let dir = tempdir();
    let out = dir.path().join("min");
    let child = TestCommand::trace()
        .args(["minimize", "--image", image.to_str().unwrap(), "-o"])
        .arg(&out)
        .args(["--", "/bin/sh", "-c", "echo ok"])
        .env("TRACE_DEBUG_STALL_WRITE", "min")
        .stderr(std::process::Stdio::null())
        .spawn();
    let d = dir.path().to_path_buf();
    kill_and_check("building the minimal image", child, dir.path(), || {
        fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with(".min.tmp-"))
    });
    assert!(!out.exists());
}

#[test]
fn a_running_trace_is_never_swept() {
    let image = fixtures().join("bookworm-rootfs");
    let dir = tempdir();
    let shared = dir.path().join("m");
    fs::create_dir(&shared).unwrap();
    let mount = format!("{}:/m", shared.display());
    let mut child = trace_cmd(
        dir.path(),
        &["--image", image.to_str().unwrap(), "--mount", &mount],
        &[
            "/bin/sh",
            "-c",
            "touch /m/started; while [ ! -e /m/go ]; do sleep 0.1; done; echo done",
        ],
    )
    .stderr(std::process::Stdio::null())
    .spawn();
    let started = shared.join("started");
    wait_for("running the container", &mut child, || started.exists());
    // Another trace starts (and sweeps) while this one runs.
    let other = tempdir();
    let r = run_in(other.path(), &[], &["/bin/true"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    fs::write(shared.join("go"), "").unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let t = read_trace(dir.path()).expect("trace written");
    assert_eq!(t.exit.code, 0);
}

// Container configuration the runtime would refuse only once started is
// an error of `trace` (one line, exit 125), never the command's failure.

fn config_error(args: &[&str], cmd: &[&str]) -> String {
    let dir = tempdir();
    let r = run_in(dir.path(), args, cmd);
    assert_eq!(r.code(), 125, "{args:?}: {}", r.stderr());
    assert!(r.trace.is_none());
    r.stderr()
}

/// An OCI layout without layers whose config has `config` as its
/// `config` object.
fn oci_with_config(config: serde_json::Value) -> tempfile::TempDir {
    let d = tempdir();
    let blobs = d.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = d.path().join("blob");
        fs::write(&tmp, bytes).unwrap();
        let out = Command::new("sha256sum").arg(&tmp).output().unwrap();
        let hex = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        fs::rename(&tmp, blobs.join(&hex)).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let (cd, cs) = put(cfg.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": []
    });
    let (md, ms) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}]
    });
    fs::write(d.path().join("index.json"), index.to_string()).unwrap();
    fs::write(
        d.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    d
}

#[test]
fn bad_container_configuration_is_an_error_of_trace() {
    let image = fixtures().join("bookworm-rootfs");
    let img = image.to_str().unwrap();
    let t = ["/bin/true"];
    let cases: &[(&[&str], &[&str], &str)] = &[
        (
            &["--env", "=x"],
            &t,
            "--env =x: expected K=V with a non-empty name K",
        ),
        (
            &["--env", "NOVALUE"],
            &t,
            "--env NOVALUE: expected K=V with a non-empty name K",
        ),
        (
            &["--workdir", "rel/dir"],
            &t,
            "--workdir \"rel/dir\": not an absolute path",
        ),
        (
            &["--user", "ghost"],
            &t,
            "--user \"ghost\": no user \"ghost\" in the image's /etc/passwd",
        ),
        (
            &["--user", "0:ghosts"],
            &t,
            "--user \"0:ghosts\": no group \"ghosts\" in the image's /etc/group",
        ),
        (
            &["--user", "1:2:3"],
            &t,
            "--user \"1:2:3\": expected uid[:gid] or name[:group]",
        ),
        (
            &["--mount", "/no/such/dir:/x"],
            &t,
            "--mount /no/such/dir:/x: No such file or directory (os error 2)",
        ),
        (
            &["--mount", "/tmp:/"],
            &t,
            "--mount /tmp:/: expected SRC:DST[:ro] with absolute paths, DST not /",
        ),
        (&[], &[""], "the command to run in the container is empty"),
    ];
    for (extra, cmd, line) in cases {
        let mut args = vec!["--image", img];
        args.extend_from_slice(extra);
        assert_eq!(
            config_error(&args, cmd),
            format!("trace: error: {line}\n"),
            "{extra:?}"
        );
    }
    // The same from the image's own configuration.
    for (config, line) in [
        (
            serde_json::json!({"Env": ["PATH=/bin", "=x"]}),
            "the image's Env entry \"=x\" is not K=V with a non-empty name K",
        ),
        (
            serde_json::json!({"WorkingDir": "app"}),
            "the image's WorkingDir \"app\" is not an absolute path",
        ),
        (
            serde_json::json!({"User": "app"}),
            "the image's User \"app\": no user \"app\" in the image's /etc/passwd",
        ),
    ] {
        let oci = oci_with_config(config);
        assert_eq!(
            config_error(&["--image", oci.path().to_str().unwrap()], &t),
            format!("trace: error: {line}\n")
        );
    }
    // verify: an error, not a FAIL of the suite.
    let out = TestCommand::trace()
        .args(["verify", "--image", img, "--env", "=x", "--", "/bin/true"])
        .expect_code(125);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "trace: error: --env =x: expected K=V with a non-empty name K\n"
    );
}
