//! `trace minimize` and `trace verify` end to end: the Debian fixture
//! image with python3, curl and nginx-light, three suites bound in from
//! the host, runc.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Output,
};

use crate::util::*;
use serde_json::Value;

fn full_image() -> PathBuf {
    let dir = std::env::var_os("TRACE_FIXTURES")
        .map(PathBuf::from)
        .expect("TRACE_FIXTURES not set: run the tests with `cargo xtask test`");
    let rootfs = dir.join("bookworm-rootfs");
    assert!(rootfs.join("usr/sbin/nginx").exists());
    rootfs
}

const PY_SUITE: &str = r#"import unittest, json, decimal, email.parser
class T(unittest.TestCase):
    def test_json(self):
        self.assertEqual(json.loads('[1]'), [1])
    def test_decimal(self):
        self.assertEqual(str(decimal.Decimal('1.10') + 1), '2.10')
    def test_package_data(self):
        self.assertIn('.', open('/etc/debian_version').read())
unittest.main()
"#;

const SH_SUITE: &str = r#"#!/bin/sh
set -e
echo "apple banana cherry" | tr ' ' '\n' | sort -r | head -n 1 | grep -q cherry
sed -n 's/^ID=//p' /etc/os-release | grep -qx debian
[ "$(printf 'a\nb\n' | wc -l)" -eq 2 ]
echo shell ok
"#;

const WEB_SUITE: &str = r#"#!/bin/sh
# nginx serves the image's own welcome page; curl fetches it.
set -e
PORT=$1
mkdir -p /tmp/ngx
cat > /tmp/ngx/nginx.conf <<CONF
daemon off;
pid /tmp/ngx/nginx.pid;
error_log /tmp/ngx/error.log;
events {}
http {
  access_log off;
  client_body_temp_path /tmp/ngx/body;
  proxy_temp_path /tmp/ngx/proxy;
  fastcgi_temp_path /tmp/ngx/fastcgi;
  uwsgi_temp_path /tmp/ngx/uwsgi;
  scgi_temp_path /tmp/ngx/scgi;
  server { listen 127.0.0.1:$PORT; root /usr/share/nginx/html; }
}
CONF
nginx -e /tmp/ngx/error.log -c /tmp/ngx/nginx.conf -p /tmp/ngx &
pid=$!
# Always wait a moment first: a suite that only sometimes runs `sleep`
# would only sometimes need it, and the minimal image would lack it.
sleep 0.3
ok=no
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
  if curl -fsS "http://127.0.0.1:$PORT/index.html" > /tmp/ngx/page 2>/dev/null; then ok=yes; break; fi
  sleep 0.2
done
kill "$pid"; wait "$pid" || true
[ "$ok" = yes ] && grep -q "Welcome to nginx" /tmp/ngx/page && echo "web ok"
"#;

