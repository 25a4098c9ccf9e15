//! Precision and granularity end to end, on the "apps" fixture (Debian
//! with git, ca-certificates and Pygments from PyPI): a suite passes at
//! `file` level with no interpreter it never ran; a second, realistic
//! workload fails at `file` and passes at the level that covers it;
//! `--runs 3` names the file only some runs used.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Output,
};

use crate::util::*;
use serde_json::Value;

fn apps_image() -> PathBuf {
    let dir = std::env::var_os("TRACE_FIXTURES")
        .map(PathBuf::from)
        .expect("TRACE_FIXTURES not set: run the tests with `cargo xtask test`");
    let rootfs = dir.join("bookworm-apps1-rootfs");
    assert!(rootfs.join("usr/bin/git").exists(), "no apps fixture");
    rootfs
}

/// A directory of workload files, readable by the container's user.
fn workloads(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempdir();
    for (name, body) in files {
        let f = d.path().join(name);
        fs::write(&f, body).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn trace_cli(args: &[&str]) -> Output {
    TestCommand::trace().args(args).run()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `trace minimize` of `cmd` with the workloads at /w; the report.
fn minimize(work: &Path, w: &Path, name: &str, extra: &[&str], cmd: &[&str]) -> (Output, Value) {
    let out = work.join(name);
    let mount = format!("{}:/w:ro", w.display());
    let image = apps_image();
    let mut args = vec![
        "minimize",
        "--image",
        image.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mount",
        &mount,
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(cmd);
    let o = trace_cli(&args);
    let report = fs::read(work.join(format!("{name}.report.json")))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null);
    (o, report)
}

/// `trace verify` of `cmd` in `image`, with the full image for hints.
fn verify(image: &Path, w: &Path, cmd: &[&str]) -> Output {
    let mount = format!("{}:/w:ro", w.display());
    let full = apps_image();
    let mut args = vec![
        "verify",
        "--image",
        image.to_str().unwrap(),
        "--full",
        full.to_str().unwrap(),
        "--mount",
        &mount,
        "--",
    ];
    args.extend_from_slice(cmd);
    trace_cli(&args)
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

fn kept(r: &Value, p: &str) -> bool {
    !r["kept"][p].is_null()
}

fn kept_paths(r: &Value) -> Vec<String> {
    r["kept"].as_object().unwrap().keys().cloned().collect()
}

fn pulled_by(r: &Value, p: &str) -> String {
    r["pulled_by"][p].as_str().unwrap_or("").to_string()
}

const GIT_SUITE: &str = r#"#!/bin/sh
set -e
export HOME=/tmp/h GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@x
mkdir -p /tmp/h /tmp/repo
cd /tmp/repo
git init -q
echo hello > a.txt
git add a.txt
git commit -qm first
echo world >> a.txt
git commit -qam second
git log --oneline | grep -q second
git diff HEAD~1 --stat | grep -q a.txt
git branch feature
git checkout -q feature
git status --short
echo git ok
"#;

const PY_SUITE: &str = r#"import io, json, tarfile, unittest
class T(unittest.TestCase):
    def test_json(self):
        self.assertEqual(json.loads('{"a": [1]}'), {"a": [1]})
    def test_tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = b"x" * 10
            info = tarfile.TarInfo("x.txt"); info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        self.assertIn(b"x.txt", buf.getvalue())
unittest.main()
"#;

#[test]
fn git_and_python_suites_keep_no_interpreter_they_never_ran() {
    let w = workloads(&[("git.sh", GIT_SUITE), ("test_py.py", PY_SUITE)]);
    let work = tempdir();
    let (o, r) = minimize(
        work.path(),
        w.path(),
        "git.oci",
        &[],
        &["/bin/sh", "/w/git.sh"],
    );
    assert_passed_both(&o);
    // `git init` copies hooks/fsmonitor-watchman.sample (#!/usr/bin/perl):
    // read, never run.
    assert!(kept(&r, "/usr/bin/git"));
    assert!(
        kept_paths(&r).iter().all(|p| !p.contains("perl")),
        "perl kept: {:?}",
        r["interpreters"]
    );
    assert!(
        r["interpreters"].as_array().unwrap().is_empty(),
        "{}",
        r["interpreters"]
    );

    let (o, r) = minimize(
        work.path(),
        w.path(),
        "py.oci",
        &[],
        &["/usr/bin/python3", "/w/test_py.py"],
    );
    assert_passed_both(&o);
    // tarfile.py starts with `#!/usr/bin/env python3`; it was imported.
    assert!(kept(&r, "/usr/lib/python3.11/tarfile.py"));
    assert!(!kept(&r, "/usr/bin/env"), "{}", r["interpreters"]);
    let pkgs = r["packages"]["kept"].as_array().unwrap();
    assert!(!pkgs.iter().any(|p| p == "coreutils"), "{pkgs:?}");
}

const PYG_W1: &str = r#"import email, importlib.metadata
from pygments import highlight
from pygments.lexers import get_lexer_by_name
from pygments.formatters import get_formatter_by_name
out = highlight("def f(x):\n    return x + 1\n", get_lexer_by_name("python"), get_formatter_by_name("html"))
assert "<span" in out, out
print(email.message_from_string("Subject: hi\n\nbody")["Subject"])
"#;

/// The same app used another way: a C snippet (a lexer module Pygments
/// imports only when asked for it) and a stdlib submodule w1 never used.
const PYG_W2: &str = r#"from email.mime.text import MIMEText
from pygments import highlight
from pygments.lexers import get_lexer_by_name
from pygments.formatters import get_formatter_by_name
out = highlight("int main(void) { return 0; }\n", get_lexer_by_name("c"), get_formatter_by_name("html"))
assert "<span" in out, out
print(MIMEText("hi").as_string().splitlines()[0])
"#;

const PYG_VERSION: &str = r#"import importlib.metadata
assert importlib.metadata.version("pygments") == "2.21.0"
print("version ok")
"#;

#[test]
fn pypi_package_with_lazy_submodules_file_then_module() {
    let w = workloads(&[
        ("w1.py", PYG_W1),
        ("w2.py", PYG_W2),
        ("v.py", PYG_VERSION),
        (
            "mk.py",
            "open('/var/cache/debconf/x.txt', 'w').write('x')\n",
        ),
    ]);
    let work = tempdir();
    let (o, r) = minimize(
        work.path(),
        w.path(),
        "file.oci",
        &[],
        &["/usr/bin/python3", "/w/w1.py"],
    );
    assert_passed_both(&o);
    assert_eq!(r["keep"], "file");
    let lexer = "/usr/local/lib/python3.11/dist-packages/pygments/lexers/c_cpp.py";
    assert!(!kept(&r, lexer));
    // Metadata goes with the distribution at every level.
    let meta = "/usr/local/lib/python3.11/dist-packages/pygments-2.21.0.dist-info/METADATA";
    assert!(kept(&r, meta));
    assert_eq!(r["kept"][meta], "metadata");
    let min = work.path().join("file.oci");
    let v = verify(&min, w.path(), &["/usr/bin/python3", "/w/v.py"]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    let v = verify(&min, w.path(), &["/usr/bin/python3", "/w/w2.py"]);
    assert_ne!(v.status.code(), Some(0), "{}", stderr(&v));
    // CPython lists email/ and opens only what it finds: the hint names
    // the package it asked for first, from the full image's listing.
    let e = stderr(&v);
    let hints: Vec<&str> = e
        .lines()
        .skip_while(|l| !l.contains("listed here, with entries only"))
        .collect();
    assert!(
        hints
            .get(1)
            .is_some_and(|l| l.trim() == "/usr/lib/python3.11/email/ (7 missing)")
            && hints
                .get(2)
                .is_some_and(|l| l.trim() == "/usr/lib/python3.11/email/mime   (asked for: mime)"),
        "{e}"
    );
    // A file the program could not create: its missing directory named.
    let v = verify(&min, w.path(), &["/usr/bin/python3", "/w/mk.py"]);
    let e = stderr(&v);
    assert_ne!(v.status.code(), Some(0), "{e}");
    assert!(
        e.lines().any(|l| l.trim_start().starts_with(
            "could not create /var/cache/debconf/x.txt: directory /var/cache is missing here"
        )),
        "{e}"
    );

    let (o, r) = minimize(
        work.path(),
        w.path(),
        "module.oci",
        &["--keep", "module"],
        &["/usr/bin/python3", "/w/w1.py"],
    );
    assert_passed_both(&o);
    assert!(kept(&r, lexer));
    assert_eq!(pulled_by(&r, lexer), "python module pygments");
    assert!(kept(&r, "/usr/lib/python3.11/email/mime/text.py"));
    assert!(
        pulled_by(&r, "/usr/lib/python3.11/email/mime/text.py").starts_with("python stdlib email")
    );
    let v = verify(
        &work.path().join("module.oci"),
        w.path(),
        &["/usr/bin/python3", "/w/w2.py"],
    );
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
}

/// An app that pins one CA certificate of the ca-certificates package.
const CA_W1: &str = r#"import ssl
pem = open("/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt").read()
ssl.PEM_cert_to_DER_cert(pem)
print("pinned ok")
"#;
/// The trust store update-ca-certificates generated at install time.
const CA_W2: &str = r#"import ssl
c = ssl.create_default_context(cafile="/etc/ssl/certs/ca-certificates.crt")
assert c.cert_store_stats()["x509_ca"] > 100, c.cert_store_stats()
print("store ok")
"#;
#[test]
fn package_level_keeps_the_trust_store_made_at_install() {
    let w = workloads(&[("w1.py", CA_W1), ("w2.py", CA_W2)]);
    let work = tempdir();
    let store = "/etc/ssl/certs/ca-certificates.crt";
    let py = ["/usr/bin/python3", "/w/w1.py"];
    let run = |name: &str, level: &str| {
        let (o, r) = minimize(work.path(), w.path(), name, &["--keep", level], &py);
        assert_passed_both(&o);
        r
    };
    let file = run("file.oci", "file");
    assert!(!kept(&file, store));
    let v = verify(
        &work.path().join("file.oci"),
        w.path(),
        &["/usr/bin/python3", "/w/w2.py"],
    );
    assert_ne!(v.status.code(), Some(0), "{}", stderr(&v));

    let pkg = run("pkg.oci", "package");
    // Owned by no package: made by ca-certificates' postinst.
    assert!(kept(&pkg, store));
    assert_eq!(pulled_by(&pkg, store), "package ca-certificates");
    assert!(!kept(&pkg, "/usr/share/doc/ca-certificates/copyright"));
    let min = work.path().join("pkg.oci");
    let v = verify(&min, w.path(), &["/usr/bin/python3", "/w/w2.py"]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
}

/// git's other porcelain: `add -p` through its Perl script, which needs
/// perl (run as the script's interpreter) and Error.pm from
/// liberror-perl, a Depends of git that nothing else brings.
const GIT_ADD_P: &str = r#"#!/bin/sh
set -e
export HOME=/tmp/h GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@x
mkdir -p /tmp/h /tmp/repo
cd /tmp/repo
git init -q
echo hello > a.txt
git add a.txt
git commit -qm first
echo world >> a.txt
echo y | git -c add.interactive.useBuiltin=false add -p
git diff --cached --stat | grep -q a.txt
echo add-p ok
"#;

#[test]
fn package_then_package_deps_for_a_second_git_command() {
    let w = workloads(&[("git.sh", GIT_SUITE), ("addp.sh", GIT_ADD_P)]);
    let work = tempdir();
    let (o, r) = minimize(
        work.path(),
        w.path(),
        "pkg.oci",
        &["--keep", "package"],
        &["/bin/sh", "/w/git.sh"],
    );
    assert_passed_both(&o);
    assert_eq!(
        r["kept"]["/usr/lib/git-core/git-add--interactive"],
        "package"
    );
    let perl = r["interpreters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["script"] == "/usr/lib/git-core/git-add--interactive")
        .expect("the script's interpreter is listed");
    assert_eq!(perl["interpreter"], "/usr/bin/perl");
    assert_eq!(perl["why"], "package git");
    let v = verify(
        &work.path().join("pkg.oci"),
        w.path(),
        &["/bin/sh", "/w/addp.sh"],
    );
    let e = stderr(&v);
    assert_ne!(v.status.code(), Some(0), "{e}");
    assert!(
        e.lines().any(|l| l.trim() == "/usr/share/perl5/Error.pm"),
        "{e}"
    );

    let (o, r) = minimize(
        work.path(),
        w.path(),
        "deps.oci",
        &["--keep", "package+deps"],
        &["/bin/sh", "/w/git.sh"],
    );
    assert_passed_both(&o);
    // git Depends: perl (and liberror-perl); Recommends: ca-certificates.
    assert_eq!(r["kept"]["/usr/share/perl5/Error.pm"], "dependency");
    assert!(pulled_by(&r, "/usr/share/perl5/Error.pm").contains("Depends of git"));
    let units: Vec<&str> = r["pulled_by"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !units
            .iter()
            .any(|u| u.starts_with("package ca-certificates")),
        "a Recommends was kept"
    );
    assert!(!kept(&r, "/etc/ssl/certs/ca-certificates.crt"));
    // Essential packages nothing used stay out (bash is Essential: yes).
    assert!(!kept(&r, "/usr/bin/bash"));
    let v = verify(
        &work.path().join("deps.oci"),
        w.path(),
        &["/bin/sh", "/w/addp.sh"],
    );
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
}

/// A retry loop: the first attempt works or not at random; a retry
/// sleeps first. Each run notes which branch it took, and a branch not
/// taken yet is taken next, so three runs see both.
const FLAKY: &str = r#"#!/bin/sh
log=/state/branches
if grep -qx retry "$log" 2>/dev/null && ! grep -qx first "$log"; then
  b=first
elif grep -qx first "$log" 2>/dev/null && ! grep -qx retry "$log"; then
  b=retry
else
  b=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
  if [ $((b % 2)) -eq 0 ]; then b=first; else b=retry; fi
fi
echo "$b" >> "$log"
if [ "$b" = retry ]; then sleep 0.1; fi
echo "took $b"
"#;

#[test]
fn runs_three_lists_the_file_only_some_runs_used() {
    let w = workloads(&[("flaky.sh", FLAKY)]);
    let state = tempdir();
    fs::set_permissions(state.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let work = tempdir();
    let st = format!("{}:/state", state.path().display());
    let (o, r) = minimize(
        work.path(),
        w.path(),
        "min.oci",
        &["--runs", "3", "--mount", &st],
        &["/bin/sh", "/w/flaky.sh"],
    );
    let e = stderr(&o);
    let log = fs::read_to_string(state.path().join("branches")).unwrap();
    let branches: Vec<&str> = log.lines().collect();
    // Three runs in the full image, one verification in the minimal one.
    assert_eq!(branches.len(), 4, "{log}");
    let retries: Vec<String> = branches[..3]
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == "retry")
        .map(|(i, _)| format!("run-{}", i + 1))
        .collect();
    assert!(!retries.is_empty() && retries.len() < 3, "{log}");
    let sleep = r["sometimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "/usr/bin/sleep")
        .unwrap_or_else(|| panic!("sleep not listed: {}\n{e}", r["sometimes"]));
    let seen: Vec<String> = sleep["seen_in"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, retries);
    assert!(e.contains("used in only some of 3 runs"), "{e}");
    assert!(
        e.lines()
            .any(|l| l.trim_start().starts_with("/usr/bin/sleep")),
        "{e}"
    );
    // The union of the runs is in the image: the verification passes
    // whichever branch it takes.
    assert!(kept(&r, "/usr/bin/sleep"));
    assert_eq!(o.status.code(), Some(0), "{e}");
}

/// Acts on a listing itself: counts the entries and matches on their
/// names, opening none of them.
const LISTING: &str = r#"#!/bin/sh
set -e
n=$(ls /usr/share/ca-certificates/mozilla | wc -l)
echo "$n certificates"
test "$n" -gt 100
find /usr/share/ca-certificates/mozilla -name 'ISRG_Root_X1*' | grep -q ISRG
echo listing ok
"#;

#[test]
fn keep_listed_keeps_the_entries_a_listing_program_matches_on() {
    let w = workloads(&[("list.sh", LISTING)]);
    let work = tempdir();
    let cmd = ["/bin/sh", "/w/list.sh"];
    let isrg = "/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt";
    // At `file` level the directory is kept empty: the suite fails in
    // the minimal image, and the hint names the listed directory.
    let (o, r) = minimize(work.path(), w.path(), "file.oci", &[], &cmd);
    let e = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{e}");
    assert!(!kept(&r, isrg));
    assert!(
        e.lines().any(|l| l
            .trim_start()
            .starts_with("/usr/share/ca-certificates/mozilla/ (")
            && l.trim_end().ends_with("missing)")),
        "{e}"
    );
    let (o, r) = minimize(
        work.path(),
        w.path(),
        "listed.oci",
        &["--keep-listed"],
        &cmd,
    );
    assert_passed_both(&o);
    assert!(kept(&r, isrg));
    assert_eq!(r["kept"][isrg], "listed");
    assert_eq!(
        pulled_by(&r, isrg),
        "listed /usr/share/ca-certificates/mozilla"
    );
    // The cost is said: every entry of the directory, and their bytes.
    let full = apps_image().join("usr/share/ca-certificates/mozilla");
    let n = fs::read_dir(&full).unwrap().count() as u64;
    let added = r["listed"]["entries"].as_u64().expect("listed.entries");
    assert!(added >= n, "{added} < {n}: {}", r["listed"]);
    assert!(r["listed"]["bytes"].as_u64().unwrap() > 0);
}
