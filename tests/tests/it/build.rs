//! End-to-end tests of `trace build`: fixtures made by debootstrap, umoci
//! and skopeo (`cargo xtask fixtures`), minimal images checked by skopeo,
//! umoci and runc.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::util::*;
use serde_json::Value;

fn rootfs() -> PathBuf {
    fixtures().join("bookworm-rootfs")
}

const PY: &str = "import json, email.parser, http.client, decimal, sqlite3\n\
data = open('/usr/share/common-licenses/Apache-2.0').read()\n\
assert 'Apache' in data\n\
print(json.dumps({'ok': True, 'sqlite': sqlite3.sqlite_version_info[0]}))";

const SH: &str = "set -e\n\
n=$(grep -c . /etc/debian_version)\n\
echo \"lines=$n\" | sed 's/lines/count/' | tr a-z A-Z\n\
ls /usr/share/common-licenses >/dev/null\n\
head -c 4 /etc/os-release | wc -c";

fn check(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Traces `argv` chrooted into the fixture rootfs.
fn trace_in_rootfs(dir: &Path, argv: &[&str]) -> PathBuf {
    let root = rootfs();
    let r = run_in(dir, &["--root", root.to_str().unwrap()], argv);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout(), r.stderr());
    assert_complete(r.trace());
    dir.join("trace.json")
}

fn build(args: &[&str]) -> std::process::Output {
    TestCommand::trace().arg("build").args(args).run()
}

/// `trace build --from SRC --trace TRACE -o OUT` plus `extra`, which
/// must succeed; returns its stderr summary.
fn build_from(src: &Path, trace: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "--from",
        src.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    build_ok(&args)
}

fn build_ok(args: &[&str]) -> String {
    let out = build(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "trace build {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Unpacks `layout:tag` with umoci and runs `argv` in it with runc;
/// returns stdout. Also returns the bundle's rootfs for inspection.
fn run_with_runc(work: &Path, layout: &Path, tag: &str, argv: &[&str]) -> (String, PathBuf) {
    let bundle = work.join(format!("bundle-{tag}"));
    check(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle),
    );
    let config_path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&config_path).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(argv);
    config["process"]["terminal"] = Value::Bool(false);
    config["process"]["cwd"] = Value::String("/".into());
    fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let id = format!("trace-it-{}-{tag}", std::process::id());
    let out = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc")
        .args(["delete", "--force", &id])
        .output();
    assert!(
        out.status.success(),
        "runc run {argv:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        bundle.join("rootfs"),
    )
}