/// A suite directory holding `name` with `body`.
fn suite(name: &str, body: &str) -> tempfile::TempDir {
    let d = tempdir();
    let f = d.path().join(name);
    fs::write(&f, body).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
    // runc's container user must be able to read it.
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn trace_cli(args: &[&str]) -> Output {
    TestCommand::trace().args(args).run()
}

/// `trace minimize` with the suite mounted at /suite; returns the output
/// and the report.
fn minimize(work: &Path, suite: &Path, extra: &[&str], cmd: &[&str]) -> (Output, Value) {
    minimize_from(&full_image(), work, suite, extra, cmd)
}

fn minimize_from(
    full: &Path,
    work: &Path,
    suite: &Path,
    extra: &[&str],
    cmd: &[&str],
) -> (Output, Value) {
    let out = work.join("min.oci");
    let mount = format!("{}:/suite:ro", suite.display());
    let mut args = vec![
        "minimize",
        "--image",
        full.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mount",
        &mount,
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(cmd);
    let o = trace_cli(&args);
    let report = fs::read(work.join("min.oci.report.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null);
    (o, report)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_passed_both(o: &Output) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(
        e.lines()
            .any(|l| l.trim_start().starts_with("tests") && l.matches("passed").count() == 2),
        "{e}"
    );
}

fn much_smaller(r: &Value) {
    let (before, after) = (
        r["before"]["bytes"].as_u64().unwrap(),
        r["after"]["bytes"].as_u64().unwrap(),
    );
    assert!(before > 5 * after, "{before} -> {after}");
}

fn kept(r: &Value, p: &str) -> bool {
    !r["kept"][p].is_null()
}

#[test]
fn python_suite_minimized_without_a_shell() {
    let s = suite("test_app.py", PY_SUITE);
    let work = tempdir();
    // The full image as imported by skopeo/umoci (an OCI layout).
    let oci = full_image().parent().unwrap().join("bookworm-oci");
    let (o, r) = minimize_from(
        &oci,
        work.path(),
        s.path(),
        &[],
        &["/usr/bin/python3", "/suite/test_app.py"],
    );
    assert_passed_both(&o);
    much_smaller(&r);
    for shell in ["/usr/bin/dash", "/usr/bin/bash", "/bin", "/usr/bin/sh"] {
        assert!(!kept(&r, shell), "{shell} kept");
    }
    assert!(kept(&r, "/usr/bin/python3.11"));
    // The suite itself came from the host and is not in the image.
    assert!(
        r["kept"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("/suite"))
    );
}

#[test]
fn shell_suite_with_coreutils_grep_and_sed() {
    let s = suite("test.sh", SH_SUITE);
    let work = tempdir();
    let (o, r) = minimize(work.path(), s.path(), &[], &["/bin/sh", "/suite/test.sh"]);
    assert_passed_both(&o);
    much_smaller(&r);
    for tool in [
        "/usr/bin/dash",
        "/usr/bin/sed",
        "/usr/bin/grep",
        "/usr/bin/sort",
        "/usr/bin/tr",
    ] {
        assert!(kept(&r, tool), "{tool} missing");
    }
    assert!(!kept(&r, "/usr/bin/python3.11"));
    assert!(!kept(&r, "/usr/bin/apt"));
}

#[test]
fn nginx_serves_a_page_curl_fetches() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let s = suite("web.sh", WEB_SUITE);
    let work = tempdir();
    let (o, r) = minimize(
        work.path(),
        s.path(),
        &[],
        &["/bin/sh", "/suite/web.sh", &port],
    );
    assert_passed_both(&o);
    much_smaller(&r);
    assert!(kept(&r, "/usr/sbin/nginx"));
    assert!(kept(&r, "/usr/bin/curl"));
    assert!(kept(&r, "/usr/share/nginx/html/index.html"));
    assert!(!kept(&r, "/usr/bin/python3.11"));
}

#[test]
fn excluding_a_needed_file_fails_verification_and_names_it() {
    let s = suite("test_app.py", PY_SUITE);
    let work = tempdir();
    let (o, _) = minimize(
        work.path(),
        s.path(),
        &["--exclude", "/etc/debian_version"],
        &["/usr/bin/python3", "/suite/test_app.py"],
    );
    let e = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{e}");
    assert!(e.contains("FAIL"), "{e}");
    let listed: Vec<&str> = e
        .lines()
        .skip_while(|l| !l.contains("add with --include"))
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(listed, vec!["/etc/debian_version"], "{e}");
}

#[test]
fn verify_alone_passes_and_fails() {
    let s = suite("test_app.py", PY_SUITE);
    let work = tempdir();
    let (o, _) = minimize(
        work.path(),
        s.path(),
        &[],
        &["/usr/bin/python3", "/suite/test_app.py"],
    );
    assert_passed_both(&o);
    let min = work.path().join("min.oci");
    let full = full_image();
    let mount = format!("{}:/suite:ro", s.path().display());
    let ok = trace_cli(&[
        "verify",
        "--image",
        min.to_str().unwrap(),
        "--mount",
        &mount,
        "--",
        "/usr/bin/python3",
        "/suite/test_app.py",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert!(stderr(&ok).contains("trace verify: PASS"));
    // A command the minimal image was not built for (/etc/issue: not
    // /etc/os-release, which goes with the package database).
    let bad = trace_cli(&[
        "verify",
        "--image",
        min.to_str().unwrap(),
        "--full",
        full.to_str().unwrap(),
        "--",
        "/usr/bin/python3",
        "-c",
        "open('/etc/issue').read()",
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    let e = stderr(&bad);
    assert!(e.contains("trace verify: FAIL (exit 1)"), "{e}");
    assert!(e.lines().any(|l| l.trim() == "/etc/issue"), "{e}");
}

#[test]
fn seccomp_profile_passes_the_suite_and_refuses_the_rest() {
    let s = suite("test_app.py", PY_SUITE);
    let work = tempdir();
    let (o, _) = minimize(
        work.path(),
        s.path(),
        &[],
        &["/usr/bin/python3", "/suite/test_app.py"],
    );
    assert_passed_both(&o);
    let min = work.path().join("min.oci");
    let profile = work.path().join("profile.json");
    trace_cli(&[
        "seccomp",
        work.path().join("min.oci.trace.json").to_str().unwrap(),
        "-o",
        profile.to_str().unwrap(),
    ]);
    let p: Value = serde_json::from_slice(&fs::read(&profile).unwrap()).unwrap();
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    let mount = format!("{}:/suite:ro", s.path().display());
    let (m, pr) = (min.to_str().unwrap(), profile.to_str().unwrap());
    // The suite passes under the profile, with runc applying it.
    let ok = trace_cli(&[
        "verify",
        "--image",
        m,
        "--seccomp",
        pr,
        "--mount",
        &mount,
        "--",
        "/usr/bin/python3",
        "/suite/test_app.py",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    // A syscall the suite never made is refused under the profile...
    let probe = "import os; os.getpriority(os.PRIO_PROCESS, 0)";
    let refused = trace_cli(&[
        "verify",
        "--image",
        m,
        "--seccomp",
        pr,
        "--",
        "/usr/bin/python3",
        "-c",
        probe,
    ]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("Operation not permitted"),
        "{}",
        stderr(&refused)
    );
    // ...and allowed without it.
    let free = trace_cli(&[
        "verify",
        "--image",
        m,
        "--",
        "/usr/bin/python3",
        "-c",
        probe,
    ]);
    assert_eq!(free.status.code(), Some(0), "{}", stderr(&free));
}

/// An unknown option is a usage error (exit 2) before anything runs, not
/// the program to trace.
#[test]
fn unknown_options_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("min.oci");
    let o = trace_cli(&[
        "minimize",
        "--image",
        full_image().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-such-flag",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).lines().next(),
        Some("error: unexpected argument '--no-such-flag' found")
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
