//! The cache of unpacked images: `run --image` unpacks an image once and
//! reuses the tree; `build` reads it; concurrent runs and a killed run
//! leave a consistent cache; `trace cache` and `trace cache prune`.
use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use crate::util::*;

fn image() -> PathBuf {
    fixtures().join("bookworm-oci.tar")
}

/// A member of the fixture archive.
fn member(name: &str) -> serde_json::Value {
    let o = TestCommand::new("tar")
        .arg("-xOf")
        .arg(image())
        .arg(name)
        .expect_success();
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The fixture image's config, by way of its index and manifest.
fn image_config() -> serde_json::Value {
    let blob = |d: &serde_json::Value| {
        member(&format!(
            "blobs/sha256/{}",
            d["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap()
        ))
    };
    let manifest = blob(&member("index.json")["manifests"][0]);
    blob(&manifest["config"])
}

/// `trace ARGS` with its image cache in `cache`.
fn trace(cache: &Path, args: &[&str]) -> TestCommand {
    let mut c = TestCommand::trace();
    c.args(args).env("TRACE_CACHE_DIR", cache);
    c
}

fn run_image(cache: &Path, out: &Path, extra: &[&str], cmd: &[&str]) -> TestCommand {
    let mut c = trace(cache, &["run", "-o"]);
    c.arg(out.join("trace.json"))
        .arg("--image")
        .arg(image())
        .args(extra)
        .arg("--")
        .args(cmd);
    c
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match fs::read_dir(dir) {
        Ok(r) => r
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn entries(cache: &Path) -> Vec<String> {
    names(&cache.join("rootfs/sha256"))
}

fn builds(cache: &Path) -> Vec<String> {
    names(&cache.join("tmp"))
}

/// What is left to read of a piped child's output.
fn drain(pipe: Option<impl std::io::Read>) -> String {
    let mut s = String::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_string(&mut s);
    }
    s
}

/// Until `what` holds, for at most a minute, while `child` runs: a child
/// that ended first fails the test with its output.
fn wait_for(child: &mut Child, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        if let Ok(Some(status)) = child.try_wait() {
            let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
            panic!("ended ({status}) before {what}\nstdout:\n{out}\nstderr:\n{err}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_run_reuses_the_entry_and_the_listing_shows_it() {
    let cache = tempdir();
    let c = cache.path();
    let out = tempdir();
    ok(&run_image(c, out.path(), &[], &["/bin/true"]).run());
    let first = entries(c);
    assert_eq!(first.len(), 1, "{first:?}");
    // Keyed by the OCI ChainID; of this one-layer image, its diff_id.
    let config = image_config();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 1);
    assert_eq!(
        format!("sha256:{}", first[0]),
        diff_ids[0].as_str().unwrap()
    );
    let entry = c.join("rootfs/sha256").join(&first[0]);
    assert!(entry.join("rootfs/usr/bin/python3").exists());
    let ino = fs::metadata(&entry).unwrap().ino();
    assert!(builds(c).is_empty(), "{:?}", builds(c));

    // The warm run sees the image's files (and its own writes stay in the
    // overlay, never in the cached tree).
    let r = run_image(
        c,
        out.path(),
        &[],
        &[
            "sh",
            "-c",
            "grep -q bookworm /etc/os-release && touch /scratch",
        ],
    )
    .run();
    ok(&r);
    assert_eq!(entries(c), first);
    assert_eq!(fs::metadata(&entry).unwrap().ino(), ino, "rebuilt");
    assert!(!entry.join("rootfs/scratch").exists());

    let listing = trace(c, &["cache"]).run();
    ok(&listing);
    let text = stdout(&listing);
    assert!(
        text.starts_with(&format!("cache: {}\n", c.display())),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("sha256:{}", first[0])))
        .unwrap_or_else(|| panic!("entry not listed:\n{text}"));
    // The fixture unpacks to a couple of hundred MiB.
    let mib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(line.split_whitespace().nth(2), Some("MiB"), "{line}");
    assert!(mib > 100.0, "{line}");
    assert!(text.contains("\n1 entry, "), "{text}");
}

#[test]
fn build_from_the_cache_gives_the_same_image_as_without() {
    let cache = tempdir();
    let c = cache.path();
    let work = tempdir();
    let w = work.path();
    ok(&run_image(c, w, &[], &["sh", "-c", "cat /etc/os-release"]).run());
    let [entry] = entries(c).try_into().unwrap();
    let lock = c.join("rootfs/sha256").join(entry).join("lock");
    let used = || fs::metadata(&lock).unwrap().mtime();
    let forget = || {
        let f = fs::File::options().write(true).open(&lock).unwrap();
        f.set_modified(std::time::UNIX_EPOCH).unwrap();
    };
    let build = |out: &str, extra: &[&str]| {
        let mut args = extra.to_vec();
        let (img, out_arg) = (image(), format!("oci-archive:{}", w.join(out).display()));
        let trace_json = w.join("trace.json");
        let report = w.join(format!("{out}.report.json"));
        args.extend([
            "build",
            "--report",
            report.to_str().unwrap(),
            "--from",
            img.to_str().unwrap(),
            "-o",
            &out_arg,
            "--trace",
            trace_json.to_str().unwrap(),
        ]);
        ok(&trace(c, &args).run());
        fs::read(w.join(out)).unwrap()
    };
    forget();
    let cached = build("cached.tar", &[]);
    assert!(used() > 0, "the build did not read the cached tree");
    forget();
    let uncached = build("uncached.tar", &["--no-cache"]);
    assert_eq!(used(), 0, "--no-cache used the cache");
    assert!(cached == uncached, "the images differ");
    // The report says the same of the source: its name, digest and size.
    let report = |out: &str| -> serde_json::Value {
        serde_json::from_slice(&fs::read(w.join(format!("{out}.report.json"))).unwrap()).unwrap()
    };
    let (a, b) = (report("cached.tar"), report("uncached.tar"));
    for key in [
        "source",
        "source_digest",
        "before",
        "manifest_digest",
        "kept",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert!(a["source"].as_str().unwrap().starts_with("oci-archive "));
}

#[test]
fn two_runs_at_once_both_pass_and_leave_one_entry() {
    let cache = tempdir();
    let c = cache.path();
    let (a, b) = (tempdir(), tempdir());
    let spawn = |d: &Path| {
        run_image(c, d, &[], &["/bin/true"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let (ra, rb) = (spawn(a.path()), spawn(b.path()));
    ok(&ra.wait_with_output().unwrap());
    ok(&rb.wait_with_output().unwrap());
    assert_eq!(entries(c).len(), 1, "{:?}", entries(c));
    assert!(builds(c).is_empty(), "{:?}", builds(c));
}

#[test]
fn a_run_killed_mid_unpack_leaves_no_entry_and_the_next_run_cleans_up() {
    let cache = tempdir();
    let c = cache.path();
    let out = tempdir();
    let mut child: Child = run_image(c, out.path(), &[], &["/bin/true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    // Killed once the unpack has started writing the tree.
    wait_for(&mut child, "the unpack to start", || {
        builds(c)
            .iter()
            .any(|b| c.join("tmp").join(b).join("rootfs/usr").exists())
    });
    assert!(entries(c).is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(entries(c).is_empty(), "{:?}", entries(c));
    assert_eq!(builds(c).len(), 1, "{:?}", builds(c));

    ok(&run_image(c, out.path(), &[], &["/bin/true"]).run());
    assert_eq!(entries(c).len(), 1);
    assert!(builds(c).is_empty(), "{:?}", builds(c));
    let [entry] = entries(c).try_into().unwrap();
    assert!(
        c.join("rootfs/sha256")
            .join(entry)
            .join("entry.json")
            .is_file()
    );
}

#[test]
fn prune_keeps_an_entry_in_use_and_removes_it_after() {
    let cache = tempdir();
    let c = cache.path();
    let out = tempdir();
    let shared = tempdir();
    let marker = shared.path().join("started");
    let mount = format!("{}:/out", shared.path().display());
    let mut running = run_image(
        c,
        out.path(),
        &["--mount", &mount],
        &["sh", "-c", "touch /out/started; sleep 3"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn();
    wait_for(&mut running, "the container to start", || marker.exists());
    let [entry] = entries(c).try_into().unwrap();

    let p = trace(c, &["cache", "prune", "--all"]).run();
    ok(&p);
    assert!(
        stdout(&p).contains(&format!("kept sha256:{entry}: in use")),
        "{}",
        stdout(&p)
    );
    assert_eq!(entries(c), std::slice::from_ref(&entry));
    ok(&running.wait_with_output().unwrap());

    let p = trace(c, &["cache", "prune", "--all"]).run();
    ok(&p);
    let text = stdout(&p);
    assert!(
        text.contains(&format!("removed sha256:{entry} (")),
        "{text}"
    );
    assert!(text.contains("freed "), "{text}");
    assert!(entries(c).is_empty());
    assert!(builds(c).is_empty());
    let listing = stdout(&trace(c, &["cache"]).run());
    assert!(listing.ends_with("0 entries, 0 B\n"), "{listing}");
}

#[test]
fn prune_needs_a_policy() {
    let cache = tempdir();
    let o = trace(cache.path(), &["cache", "prune"]).run();
    assert_eq!(o.status.code(), Some(2));
    let o = trace(cache.path(), &["cache", "prune", "--keep-size", "lots"]).run();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn no_cache_bypasses_it_and_an_unusable_entry_is_refused() {
    let cache = tempdir();
    let c = cache.path();
    let out = tempdir();
    ok(&run_image(c, out.path(), &["--no-cache"], &["/bin/true"]).run());
    assert!(entries(c).is_empty(), "{:?}", entries(c));
    ok(&run_image(c, out.path(), &[], &["/bin/true"]).run());
    let [entry] = entries(c).try_into().unwrap();
    let dir = c.join("rootfs/sha256").join(&entry);
    // As if it had been cut short: never used, one line, exit 125.
    fs::remove_file(dir.join("entry.json")).unwrap();
    let r = run_image(c, out.path(), &[], &["/bin/true"]).run();
    assert_eq!(r.status.code(), Some(125));
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "trace: error: image cache entry {} is unusable (entry.json: ",
            dir.display()
        )),
        "{err}"
    );
    // `--no-cache` still runs; `prune` removes the unusable entry.
    ok(&run_image(c, out.path(), &["--no-cache"], &["/bin/true"]).run());
    let listing = stdout(&trace(c, &["cache"]).run());
    assert!(listing.contains("(unusable: entry.json: "), "{listing}");
    let p = trace(c, &["cache", "prune", "--older-than", "365d"]).run();
    ok(&p);
    assert!(stdout(&p).contains(&format!("removed sha256:{entry}")));
    assert!(entries(c).is_empty());
}