#[test]
fn python_script_runs_in_its_minimal_image() {
    let dir = tempdir();
    let work = dir.path();
    let trace = trace_in_rootfs(work, &["/usr/bin/python3", "-c", PY]);
    let out = work.join("min.oci");
    let report = work.join("report.json");
    let summary = build_from(
        &rootfs(),
        &trace,
        &out,
        &["--tag", "py", "--report", report.to_str().unwrap()],
    );
    assert!(summary.contains("smaller"), "{summary}");
    // An independent reader accepts it.
    let inspect = check(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:py", out.display())),
    );
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
    // The same program passes inside the minimal image.
    let (stdout, root) = run_with_runc(work, &out, "py", &["/usr/bin/python3", "-c", PY]);
    assert_eq!(stdout.trim(), "{\"ok\": true, \"sqlite\": 3}");
    // Only what was used is there: no shell, no package manager, no perl.
    for absent in [
        "bin/sh",
        "usr/bin/dash",
        "usr/bin/bash",
        "usr/bin/apt",
        "usr/bin/perl",
        "usr/bin/grep",
    ] {
        assert!(
            !root.join(absent).exists() && !root.join(absent).is_symlink(),
            "{absent} kept"
        );
    }
    for present in [
        "usr/bin/python3",
        "usr/share/common-licenses/Apache-2.0",
        "etc/passwd",
        "tmp",
    ] {
        assert!(root.join(present).exists(), "{present} missing");
    }
    let tmp_mode = fs::metadata(root.join("tmp")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(tmp_mode.permissions().mode() & 0o7777, 0o1777);
    let r: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert!(r["before"]["bytes"].as_u64().unwrap() > 5 * r["after"]["bytes"].as_u64().unwrap());
    // python3 is a symlink to python3.11: both kept, the link as a link.
    assert!(r["kept"]["/usr/bin/python3"].is_string());
    assert!(root.join("usr/bin/python3").is_symlink());
    assert_eq!(r["kept"]["/usr/bin/python3.11"], "traced");
    // The loader: PT_INTERP names /lib64/ld-linux-x86-64.so.2; every link
    // on the way is kept as a link, the file as a shared library.
    assert_eq!(r["kept"]["/lib64"], "symlink");
    assert_eq!(r["kept"]["/usr/lib64/ld-linux-x86-64.so.2"], "symlink");
    assert_eq!(
        r["kept"]["/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"],
        "shared-library"
    );
    assert!(root.join("lib64").is_symlink());
    // The package database, trimmed: dpkg itself reads it.
    let admindir = format!("--admindir={}", root.join("var/lib/dpkg").display());
    let listed = check(Command::new("dpkg-query").args([&admindir, "-W", "-f=${Package}\\n"]));
    let listed: Vec<&str> = listed.lines().collect();
    let kept_pkgs: Vec<&str> = r["packages"]["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(listed, kept_pkgs);
    assert!(
        listed.contains(&"python3.11-minimal") && listed.contains(&"libc6"),
        "{listed:?}"
    );
    for gone in ["apt", "perl-base", "dash", "grep", "nginx-light"] {
        assert!(!listed.contains(&gone), "{gone} still listed");
    }
    let owner = check(Command::new("dpkg-query").args([&admindir, "-S", "/usr/bin/python3.11"]));
    assert!(owner.starts_with("python3.11-minimal:"), "{owner}");
    assert!(
        root.join("var/lib/dpkg/status.d/python3.11-minimal")
            .exists()
    );
    assert!(r["missing_libraries"].as_array().unwrap().is_empty());
}

#[test]
fn shell_script_runs_in_its_minimal_image() {
    let dir = tempdir();
    let work = dir.path();
    let trace = trace_in_rootfs(work, &["/bin/sh", "-c", SH]);
    let out = work.join("sh.oci");
    build_from(&rootfs(), &trace, &out, &["--tag", "sh"]);
    let (stdout, root) = run_with_runc(work, &out, "sh", &["/bin/sh", "-c", SH]);
    let expected = check(
        Command::new("chroot")
            .arg(rootfs())
            .args(["/bin/sh", "-c", SH]),
    );
    assert_eq!(stdout, expected);
    assert!(root.join("usr/bin/dash").exists());
    assert!(
        root.join("bin").is_symlink(),
        "/bin -> usr/bin kept as a symlink"
    );
    assert!(!root.join("usr/bin/python3.11").exists());
    assert!(!root.join("usr/bin/apt-get").exists());
}

#[test]
fn same_inputs_give_identical_images_from_every_source_format() {
    let dir = tempdir();
    let work = dir.path();
    let trace = trace_in_rootfs(work, &["/usr/bin/python3", "-c", PY]);
    let f = fixtures();
    let mut digests = Vec::new();
    for (i, src) in [
        rootfs(),
        f.join("bookworm-oci"),
        f.join("bookworm-oci.tar"),
        f.join("bookworm-docker.tar"),
        rootfs(),
    ]
    .iter()
    .enumerate()
    {
        let out = work.join(format!("out-{i}.tar"));
        let report = work.join(format!("report-{i}.json"));
        build_from(
            src,
            &trace,
            &out,
            &[
                "--format",
                "oci-archive",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        let r: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
        digests.push((r["kept"].clone(), fs::read(&out).unwrap()));
        check(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci-archive:{}", out.display())),
        );
    }
    // The same files are kept whatever the source format...
    for d in &digests[1..] {
        assert_eq!(d.0, digests[0].0);
    }
    // ...and the same source gives byte-identical output.
    assert!(digests[0].1 == digests[4].1, "rebuild differs");
}

#[test]
fn docker_archive_output_is_loadable() {
    let dir = tempdir();
    let work = dir.path();
    let trace = trace_in_rootfs(work, &["/bin/sh", "-c", SH]);
    let out = work.join("min-docker.tar");
    build_from(
        &fixtures().join("bookworm-docker.tar"),
        &trace,
        &out,
        &["--format", "docker-archive", "--tag", "trace/min:latest"],
    );
    let inspect = check(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", out.display())),
    );
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
    // The source image's config is carried over.
    let config = check(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", out.display())),
    );
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    // Round trip through skopeo into an OCI layout, then run it.
    let layout = work.join("copied");
    check(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("docker-archive:{}", out.display()))
            .arg(format!("oci:{}:copied", layout.display())),
    );
    let (stdout, _) = run_with_runc(work, &layout, "copied", &["/bin/sh", "-c", SH]);
    assert!(stdout.contains("COUNT=1"), "{stdout}");
}

#[test]
fn include_exclude_and_setuid() {
    let dir = tempdir();
    let work = dir.path();
    let trace = trace_in_rootfs(work, &["/bin/sh", "-c", SH]);
    let list = work.join("extra.list");
    fs::write(&list, "# kept for debugging\n/usr/bin/su\n").unwrap();
    let out = work.join("rules.oci");
    let report = work.join("report.json");
    build_from(
        &rootfs(),
        &trace,
        &out,
        &[
            "--tag",
            "rules",
            "--include",
            "/etc/security/*.conf",
            "--include-from",
            list.to_str().unwrap(),
            "--exclude",
            "/usr/bin/wc",
            "--no-package-db",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let r: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["kept"]["/usr/bin/su"], "include");
    assert_eq!(r["kept"]["/etc/security/limits.conf"], "include");
    assert_eq!(r["excluded"]["/usr/bin/wc"], "/usr/bin/wc");
    let bundle = work.join("unpacked");
    check(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:rules", out.display()))
            .arg(&bundle),
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let su = fs::metadata(bundle.join("rootfs/usr/bin/su")).unwrap();
    let src = fs::metadata(rootfs().join("usr/bin/su")).unwrap();
    assert_eq!(
        su.permissions().mode() & 0o7777,
        src.permissions().mode() & 0o7777
    );
    assert_ne!(su.permissions().mode() & 0o4000, 0, "setuid kept");
    assert_eq!((su.uid(), su.gid()), (src.uid(), src.gid()));
    assert!(!bundle.join("rootfs/usr/bin/wc").exists());
    assert!(
        !bundle.join("rootfs/var/lib/dpkg/status").exists(),
        "--no-package-db"
    );
    assert!(r["packages"].is_null());
}

#[test]
fn bad_inputs_are_one_clear_error_and_leave_nothing() {
    let dir = tempdir();
    let work = dir.path();
    let trace = trace_in_rootfs(work, &["/bin/sh", "-c", "true"]);
    let out = work.join("never.oci");
    let expect_fail = |args: &[&str], needle: &str| {
        let o = build(args);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(125), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        assert!(!out.exists(), "output written");
    };
    let t = trace.to_str().unwrap();
    let o = out.to_str().unwrap();
    let r = rootfs();
    let r = r.to_str().unwrap();
    // A trace of another format version.
    let mut v: Value = serde_json::from_slice(&fs::read(&trace).unwrap()).unwrap();
    v["version"] = 3.into();
    let bad_trace = work.join("v3.json");
    fs::write(&bad_trace, v.to_string()).unwrap();
    expect_fail(
        &["--from", r, "--trace", bad_trace.to_str().unwrap(), "-o", o],
        "version 3",
    );
    // A source that is not an image.
    let junk = work.join("junk.tar");
    fs::write(&junk, b"this is not a tar file at all").unwrap();
    expect_fail(
        &["--from", junk.to_str().unwrap(), "--trace", t, "-o", o],
        "junk.tar",
    );
    expect_fail(
        &["--from", "/nonexistent/src", "--trace", t, "-o", o],
        "/nonexistent/src",
    );
    // An --include that is not there.
    expect_fail(
        &[
            "--from",
            r,
            "--trace",
            t,
            "-o",
            o,
            "--include",
            "/no/such/file",
        ],
        "/no/such/file",
    );
    // An output that exists is never overwritten.
    let existing = work.join("exists.oci");
    fs::create_dir(&existing).unwrap();
    fs::write(existing.join("keep"), "x").unwrap();
    let o2 = build(&["--from", r, "--trace", t, "-o", existing.to_str().unwrap()]);
    assert_eq!(o2.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&o2.stderr).contains("already exists"));
    assert_eq!(fs::read(existing.join("keep")).unwrap(), b"x");
    // Nothing else was left in the work directory.
    let mut names: Vec<String> = fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["exists.oci", "junk.tar", "trace.json", "v3.json"]
    );
}

/// A rootfs file named like a whiteout cannot be stored in a layer (a
/// runtime would delete instead of create it): refused, naming it.
#[test]
fn a_file_named_like_a_whiteout_is_refused() {
    let dir = tempdir();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("opt/q")).unwrap();
    fs::write(src.join("opt/q/.wh.victim"), "data").unwrap();
    let trace = trace_in_rootfs(dir.path(), &["/bin/sh", "-c", "true"]);
    let out = dir.path().join("never.oci");
    let o = build(&[
        "--from",
        src.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--include",
        "/opt/q/.wh.victim",
        "-o",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(125), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/opt/q/.wh.victim") && stderr.contains(".wh."),
        "{stderr}"
    );
    assert!(!out.exists(), "output written");
}

/// A layer that decompresses past `--max-layer-bytes` is refused with one
/// line naming it, before anything is written.
#[test]
fn a_layer_expanding_past_the_limit_is_refused() {
    let dir = tempdir();
    let work = dir.path();
    let trace = trace_in_rootfs(work, &["/bin/sh", "-c", "true"]);
    let layout = fixtures().join("bookworm-oci");
    let blob = |digest: &str| -> Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    let out = work.join("never.oci");
    // The layers are read (a cached tree of them would not be).
    let o = build(&[
        "--no-cache",
        "--from",
        layout.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--max-layer-bytes",
        "1M",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "trace: error: reading the source image: layer 1/{} {}: decompresses to more than 1048576 bytes (--max-layer-bytes); refusing it\n",
            layers.len(),
            layers[0]["digest"].as_str().unwrap()
        )
    );
    assert!(!out.exists());
}

/// A trace entry whose path is not canonical is refused by name, and
/// `trace seccomp` refuses a syscall name outside the architecture's table.
#[test]
fn traces_with_bad_paths_or_names_are_refused() {
    let dir = tempdir();
    let work = dir.path();
    let trace = trace_in_rootfs(work, &["/bin/sh", "-c", "true"]);
    let mut v: Value = serde_json::from_slice(&fs::read(&trace).unwrap()).unwrap();
    let n = v["files"].as_array().unwrap().len();
    v["files"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"path": "/etc/../etc/shadow",
            "accesses": [{"op": "open", "syscall": "openat", "result": "ok"}]}));
    let bad = work.join("bad.json");
    fs::write(&bad, v.to_string()).unwrap();
    let out = work.join("never.oci");
    let o = build(&[
        "--from",
        rootfs().to_str().unwrap(),
        "--trace",
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let line = format!(
        "trace: error: {}: files[{n}] \"/etc/../etc/shadow\": path has a \"..\" component\n",
        bad.display()
    );
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(String::from_utf8_lossy(&o.stderr), line);
    assert!(!out.exists());
    // merge does not copy it either.
    let merged = work.join("merged.json");
    let o = TestCommand::trace()
        .args(["merge", "-o", merged.to_str().unwrap()])
        .args([&trace, &bad])
        .expect_code(125);
    assert_eq!(String::from_utf8_lossy(&o.stderr), line);
    assert!(!merged.exists());
    // A syscall name that is not in the table.
    let mut v: Value = serde_json::from_slice(&fs::read(&trace).unwrap()).unwrap();
    v["syscalls"]["names"][0] = "no_such_call".into();
    fs::write(&bad, v.to_string()).unwrap();
    let profile = work.join("profile.json");
    let o = TestCommand::trace()
        .args(["seccomp", "-o", profile.to_str().unwrap()])
        .arg(&bad)
        .expect_code(125);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "trace: error: the trace names syscall \"no_such_call\", which is not in the {} syscall table\n",
            v["syscalls"]["arch"].as_str().unwrap()
        )
    );
    assert!(!profile.exists());
}
