//! The capture under hostile programs (issue 8): each test runs a small
//! helper from tests/programs (compiled here with gcc) under `trace run` or
//! `trace attach` with the real eBPF programs, and asserts the exact path,
//! op, syscall and result recorded, or `complete: false` with its reason.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::util::*;
use serde_json::{Value, json};

/// A test's own directory (canonical, so it is the name the kernel uses).
struct Work {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

impl Work {
    fn new() -> Work {
        let dir = tempdir();
        let base = dir.path().canonicalize().expect("tempdir resolves");
        Work { _dir: dir, base }
    }
    /// BASE/rel as a string.
    fn p(&self, rel: &str) -> String {
        self.base.join(rel).to_string_lossy().into_owned()
    }
    fn mkdir(&self, rel: &str) -> String {
        fs::create_dir_all(self.base.join(rel)).expect("mkdir");
        self.p(rel)
    }
    fn file(&self, rel: &str, content: &str) -> String {
        let p = self.base.join(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).expect("mkdir");
        }
        fs::write(&p, content).expect("write");
        self.p(rel)
    }
    fn symlink(&self, content: &str, rel: &str) -> String {
        std::os::unix::fs::symlink(content, self.base.join(rel)).expect("symlink");
        self.p(rel)
    }
    /// Compiles tests/programs/NAME.c into BASE/bin.
    fn program(&self, name: &str, flags: &[&str]) -> String {
        self.program_as(name, name, flags)
    }
    fn program_as(&self, name: &str, outname: &str, flags: &[&str]) -> String {
        let bin = self.base.join("bin");
        fs::create_dir_all(&bin).expect("mkdir bin");
        build_c(name, &bin, outname, flags)
            .to_string_lossy()
            .into_owned()
    }
    fn run(&self, extra: &[&str], cmd: &[&str]) -> Run {
        run_in(&self.base, extra, cmd)
    }
}

/// The run must have exited 0; its stdout is returned.
fn ok_run(r: &Run) -> String {
    assert_eq!(
        r.code(),
        0,
        "stdout:\n{}\nstderr:\n{}",
        r.stdout(),
        r.stderr()
    );
    r.stdout()
}

/// Paths of entries some access of which matches `want`.
fn entries_with(t: &Trace, want: &Value) -> Vec<String> {
    let mut v: Vec<String> = all_accesses(t)
        .into_iter()
        .filter(|(_, a)| access_matches(a, want))
        .map(|(p, _)| p.to_string())
        .collect();
    v.dedup();
    v
}

fn pid_of_exec(t: &Trace, exe: &str) -> u32 {
    execs(t)
        .iter()
        .find(|e| e.exe.as_deref() == Some(exe))
        .map(|e| e.pid)
        .unwrap_or_else(|| panic!("no exec of {exe}: {:?}", t.execs))
}

/// The ia32 syscalls the trace recorded (its `syscalls.compat`).
fn compat_syscalls(t: &Trace) -> &Syscalls {
    t.syscalls
        .as_ref()
        .and_then(|s| s.compat.as_deref())
        .unwrap_or_else(|| panic!("no compat syscalls: {:?}", t.syscalls))
}

// ---------------------------------------------------------------------
// 1. The dedup cannot alias.
// ---------------------------------------------------------------------

#[test]
fn dedup_records_every_dir_under_dcache_pressure() {
    let w = Work::new();
    const N: usize = 300;
    for i in 0..N {
        w.file(&format!("t/d{i:03}/x"), "x");
    }
    let prog = w.program("chdir_stat", &[]);
    let r = w.run(&[], &[&prog, &w.p("t"), &N.to_string(), "5"]);
    assert_eq!(ok_run(&r).trim(), format!("found {N}"));
    let t = r.trace();
    assert_complete(t);
    let want = json!({"op": "stat", "syscall": "newfstatat", "result": "ok", "raw": "x"});
    let missing: Vec<usize> = (0..N)
        .filter(|i| matching(t, &w.p(&format!("t/d{i:03}/x")), &want).is_empty())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {N} stats of x not recorded: {missing:?}",
        missing.len()
    );
    // A failed lookup of the same name in each directory is its own, too.
    let want = json!({"op": "stat", "syscall": "newfstatat", "result": "ENOENT", "raw": "y"});
    let missing: Vec<usize> = (0..N)
        .filter(|i| matching(t, &w.p(&format!("t/d{i:03}/y")), &want).is_empty())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {N} failed stats of y not recorded: {missing:?}",
        missing.len()
    );
    let chdir = json!({"op": "chdir", "syscall": "chdir", "result": "ok"});
    let missing: Vec<usize> = (0..N)
        .filter(|i| matching(t, &w.p(&format!("t/d{i:03}")), &chdir).is_empty())
        .collect();
    assert!(missing.is_empty(), "chdirs not recorded: {missing:?}");
    // The pressure was real: the helper wrote to drop_caches.
    expect_access(
        t,
        "/proc/sys/vm/drop_caches",
        &json!({"op": "open", "mode": "write", "result": "ok"}),
    );
}

#[test]
fn dedup_keeps_one_file_reached_through_a_bind_mount() {
    let w = Work::new();
    let a = w.mkdir("A");
    let b = w.mkdir("B");
    let af = w.file("A/f", "a");
    let fsops = w.program("fsops", &[]);
    let bf = w.p("B/f");
    let script = format!("mount --bind {a} {b} && exec {fsops} open {af} open {bf} open {af}");
    let r = w.run(&[], &["unshare", "-m", "sh", "-c", &script]);
    let out = ok_run(&r);
    assert_eq!(
        out,
        format!("open {af} -> ok\nopen {bf} -> ok\nopen {af} -> ok\n")
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &af,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": af,
                "observed": true, "requested": null}),
    );
    expect_access(
        t,
        &af,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": bf,
                "requested": bf, "observed": true}),
    );
}

#[test]
fn dedup_keeps_one_file_reached_through_a_symlink() {
    let w = Work::new();
    let f = w.file("f", "x");
    let link = w.symlink("f", "link");
    let fsops = w.program("fsops", &[]);
    // The direct name first: the symlink's access must not pass for a
    // repeat of it (the image needs the symlink).
    let r = w.run(
        &[],
        &[&fsops, "open", &f, "open", &link, "stat", &f, "stat", &link],
    );
    assert_eq!(
        ok_run(&r),
        format!("open {f} -> ok\nopen {link} -> ok\nstat {f} -> ok\nstat {link} -> ok\n")
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &f,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": f, "requested": null}),
    );
    expect_access(
        t,
        &f,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": link,
                "requested": link, "observed": true}),
    );
    // A probe is filed under the name asked for.
    expect_access(
        t,
        &f,
        &json!({"op": "stat", "syscall": "stat", "result": "ok", "raw": f}),
    );
    expect_access(
        t,
        &link,
        &json!({"op": "stat", "syscall": "stat", "result": "ok", "raw": link}),
    );
}

#[test]
fn lost_records_do_not_suppress_their_repeats() {
    let w = Work::new();
    const N: usize = 4000;
    for i in 0..N {
        w.file(&format!("many/f{i:04}"), "");
    }
    let marker = w.p("reader-may-go");
    let prog = w.program("open_twice", &[]);
    let out = trace_cmd(
        &w.base,
        &["--ringbuf-size", "262144"],
        &[&prog, &w.p("many"), &N.to_string(), &marker],
    )
    .env("TRACE_DEBUG_STALL_READER", &marker)
    .run();
    let r = Run::new(out, &w.base);
    assert_eq!(ok_run(&r).trim(), format!("{N} {N}"));
    let t = r.trace();
    // The first pass overflowed the buffer, and the trace says so.
    assert!(!t.complete, "{:?}", t.lost_events);
    let lost = t.lost_events.total;
    assert!(lost > 0, "{:?}", t.lost_events);
    assert!(
        t.lost_events
            .by_cause
            .get("ringbuf_full")
            .is_some_and(|n| *n > 0),
        "{:?}",
        t.lost_events
    );
    let reasons = &t.incomplete_reasons;
    assert!(reasons.iter().any(|r| r.contains("lost")), "{reasons:?}");
    // The second pass repeated every access: none may be missing.
    let want = json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true});
    let missing: Vec<usize> = (0..N)
        .filter(|i| matching(t, &w.p(&format!("many/f{i:04}")), &want).is_empty())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {N} files missing after their repeat (lost {lost}): first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

/// Eight children alive at once, each reading its own file after a
/// moment, under a table of traced processes with room for `table`.
fn many_children_run(w: &Work, table: Option<&str>) -> Run {
    for i in 0..8 {
        w.file(&format!("kids/f{i}"), "x");
    }
    let script = format!(
        "for i in 0 1 2 3 4 5 6 7; do sh -c \"sleep 0.3; cat {}/f$i\" & done; wait",
        w.p("kids")
    );
    let mut cmd = trace_cmd(&w.base, &[], &["/bin/sh", "-c", &script]);
    if let Some(n) = table {
        cmd.env("TRACE_DEBUG_PROCESS_TABLE", n);
    }
    Run::new(cmd.run(), &w.base)
}

#[test]
fn a_full_process_table_makes_the_trace_incomplete() {
    // With room: every child's file is there, and nothing is lost.
    let w = Work::new();
    let r = many_children_run(&w, None);
    assert_eq!(ok_run(&r).trim(), "x".repeat(8));
    let t = r.trace();
    assert!(t.complete, "{:?}", t.incomplete_reasons);
    for i in 0..8 {
        let f = w.p(&format!("kids/f{i}"));
        assert!(!matching(t, &f, &json!({"op": "open"})).is_empty(), "{f}");
    }
    // Room for 4: the children past it go unseen, and the trace says so
    // rather than claim it saw everything.
    let w = Work::new();
    let r = many_children_run(&w, Some("4"));
    assert_eq!(ok_run(&r).trim(), "x".repeat(8));
    let t = r.trace();
    assert!(!t.complete, "a full table went unreported");
    let full = t.lost_events.by_cause.get("process_table_full").copied();
    assert!(full.is_some_and(|n| n > 0), "{:?}", t.lost_events);
    let reasons = &t.incomplete_reasons;
    assert!(
        reasons.iter().any(|r| r.contains("process_table_full")),
        "{reasons:?}"
    );
}

// ---------------------------------------------------------------------
// 2. Paths are observed, not rebuilt.
// ---------------------------------------------------------------------

#[test]
fn dotdot_after_a_symlink_is_the_file_the_kernel_opened() {
    let w = Work::new();
    w.mkdir("real/sub");
    let real_x = w.file("real/x", "real");
    // A decoy where lexical `..` folding would point.
    let decoy = w.file("x", "decoy");
    w.symlink("real/sub", "link");
    let fsops = w.program("fsops", &[]);
    let asked = w.p("link/../x");
    let missing = w.p("link/../missing");
    let r = w.run(&[], &[&fsops, "open", &asked, "open", &missing]);
    assert_eq!(
        ok_run(&r),
        format!("open {asked} -> ok\nopen {missing} -> ENOENT\n")
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &real_x,
        &json!({"op": "open", "syscall": "open", "result": "ok", "observed": true,
                "raw": asked, "requested": asked, "mode": "read"}),
    );
    assert!(
        file(t, &decoy).is_none(),
        "the lexical {decoy} recorded: {:?}",
        accesses(t, &decoy)
    );
    // A failed lookup is filed under the lexical name, and keeps the exact
    // request (with its `..`) for build to resolve.
    expect_access(
        t,
        &w.p("missing"),
        &json!({"op": "open", "syscall": "open", "result": "ENOENT", "errno": 2,
                "raw": missing, "requested": missing}),
    );
}

#[test]
fn chroot_then_open_is_named_inside_the_chroot() {
    let w = Work::new();
    let d = w.mkdir("D");
    let cfg = w.file("D/etc/cfg", "inside");
    assert!(!Path::new("/etc/cfg").exists(), "host has /etc/cfg");
    let fsops = w.program("fsops", &[]);
    let r = w.run(
        &[],
        &[
            &fsops,
            "chroot",
            &d,
            "chdir",
            "/",
            "open",
            "/etc/cfg",
            "stat",
            "/etc/nothere",
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!(
            "chroot {d} -> ok\nchdir / -> ok\nopen /etc/cfg -> ok\nstat /etc/nothere -> ENOENT\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &d,
        &json!({"op": "chroot", "syscall": "chroot", "result": "ok", "raw": d}),
    );
    expect_access(
        t,
        &cfg,
        &json!({"op": "open", "syscall": "open", "result": "ok", "observed": true,
                "raw": "/etc/cfg"}),
    );
    expect_access(
        t,
        &w.p("D/etc/nothere"),
        &json!({"op": "stat", "syscall": "stat", "result": "ENOENT", "raw": "/etc/nothere"}),
    );
    // chdir("/") inside the chroot is D.
    expect_access(t, &d, &json!({"op": "chdir", "result": "ok", "raw": "/"}));
    for host in ["/etc/cfg", "/etc/nothere"] {
        assert!(file(t, host).is_none(), "host path {host} recorded");
    }
}

#[test]
fn a_path_through_the_callers_own_root_in_proc_is_named_as_its_file() {
    let w = Work::new();
    let cfg = w.file("D/etc/cfg", "x");
    let f = w.file("D/sub/f", "y");
    let fsops = w.program("fsops", &[]);
    let g = w.file("E/sub/f", "z");
    let via_root = format!("/proc/self/root{cfg}");
    let via_cwd = "/proc/self/cwd/sub/f";
    let r = w.run(
        &[],
        &[
            &fsops,
            "chdir",
            &w.p("D"),
            "stat",
            &via_root,
            "open",
            via_cwd,
            "stat",
            via_cwd,
            "chdir",
            &w.p("E"),
            "stat",
            via_cwd,
            "access",
            "/proc/thread-self/cwd/sub/f",
        ],
    );
    ok_run(&r);
    let t = r.trace();
    // The own root is where an absolute path starts anyway; the kernel
    // side names a path past /proc/self/cwd from the working directory
    // it saved at entry; an open's file is named by its descriptor,
    // whatever link led there.
    assert_complete(t);
    expect_access(
        t,
        &cfg,
        &json!({"op": "stat", "syscall": "stat", "result": "ok", "raw": via_root}),
    );
    // The same request from two working directories is two files: the
    // in-kernel repeat check keys on the directory too.
    for file in [&f, &g] {
        expect_access(
            t,
            file,
            &json!({"op": "stat", "syscall": "stat", "result": "ok", "raw": via_cwd}),
        );
    }
    expect_access(
        t,
        &g,
        &json!({"op": "access", "result": "ok", "raw": "/proc/thread-self/cwd/sub/f"}),
    );
    let open = expect_access(
        t,
        &f,
        &json!({"op": "open", "result": "ok", "observed": true, "raw": via_cwd}),
    );
    // A request through /proc cannot be followed in an image.
    assert_eq!(open.requested, None);
    assert!(
        paths(t).iter().all(|p| !p.starts_with("/proc/self/")),
        "{:?}",
        paths(t)
    );
}

#[test]
fn a_path_through_another_proc_link_makes_the_trace_incomplete() {
    let w = Work::new();
    let f = w.file("D/sub/f", "y");
    let fsops = w.program("fsops", &[]);
    // Another process's working directory (pid 1's, whatever it is).
    let via_other = format!("/proc/1/cwd{f}");
    let r = w.run(
        &[],
        &[
            &fsops,
            "access",
            &via_other,
            "stat",
            "/proc/self/exe",
            "stat",
            "/proc/self/cwd/missing",
        ],
    );
    ok_run(&r);
    let t = r.trace();
    // Nothing in the records says which file the kernel reached, nor
    // whether a failure past /proc/self/cwd was /proc's own.
    assert!(!t.complete);
    assert_eq!(t.counters.proc_link_paths, 2);
    assert!(
        t.incomplete_reasons
            .iter()
            .any(|r| r.contains("magic link") && r.contains(&via_other)),
        "{:?}",
        t.incomplete_reasons
    );
    expect_access(t, &via_other, &json!({"op": "access", "raw": via_other}));
    expect_access(
        t,
        "/proc/self/cwd/missing",
        &json!({"op": "stat", "result": "ENOENT"}),
    );
}

#[test]
fn openat2_resolve_in_root_is_named_inside_its_dirfd() {
    let w = Work::new();
    let d = w.mkdir("D");
    let hn = w.file("D/etc/hostname", "not-the-host");
    let fsops = w.program("fsops", &[]);
    let r = w.run(
        &[],
        &[
            &fsops,
            "openat2_in_root",
            &d,
            "/etc/hostname",
            "openat2_in_root",
            &d,
            "/etc/none",
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!("openat2_in_root {d} -> ok\nopenat2_in_root {d} -> ENOENT\n")
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &hn,
        &json!({"op": "open", "syscall": "openat2", "result": "ok", "observed": true,
                "raw": "/etc/hostname"}),
    );
    assert!(
        matching(t, "/etc/hostname", &json!({"syscall": "openat2"})).is_empty(),
        "the host's /etc/hostname recorded: {:?}",
        accesses(t, "/etc/hostname")
    );
    // The failed one was looked up inside D too.
    expect_access(
        t,
        &w.p("D/etc/none"),
        &json!({"op": "open", "syscall": "openat2", "result": "ENOENT", "raw": "/etc/none"}),
    );
    assert!(file(t, "/etc/none").is_none());
}

#[test]
fn bind_mount_in_a_private_namespace_is_named_where_the_file_lies() {
    let w = Work::new();
    let a = w.mkdir("A");
    let b = w.mkdir("B");
    let af = w.file("A/f", "from A");
    // A decoy hidden under the mount: it exists, but nobody reads it.
    let bf = w.file("B/f", "decoy");
    let script = format!("mount --bind {a} {b} && cat {bf}");
    let r = w.run(&[], &["unshare", "-m", "sh", "-c", &script]);
    assert_eq!(ok_run(&r), "from A");
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &af,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true,
                "raw": bf, "requested": bf}),
    );
    let ok_opens = matching(t, &bf, &json!({"op": "open", "result": "ok"}));
    assert!(ok_opens.is_empty(), "{bf} filed as opened: {ok_opens:?}");
}

#[test]
fn a_stat_through_a_bind_made_in_the_run_is_flagged_and_chdir_names_the_source() {
    let w = Work::new();
    let a = w.mkdir("A");
    let b = w.mkdir("B");
    let ag = w.file("A/g", "");
    w.file("A/f", "");
    let bf = w.p("B/f");
    let bnew = w.p("B/new");
    let fsops = w.program("fsops", &[]);
    // The stat of B/f reaches A/f, which the name does not show (B is
    // empty in the image); the chdir is observed; a relative stat from
    // there is named from the observed cwd; a mkdir creates, reads nothing.
    let script =
        format!("{fsops} mount_bind {a} {b} stat {bf} chdir {b} stat g mkdir {bnew} stat {a}/f");
    let r = w.run(&[], &["unshare", "-m", "sh", "-c", &script]);
    assert_eq!(
        ok_run(&r),
        format!(
            "mount_bind {a} -> ok\nstat {bf} -> ok\nchdir {b} -> ok\nstat g -> ok\nmkdir {bnew} -> ok\nstat {a}/f -> ok\n"
        )
    );
    let t = r.trace();
    assert!(!t.complete, "a stat through the bind went unflagged");
    let flagged: Vec<_> = t
        .unobserved
        .iter()
        .filter(|u| u.channel == "bind mount")
        .collect();
    assert_eq!(flagged.len(), 1, "{:?}", t.unobserved);
    assert_eq!(flagged[0].count, 1, "only the stat of B/f: {flagged:?}");
    assert!(
        t.incomplete_reasons.iter().any(|r| r.contains(&bf)),
        "{:?}",
        t.incomplete_reasons
    );
    expect_access(
        t,
        &a,
        &json!({"op": "chdir", "syscall": "chdir", "result": "ok", "observed": true,
                "raw": b, "requested": b}),
    );
    expect_access(t, &ag, &json!({"op": "stat", "result": "ok", "raw": "g"}));
    assert!(
        matching(t, &b, &json!({"op": "chdir"})).is_empty(),
        "the chdir filed under the mount point"
    );
}

#[test]
fn dotdot_at_a_chroot_root_stays_at_that_root() {
    let w = Work::new();
    let croot = w.mkdir("croot");
    w.mkdir("croot/a");
    let x = w.file("croot/etc/x", "");
    // A decoy where a `..` out of the root would lead.
    let decoy = w.file("etc/x", "");
    let fsops = w.program("fsops", &[]);
    let r = w.run(
        &[],
        &[
            &fsops,
            "chroot",
            &croot,
            "stat",
            "/../etc/x",
            "stat",
            "/a/../../etc/x",
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!("chroot {croot} -> ok\nstat /../etc/x -> ok\nstat /a/../../etc/x -> ok\n")
    );
    let t = r.trace();
    expect_access(
        t,
        &x,
        &json!({"op": "stat", "result": "ok", "raw": "/../etc/x"}),
    );
    expect_access(
        t,
        &croot,
        &json!({"op": "chroot", "syscall": "chroot", "result": "ok", "observed": true}),
    );
    assert!(
        matching(t, &decoy, &json!({"op": "stat"})).is_empty(),
        "filed above the chroot"
    );
    // Past the root after a component: filed where it lands when `a` is
    // no symlink, and counted, as only the image can tell.
    expect_access(
        t,
        &x,
        &json!({"op": "stat", "result": "ok", "raw": "/a/../../etc/x"}),
    );
    assert!(!t.complete);
    let root: Vec<_> = t
        .unobserved
        .iter()
        .filter(|u| u.channel == "root")
        .collect();
    assert_eq!(root.len(), 1, "{:?}", t.unobserved);
    assert_eq!(root[0].count, 1, "{root:?}");
}

#[test]
fn an_overlay_mount_made_in_the_run_is_flagged() {
    let w = Work::new();
    let lower = w.mkdir("lower");
    let upper = w.mkdir("upper");
    let work = w.mkdir("work");
    let merged = w.mkdir("merged");
    w.file("lower/f", "from lower");
    let opts = format!("lowerdir={lower},upperdir={upper},workdir={work}");
    let script = format!("mount -t overlay ov -o {opts} {merged} && cat {merged}/f");
    let r = w.run(&[], &["unshare", "-m", "sh", "-c", &script]);
    assert_eq!(ok_run(&r), "from lower");
    let t = r.trace();
    assert!(!t.complete);
    assert!(
        t.unobserved.iter().any(|u| u.channel == "mount options"),
        "{:?}",
        t.unobserved
    );
    // The mount point says what was mounted there (util-linux may use
    // mount(2) or the new API's fsopen; either names the type).
    let typed = t
        .files
        .iter()
        .flat_map(|f| f.accesses.iter())
        .any(|a| a.content.as_deref() == Some("overlay"));
    assert!(typed, "no access names the overlay type");
}

#[test]
fn fsopen_of_an_overlay_is_flagged_and_of_a_tmpfs_is_not() {
    let w = Work::new();
    let fsops = w.program("fsops", &[]);
    let r = w.run(&[], &[&fsops, "fsopen", "tmpfs"]);
    assert_eq!(ok_run(&r), "fsopen tmpfs -> ok\n");
    assert_complete(r.trace());
    let r = w.run(&[], &[&fsops, "fsopen", "overlay"]);
    assert_eq!(ok_run(&r), "fsopen overlay -> ok\n");
    let t = r.trace();
    assert!(!t.complete);
    let u: Vec<_> = t
        .unobserved
        .iter()
        .filter(|u| u.channel == "mount options")
        .collect();
    assert_eq!(u.len(), 1, "{:?}", t.unobserved);
    assert_eq!(u[0].op, "fsopen");
}

#[test]
fn a_shared_cwd_is_read_at_syscall_entry() {
    let w = Work::new();
    let d1 = w.mkdir("dir1");
    let d2 = w.mkdir("dir2");
    let only1 = w.file("dir1/only1", "");
    let prog = w.program("cwd_race", &["-pthread"]);
    let r = w.run(&[], &[&prog, &d1, &d2, "20000"]);
    let out = ok_run(&r);
    let counts: Vec<u64> = out
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    // The race really ran both ways.
    assert!(counts.len() == 2 && counts[0] > 0 && counts[1] > 0, "{out}");
    let t = r.trace();
    // A flip while an open ran makes its start unsure: counted, never
    // guessed (see the deterministic test below); nothing else is amiss.
    assert!(
        t.lost_events.total == 0
            && t.incomplete_reasons
                .iter()
                .all(|r| r.contains("another thread changed")),
        "{:?}",
        t.incomplete_reasons
    );
    expect_access(
        t,
        &only1,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "raw": "only1", "observed": true}),
    );
    let wrong = matching(t, &w.p("dir2/only1"), &json!({"result": "ok"}));
    assert!(wrong.is_empty(), "success filed under dir2: {wrong:?}");
}

#[test]
fn a_base_another_thread_changes_during_the_lookup_is_flagged_not_guessed() {
    let w = Work::new();
    let a = w.mkdir("A");
    let b = w.mkdir("B");
    w.file("B/t", "");
    let sa = w.file("A/s", "#!/bin/false\n");
    let sb = w.file("B/s", "#!/bin/true\n");
    for s in [&sa, &sb] {
        fs::set_permissions(s, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // The name sits on a userfaultfd page: the kernel stalls copying it
    // in, after the entry was saved, while the main thread moves the
    // shared cwd or dup2s B under the descriptor.
    let prog = w.program("base_swap", &["-pthread"]);
    let at = w.p("A/t");
    for mode in ["cwd-stat", "dirfd-stat"] {
        let r = w.run(&[], &[&prog, mode, &a, &b, "t"]);
        assert_eq!(ok_run(&r), format!("{mode} -> 0\n"));
        let t = r.trace();
        let wrong = matching(t, &at, &json!({"result": "ok"}));
        assert!(
            wrong.is_empty(),
            "{mode}: a success filed under A: {wrong:?}"
        );
        assert!(!t.complete, "{mode}");
        assert!(t.counters.stale_bases >= 1, "{mode}: {:?}", t.counters);
    }
    for mode in ["cwd-exec", "fd-exec"] {
        let r = w.run(&[], &[&prog, mode, &a, &b, "s"]);
        // B's script ran (A's would fail).
        assert_eq!(r.code(), 0, "{mode}: {}", r.stderr());
        let t = r.trace();
        assert!(
            execs(t).iter().all(|e| e.path != sa),
            "{mode}: A's script filed as run: {:?}",
            execs(t)
        );
        let wrong = matching(t, &sa, &json!({"op": "exec"}));
        assert!(wrong.is_empty(), "{mode}: {wrong:?}");
        assert!(!t.complete, "{mode}");
        assert!(t.counters.stale_bases >= 1, "{mode}: {:?}", t.counters);
    }
}

// ---------------------------------------------------------------------
// 3. Channels: io_uring, ia32, handles and mount trees.
// ---------------------------------------------------------------------

#[test]
fn io_uring_requests_are_recorded_with_their_results() {
    let w = Work::new();
    let d = w.mkdir("u");
    for f in ["a", "a2", "b", "c", "r1", "u"] {
        w.file(&format!("u/{f}"), f);
    }
    let prog = w.program("uring", &["-luring"]);
    let r = w.run(&[], &[&prog, &d, "ops"]);
    let out = ok_run(&r);
    assert!(out.contains(&format!("openat2 {d}/b -> ok")), "{out}");
    let t = r.trace();
    assert_complete(t);
    let ur = |path: &str, op: &str, syscall: &str, result: &str| {
        expect_access(
            t,
            &w.p(path),
            &json!({"op": op, "syscall": syscall, "result": result, "channel": "io_uring"}),
        );
    };
    ur("u/a", "open", "openat", "ok");
    ur("u/missing", "open", "openat", "ENOENT");
    ur("u/a2", "open", "openat", "ok");
    ur("u/b", "open", "openat2", "ok");
    ur("u/c", "stat", "statx", "ok");
    ur("u/nostat", "stat", "statx", "ENOENT");
    ur("u/newdir", "mkdir", "mkdirat", "ok");
    ur("u/u", "unlink", "unlinkat", "ok");
    expect_access(
        t,
        &w.p("u/r1"),
        &json!({"op": "rename", "syscall": "renameat", "result": "ok",
                "channel": "io_uring", "role": "source"}),
    );
    expect_access(
        t,
        &w.p("u/r2"),
        &json!({"op": "rename", "syscall": "renameat", "result": "ok",
                "channel": "io_uring", "role": "target"}),
    );
    // A successful open is the new file's own name.
    expect_access(
        t,
        &w.p("u/a2"),
        &json!({"channel": "io_uring", "raw": "a2", "observed": true}),
    );
    assert!(t.unobserved.is_empty(), "{:?}", t.unobserved);
}

#[test]
fn io_uring_request_without_completion_makes_the_trace_incomplete() {
    let w = Work::new();
    let d = w.mkdir("u");
    w.file("u/s", "");
    let prog = w.program("uring", &["-luring"]);
    let r = w.run(&[], &[&prog, &d, "skip"]);
    let out = ok_run(&r);
    assert!(out.starts_with("first completion: nop\n"), "{out}");
    let t = r.trace();
    assert!(!t.complete);
    let pid = pid_of_exec(t, &prog);
    let unobserved = &t.unobserved;
    assert!(
        unobserved.iter().any(|u| u.channel == "io_uring"
            && u.op == "statx (no completion)"
            && u.pid == pid
            && u.count == 1),
        "{unobserved:?}"
    );
    let reasons = &t.incomplete_reasons;
    assert!(
        reasons.iter().any(|r| r.contains("io_uring")),
        "{reasons:?}"
    );
}

#[test]
fn ia32_binary_is_decoded_with_the_ia32_table() {
    let w = Work::new();
    let opened = w.file("opened", "x");
    let statted = w.file("statted", "x");
    // What an ia32 write would name if read as x86_64 stat(path).
    let decoy = w.file("decoy", "x");
    let fsops32 = w.program_as("fsops", "fsops32", &["-m32"]);
    let r = w.run(
        &[],
        &[
            &fsops32,
            "open",
            &opened,
            "stat",
            &statted,
            "open",
            &w.p("absent"),
            "write",
            &decoy,
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!(
            "open {opened} -> ok\nstat {statted} -> ok\nopen {} -> ENOENT\n{decoy}write {decoy} -> ok\n",
            w.p("absent")
        )
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &opened,
        &json!({"op": "open", "syscall": "open", "abi": "x86", "result": "ok",
                "observed": true, "mode": "read"}),
    );
    expect_access(
        t,
        &statted,
        &json!({"op": "stat", "syscall": "stat64", "abi": "x86", "result": "ok"}),
    );
    expect_access(
        t,
        &w.p("absent"),
        &json!({"op": "open", "syscall": "open", "abi": "x86", "result": "ENOENT"}),
    );
    // The 32-bit libc itself, opened by the ia32 loader.
    let libc32 = entries_with(t, &json!({"op": "open", "abi": "x86", "result": "ok"}))
        .into_iter()
        .find(|p| p.ends_with("/libc.so.6"));
    assert!(
        libc32
            .as_deref()
            .is_some_and(|p| p.contains("32") || p.contains("i386")),
        "ia32 libc open: {libc32:?}"
    );
    assert!(
        file(t, &decoy).is_none(),
        "the write became a path: {:?}",
        accesses(t, &decoy)
    );
    // Nothing of the 32-bit process was read as an x86_64 syscall.
    let misread = entries_with(t, &json!({"syscall": "fstat"}));
    assert!(misread.is_empty(), "{misread:?}");
    assert_eq!(t.counters.unreadable_paths, 0, "{:?}", t.counters);
    let compat = compat_syscalls(t);
    assert_eq!(compat.arch, "x86", "{:?}", t.syscalls);
    let names = &compat.names;
    let numbers = &compat.numbers;
    for (name, nr) in [("write", 4), ("open", 5), ("stat64", 195), ("openat", 295)] {
        let i = names.iter().position(|n| *n == name);
        assert!(i.is_some(), "{name} not in compat {names:?}");
        assert_eq!(numbers[i.unwrap_or_default()], nr, "{name}");
    }
}

#[test]
fn int80_from_a_64bit_binary_is_recorded_as_ia32() {
    let w = Work::new();
    let opened = w.file("opened", "x");
    let statted = w.file("statted", "x");
    let prog = w.program("int80", &[]);
    let r = w.run(&[], &[&prog, &opened, &statted]);
    assert_eq!(
        ok_run(&r),
        format!("open {opened} -> ok\nstat64 {statted} -> ok\n{statted}\nwrite 1 -> ok\n")
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &opened,
        &json!({"op": "open", "syscall": "open", "abi": "x86", "result": "ok", "observed": true}),
    );
    expect_access(
        t,
        &statted,
        &json!({"op": "stat", "syscall": "stat64", "abi": "x86", "result": "ok"}),
    );
    // Only the one stat64: the ia32 write (x86_64's stat number) added none.
    let stats = matching(t, &statted, &json!({"op": "stat"}));
    assert_eq!(stats.len(), 1, "{stats:?}");
    let compat = compat_syscalls(t);
    assert_eq!(compat.arch, "x86", "{:?}", t.syscalls);
    let names = &compat.names;
    for n in ["open", "stat64", "write", "close"] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }
}

#[test]
fn a_handle_opened_after_its_dentry_was_dropped_is_named_or_flagged() {
    // With the dcache dropped between the two calls, the kernel opens the
    // handle through a dentry cut off from its parents, which no walk can
    // name. The file is then flagged, never named after the top of the
    // filesystem (it was filed under `/` before); should the dentry have
    // survived, it is named as usual.
    let w = Work::new();
    let f = w.file("h/file", "x");
    let fsops = w.program("fsops", &[]);
    for _ in 0..3 {
        let r = TestCommand::trace()
            .current_dir(&w.base)
            .env("FSOPS_DROP_CACHES", "1")
            .args(["run", "-o"])
            .arg(w.base.join("trace.json"))
            .args(["--", &fsops, "by_handle", &f, &w.p("h")])
            .expect_success();
        assert!(String::from_utf8_lossy(&r.stdout).contains("open_by_handle_at"));
        let t = read_trace(&w.base).expect("a trace");
        let named = entries_with(&t, &json!({"syscall": "open_by_handle_at"}));
        let flagged = t
            .unobserved
            .iter()
            .any(|u| u.channel == "unnamed" && u.op == "open_by_handle_at");
        if flagged {
            assert!(named.is_empty(), "flagged and named {named:?}");
            assert!(!t.complete);
        } else {
            assert_eq!(named, vec![f.clone()]);
            assert_complete(&t);
        }
    }
}

#[test]
fn open_by_handle_and_open_tree_are_named_by_their_descriptor() {
    let w = Work::new();
    let f = w.file("h/file", "x");
    let tree = w.mkdir("tree/sub");
    let fsops = w.program("fsops", &[]);
    let r = w.run(
        &[],
        &[&fsops, "by_handle", &f, &w.p("h"), "open_tree", &tree],
    );
    assert_eq!(
        ok_run(&r),
        format!(
            "name_to_handle_at {f} -> ok\nopen_by_handle_at {f} -> ok\nopen_tree {tree} -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &f,
        &json!({"op": "lookup", "syscall": "name_to_handle_at", "result": "ok", "raw": f}),
    );
    expect_access(
        t,
        &f,
        &json!({"op": "open", "syscall": "open_by_handle_at", "result": "ok", "observed": true}),
    );
    expect_access(
        t,
        &tree,
        &json!({"op": "open", "syscall": "open_tree", "result": "ok", "observed": true, "raw": tree}),
    );
    assert_eq!(
        entries_with(t, &json!({"syscall": "open_tree"})),
        vec![tree.clone()]
    );
    assert_eq!(
        entries_with(t, &json!({"syscall": "open_by_handle_at"})),
        vec![f.clone()]
    );
    // open_tree's flags are not open(2)'s: its descriptor is for no I/O.
    let no_io = |t: &Trace| {
        for a in matching(t, &tree, &json!({"syscall": "open_tree"})) {
            assert!(
                a.mode != Some(OpenMode::Write) && a.mode != Some(OpenMode::ReadWrite),
                "open_tree recorded as opened for writing: {a:?}"
            );
        }
    };
    no_io(t);

    // A detached copy of the tree (OPEN_TREE_CLONE) is still that directory.
    let r = w.run(&[], &[&fsops, "open_tree_clone", &tree]);
    assert_eq!(ok_run(&r), format!("open_tree_clone {tree} -> ok\n"));
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &tree,
        &json!({"op": "open", "syscall": "open_tree", "result": "ok", "observed": true, "raw": tree}),
    );
    assert_eq!(
        entries_with(t, &json!({"syscall": "open_tree"})),
        vec![tree.clone()]
    );
    no_io(t);
}

// ---------------------------------------------------------------------
// 4. Dependency-revealing syscalls.
// ---------------------------------------------------------------------

/// Sets a user xattr with setfattr's syscall, outside the trace.
fn set_user_xattr(path: &str) {
    let c_path = std::ffi::CString::new(path).expect("no NUL");
    let r = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"user.test".as_ptr(),
            b"v".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {path}: {}", std::io::Error::last_os_error());
}

#[test]
fn xattrs_statfs_and_watches_are_recorded() {
    let w = Work::new();
    let xf = w.file("xf", "x");
    set_user_xattr(&xf);
    let watched = w.file("watched", "");
    let fwatched = w.file("fwatched", "");
    let fsops = w.program("fsops", &[]);
    let d = w.p("");
    let nox = w.p("nox");
    let r = w.run(
        &[],
        &[
            &fsops,
            "getxattr",
            &xf,
            "user.test",
            "lgetxattr",
            &xf,
            "user.test",
            "listxattr",
            &xf,
            "getxattr",
            &nox,
            "user.test",
            "getxattrat",
            &d,
            "xf",
            "user.test",
            "listxattrat",
            &d,
            "xf",
            "statfs",
            &d,
            "inotify",
            &watched,
            "fanotify",
            &fwatched,
        ],
    );
    let out = ok_run(&r);
    assert_eq!(
        out,
        format!(
            "getxattr {xf} -> ok\nlgetxattr {xf} -> ok\nlistxattr {xf} -> ok\ngetxattr {nox} -> ENOENT\ngetxattrat xf -> ok\nlistxattrat xf -> ok\nstatfs {d} -> ok\ninotify {watched} -> ok\nfanotify {fwatched} -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &xf,
        &json!({"op": "xattr", "syscall": "getxattr", "result": "ok", "raw": xf, "nofollow": null}),
    );
    expect_access(
        t,
        &xf,
        &json!({"op": "xattr", "syscall": "lgetxattr", "result": "ok", "nofollow": true}),
    );
    expect_access(
        t,
        &xf,
        &json!({"op": "xattr", "syscall": "listxattr", "result": "ok"}),
    );
    expect_access(
        t,
        &nox,
        &json!({"op": "xattr", "syscall": "getxattr", "result": "ENOENT"}),
    );
    expect_access(
        t,
        &xf,
        &json!({"op": "xattr", "syscall": "getxattrat", "result": "ok", "raw": "xf"}),
    );
    expect_access(
        t,
        &xf,
        &json!({"op": "xattr", "syscall": "listxattrat", "result": "ok", "raw": "xf"}),
    );
    // statfs of BASE/ (trailing slash) is BASE.
    expect_access(
        t,
        &w.base.to_string_lossy(),
        &json!({"op": "statfs", "syscall": "statfs", "result": "ok"}),
    );
    expect_access(
        t,
        &watched,
        &json!({"op": "watch", "syscall": "inotify_add_watch", "result": "ok"}),
    );
    expect_access(
        t,
        &fwatched,
        &json!({"op": "watch", "syscall": "fanotify_mark", "result": "ok"}),
    );
}

#[test]
fn unix_socket_paths_are_recorded_and_abstract_names_are_not() {
    let w = Work::new();
    let sock = w.p("sock");
    let nosock = w.p("nosock");
    let fsops = w.program("fsops", &[]);
    let abs = format!("trace-abstract-{}", std::process::id());
    let r = w.run(
        &[],
        &[
            &fsops,
            "bind",
            &sock,
            "connect",
            &sock,
            "connect",
            &nosock,
            "bind_abstract",
            &abs,
            "connect_abstract",
            &abs,
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!(
            "bind {sock} -> ok\nconnect {sock} -> ok\nconnect {nosock} -> ENOENT\nbind_abstract {abs} -> ok\nconnect_abstract {abs} -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &sock,
        &json!({"op": "bind", "syscall": "bind", "result": "ok"}),
    );
    expect_access(
        t,
        &sock,
        &json!({"op": "connect", "syscall": "connect", "result": "ok"}),
    );
    expect_access(
        t,
        &nosock,
        &json!({"op": "connect", "syscall": "connect", "result": "ENOENT"}),
    );
    let socket_paths: Vec<String> = all_accesses(t)
        .into_iter()
        .filter(|(_, a)| a.op == Op::Bind || a.op == Op::Connect)
        .map(|(p, _)| p.to_string())
        .filter(|p| *p != sock && *p != nosock)
        .collect();
    assert!(
        socket_paths.is_empty(),
        "other socket paths recorded (the abstract name?): {socket_paths:?}"
    );
    assert!(
        !paths(t).iter().any(|p| p.contains(&abs)),
        "abstract name recorded as a path"
    );
}

/// The AF_UNIX paths `t` records a send or a connect to, with how.
fn sends_to(t: &Trace) -> Vec<(String, String, String)> {
    let mut v: Vec<(String, String, String)> = all_accesses(t)
        .into_iter()
        .filter(|(_, a)| a.op == Op::Connect)
        .map(|(p, a)| (p.to_string(), a.syscall.to_string(), a.result.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn unix_datagrams_sent_to_a_path_are_recorded_like_connects() {
    let w = Work::new();
    let sends = w.program("sends", &[]);
    let r = w.run(&[], &[&sends, &w.p(""), "plain"]);
    assert_eq!(
        ok_run(&r),
        "server -> ok\nsendto -> ok\nsendmsg -> ok\nsendmmsg -> ok\n\
         sendto_missing -> ENOENT\nsendto_abstract -> ECONNREFUSED\nsend_connected -> ok\n"
    );
    let t = r.trace();
    assert_complete(t);
    // The connected socket's sends name no address: only its connect.
    // The abstract name is no path.
    let want = |p: &str, sc: &str, res: &str| (w.p(p), sc.to_string(), res.to_string());
    assert_eq!(
        sends_to(t),
        [
            want("conn.sock", "connect", "ok"),
            want("missing.sock", "sendto", "ENOENT"),
            want("mmsg.sock", "sendmmsg", "ok"),
            want("msg.sock", "sendmsg", "ok"),
            want("to.sock", "sendto", "ok"),
        ]
    );
}

#[test]
fn a_sendmmsg_to_several_paths_makes_the_trace_incomplete() {
    let w = Work::new();
    let sends = w.program("sends", &[]);
    let r = w.run(&[], &[&sends, &w.p(""), "mixed"]);
    assert_eq!(ok_run(&r), "server -> ok\nsendmmsg -> ok\n");
    let t = r.trace();
    // The first message's path is recorded; the second's is only counted.
    assert_eq!(
        sends_to(t),
        [(w.p("a.sock"), "sendmmsg".into(), "ok".into())]
    );
    assert!(!t.complete);
    assert!(
        t.unobserved
            .iter()
            .any(|u| u.channel == "sendmmsg" && u.count == 1),
        "{:?}",
        t.unobserved
    );
    assert!(
        t.incomplete_reasons.iter().any(|r| r.contains("sendmmsg")),
        "{:?}",
        t.incomplete_reasons
    );
}

#[test]
fn ia32_datagrams_through_socketcall_and_sendmmsg() {
    let w = Work::new();
    let sends32 = w.program_as("sends", "sends32", &["-m32"]);
    let r = w.run(&[], &[&sends32, &w.p(""), "socketcall"]);
    assert_eq!(
        ok_run(&r),
        "server -> ok\nsocketcall_sendto -> ok\nsocketcall_sendmsg -> ok\n"
    );
    let t = r.trace();
    assert_complete(t);
    for p in ["to.sock", "msg.sock"] {
        expect_access(
            t,
            &w.p(p),
            &json!({"op": "connect", "syscall": "socketcall", "abi": "x86", "result": "ok"}),
        );
    }
    // 32-bit glibc's own choice of socketcall or direct calls; sendmmsg
    // is a direct one, with the compat struct layout.
    let w = Work::new();
    let r = w.run(&[], &[&sends32, &w.p(""), "plain"]);
    ok_run(&r);
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &w.p("mmsg.sock"),
        &json!({"op": "connect", "syscall": "sendmmsg", "abi": "x86", "result": "ok"}),
    );
    let got: Vec<String> = sends_to(t)
        .into_iter()
        .map(|(p, _, r)| format!("{p} {r}"))
        .collect();
    for p in [
        "to.sock ok",
        "msg.sock ok",
        "missing.sock ENOENT",
        "conn.sock ok",
    ] {
        assert!(got.contains(&w.p(p)), "{p} not in {got:?}");
    }
}

#[test]
fn privileged_calls_that_look_up_a_path_are_recorded() {
    // Arguments that make each call fail harmlessly after its lookup (or,
    // for mount_setattr, change nothing), whatever the kernel supports.
    for (program, abi) in [("fsops", None), ("fsops32", Some("x86"))] {
        let w = Work::new();
        let bin = w.program_as(
            "fsops",
            program,
            if abi.is_some() { &["-m32"] } else { &[] },
        );
        let dir = w.mkdir("d");
        let file = w.file("d/file", "x");
        let missing = w.p("d/missing");
        let calls: [(&str, &str, &str, Option<&str>); 7] = [
            ("acct", &dir, "open", Some("write")),
            ("acct", &missing, "open", Some("write")),
            ("swapon", &file, "open", Some("read-write")),
            ("swapoff", &file, "open", Some("read-write")),
            ("uselib", &file, "open", Some("read")),
            ("quotactl", &file, "lookup", None),
            ("mount_setattr", &dir, "lookup", None),
        ];
        let mut cmd: Vec<&str> = vec![&bin];
        for (name, path, _, _) in &calls {
            cmd.extend([*name, *path]);
        }
        let r = w.run(&[], &cmd);
        let out = ok_run(&r);
        let t = r.trace();
        assert_complete(t);
        for ((name, path, op, mode), line) in calls.iter().zip(out.lines()) {
            // What the program saw is what the trace says.
            let result = line.rsplit(" -> ").next().unwrap_or_default();
            let mut want = json!({"op": op, "syscall": name, "result": result, "abi": abi});
            if let Some(m) = mode {
                want["mode"] = json!(m);
            }
            expect_access(t, path, &want);
        }
    }
}

/// Accesses of `/` that claim to be a file opened or run: what a pipe or
/// memfd was named as when its walk went on to the top of its mount.
fn root_as_a_file(t: &Trace) -> Vec<&Access> {
    accesses(t, "/")
        .into_iter()
        .filter(|a| matches!(a.op, Op::Open | Op::Exec))
        .collect()
}

#[test]
fn a_pipe_behind_dev_stdin_is_named_as_asked() {
    let w = Work::new();
    let r = w.run(&[], &["sh", "-c", "echo hi | cat /dev/stdin"]);
    assert_eq!(ok_run(&r), "hi\n");
    let t = r.trace();
    assert_complete(t);
    let a = expect_access(
        t,
        "/dev/stdin",
        &json!({"op": "open", "syscall": "openat", "result": "ok", "raw": "/dev/stdin"}),
    );
    assert!(!a.observed && !a.outside_root);
    assert!(root_as_a_file(t).is_empty(), "{:?}", root_as_a_file(t));
}

#[test]
fn a_program_run_from_a_memfd_has_no_file() {
    let w = Work::new();
    let prog = w.program("memfd_exec", &[]);
    let r = w.run(&[], &[&prog]);
    ok_run(&r);
    let t = r.trace();
    assert_complete(t);
    let run = execs(t)
        .iter()
        .find(|e| e.argv == ["payload"])
        .expect("the memfd's exec");
    assert!(run.path.starts_with("/dev/fd/"), "{run:?}");
    assert_eq!(run.exe, None);
    // What it was copied from was read, and is named.
    expect_access(
        t,
        &canonical("/usr/bin/true"),
        &json!({"op": "open", "result": "ok", "observed": true}),
    );
    assert!(root_as_a_file(t).is_empty(), "{:?}", root_as_a_file(t));
}

#[test]
fn links_renames_and_new_names_are_recorded_with_their_roles() {
    let w = Work::new();
    let l1 = w.file("l1", "x");
    let l2 = w.p("l2");
    let r1 = w.file("r1", "x");
    let r2 = w.p("r2");
    let md = w.p("md");
    let uf = w.file("uf", "x");
    let sl = w.p("sl");
    let fifo = w.p("fifo");
    let created = w.p("created");
    let fsops = w.program("fsops", &[]);
    let r = w.run(
        &[],
        &[
            &fsops,
            "link",
            &l1,
            &l2,
            "rename",
            &r1,
            &r2,
            "mkdir",
            &md,
            "rmdir",
            &md,
            "unlink",
            &uf,
            "symlink",
            "some/target",
            &sl,
            "mkfifo",
            &fifo,
            "creat",
            &created,
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!(
            "link {l1} -> ok\nrename {r1} -> ok\nmkdir {md} -> ok\nrmdir {md} -> ok\nunlink {uf} -> ok\nsymlink some/target -> ok\nmkfifo {fifo} -> ok\ncreat {created} -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    let e = |p: &str, want: Value| {
        expect_access(t, p, &want);
    };
    e(
        &l1,
        json!({"op": "link", "syscall": "link", "role": "source", "result": "ok"}),
    );
    e(
        &l2,
        json!({"op": "link", "syscall": "link", "role": "target", "result": "ok"}),
    );
    e(
        &r1,
        json!({"op": "rename", "syscall": "rename", "role": "source", "result": "ok"}),
    );
    e(
        &r2,
        json!({"op": "rename", "syscall": "rename", "role": "target", "result": "ok"}),
    );
    e(
        &md,
        json!({"op": "mkdir", "syscall": "mkdir", "result": "ok"}),
    );
    e(
        &md,
        json!({"op": "rmdir", "syscall": "rmdir", "result": "ok"}),
    );
    e(
        &uf,
        json!({"op": "unlink", "syscall": "unlink", "result": "ok"}),
    );
    e(
        &sl,
        json!({"op": "symlink", "syscall": "symlink", "result": "ok", "content": "some/target"}),
    );
    e(
        &fifo,
        json!({"op": "mknod", "syscall": "mknod", "result": "ok"}),
    );
    e(
        &created,
        json!({"op": "open", "syscall": "creat", "result": "ok", "create": true,
               "mode": "write", "observed": true}),
    );
    // The symlink's content is not a path anybody looked up.
    assert!(
        !paths(t).iter().any(|p| p.ends_with("some/target")),
        "{:?}",
        paths(t)
    );
}

#[test]
fn metadata_changes_are_recorded() {
    let w = Work::new();
    let names = ["tf", "ut", "cm", "fcm", "co", "fco", "uts"];
    let p: Vec<String> = names.iter().map(|n| w.file(n, "12345")).collect();
    let lco = w.symlink("co", "lco");
    let fsops = w.program("fsops", &[]);
    let r = w.run(
        &[],
        &[
            &fsops,
            "truncate",
            &p[0],
            "utimensat",
            &p[1],
            "chmod",
            &p[2],
            "fchmodat",
            &p[3],
            "chown",
            &p[4],
            "lchown",
            &lco,
            "fchownat",
            &p[5],
            "utimes",
            &p[6],
        ],
    );
    let out = ok_run(&r);
    assert_eq!(out.matches("-> ok").count(), 8, "{out}");
    let t = r.trace();
    assert_complete(t);
    let e = |path: &str, op: &str, syscall: &str| {
        expect_access(
            t,
            path,
            &json!({"op": op, "syscall": syscall, "result": "ok", "raw": path}),
        )
    };
    e(&p[0], "truncate", "truncate");
    e(&p[1], "utime", "utimensat");
    e(&p[2], "chmod", "chmod");
    e(&p[3], "chmod", "fchmodat");
    e(&p[4], "chown", "chown");
    let l = e(&lco, "chown", "lchown");
    assert!(l.nofollow, "{l:?}");
    e(&p[5], "chown", "fchownat");
    e(&p[6], "utime", "utimes");
    assert_eq!(fs::metadata(&p[0]).expect("tf").len(), 3);
}

#[test]
fn chroot_mount_and_pivot_root_are_recorded_with_their_roles() {
    let w = Work::new();
    let croot = w.mkdir("croot");
    let msrc = w.mkdir("msrc");
    let mdst = w.mkdir("mdst");
    let nr = w.mkdir("nr");
    let old = w.mkdir("nr/old");
    let inside = w.file("nr/inside", "x");
    let fsops = w.program("fsops", &[]);
    // In a private mount namespace: bind msrc on mdst; make nr a mount
    // point and pivot into it; then open /inside, which is BASE/nr/inside.
    // The chroot goes last (a fresh fsops, so the pivot is not in its way).
    let script = format!(
        "{fsops} mount_bind {msrc} {mdst} mount_bind {nr} {nr} pivot_root {nr} {old} chdir / open /inside"
    );
    let r = w.run(&[], &["unshare", "-m", "sh", "-c", &script]);
    assert_eq!(
        ok_run(&r),
        format!(
            "mount_bind {msrc} -> ok\nmount_bind {nr} -> ok\npivot_root {nr} -> ok\nchdir / -> ok\nopen /inside -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &msrc,
        &json!({"op": "mount", "syscall": "mount", "role": "source", "result": "ok"}),
    );
    expect_access(
        t,
        &mdst,
        &json!({"op": "mount", "syscall": "mount", "role": "target", "result": "ok"}),
    );
    expect_access(
        t,
        &nr,
        &json!({"op": "pivot_root", "syscall": "pivot_root", "role": "new_root", "result": "ok"}),
    );
    expect_access(
        t,
        &old,
        &json!({"op": "pivot_root", "syscall": "pivot_root", "role": "put_old", "result": "ok"}),
    );
    expect_access(
        t,
        &inside,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": "/inside", "observed": true}),
    );
    assert!(file(t, "/inside").is_none(), "/inside named from the host");

    let r = w.run(&[], &[&fsops, "chroot", &croot]);
    assert_eq!(ok_run(&r), format!("chroot {croot} -> ok\n"));
    expect_access(
        r.trace(),
        &croot,
        &json!({"op": "chroot", "syscall": "chroot", "result": "ok", "raw": croot}),
    );
}

#[test]
fn readlink_of_a_regular_file_is_recorded_as_einval() {
    let w = Work::new();
    let plain = w.file("plain", "x");
    let fsops = w.program("fsops", &[]);
    let r = w.run(&[], &[&fsops, "readlink", &plain]);
    assert_eq!(ok_run(&r), format!("readlink {plain} -> EINVAL\n"));
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &plain,
        &json!({"op": "readlink", "syscall": "readlink", "result": "EINVAL", "errno": 22}),
    );
    // That it counts as found is what build does with it: see
    // build_keeps_what_a_readlink_einval_proved.
}

// ---------------------------------------------------------------------
// 5. Exec through a descriptor.
// ---------------------------------------------------------------------

fn script_exec_check(t: &Trace, script: &str, read: &str) {
    let sh = canonical("/bin/sh");
    let e = execs(t)
        .iter()
        .find(|e| e.interpreter.as_deref() == Some("/bin/sh"))
        .unwrap_or_else(|| panic!("no exec with interpreter /bin/sh: {:?}", t.execs));
    assert_eq!(e.path, script, "{e:?}");
    assert_eq!(e.exe.as_deref(), Some(sh.as_str()), "{e:?}");
    expect_access(t, script, &json!({"op": "exec", "result": "ok"}));
    // The script ran, and what it read was recorded.
    expect_access(t, read, &json!({"op": "open", "result": "ok"}));
    let dev_fd: Vec<String> = paths(t)
        .into_iter()
        .filter(|p| p.starts_with("/dev/fd"))
        .collect();
    assert!(dev_fd.is_empty(), "{dev_fd:?}");
    for e in execs(t) {
        for (k, v) in [("path", Some(&e.path)), ("exe", e.exe.as_ref())] {
            assert!(
                !v.is_some_and(|v| v.starts_with("/dev/fd")),
                "exec {k}: {e:?}"
            );
        }
    }
}

#[test]
fn execveat_of_a_script_names_the_script() {
    let w = Work::new();
    let read = w.file("read-by-script", "x");
    let script = w.file("d/script.sh", &format!("#!/bin/sh\nexec cat {read}\n"));
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let fsops = w.program("fsops", &[]);
    let r = w.run(&[], &[&fsops, "execveat", &w.p("d"), "script.sh"]);
    assert_eq!(ok_run(&r), "x");
    script_exec_check(r.trace(), &script, &read);
}

#[test]
fn fexecve_of_a_script_names_the_script() {
    let w = Work::new();
    let read = w.file("read-by-script", "y");
    let script = w.file("d/script2.sh", &format!("#!/bin/sh\nexec cat {read}\n"));
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let fsops = w.program("fsops", &[]);
    let r = w.run(&[], &[&fsops, "fexecve", &script]);
    assert_eq!(ok_run(&r), "y");
    script_exec_check(r.trace(), &script, &read);
}

#[test]
fn an_absolute_dev_fd_path_given_to_execveat_is_not_joined_to_the_dirfd() {
    let w = Work::new();
    let read = w.file("read-by-script", "z");
    let script = w.file("d/s.sh", &format!("#!/bin/sh\nexec cat {read}\n"));
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let fsops = w.program("fsops", &[]);
    // The dirfd is the cwd (BASE); the path goes through d's descriptor.
    let r = w.run(&[], &[&fsops, "execveat_devfd", &w.p("d"), "s.sh"]);
    assert_eq!(ok_run(&r), "z");
    let t = r.trace();
    // Neither BASE/s.sh (the dirfd's) nor a guess: the name asked for,
    // through a magic link, counted.
    let wrong = w.p("s.sh");
    assert!(
        execs(t).iter().all(|e| e.path != wrong) && accesses(t, &wrong).is_empty(),
        "joined to the dirfd: {:?}",
        execs(t)
    );
    assert!(
        execs(t)
            .iter()
            .any(|e| e.path.starts_with("/dev/fd/") && e.path.ends_with("/s.sh")),
        "{:?}",
        execs(t)
    );
    assert!(!t.complete);
    assert!(t.counters.proc_link_paths >= 1, "{:?}", t.counters);
    expect_access(t, &read, &json!({"op": "open", "result": "ok"}));
}

#[test]
fn an_exec_check_and_a_failed_exec_of_a_descriptor_are_recorded() {
    let w = Work::new();
    let script = w.file("checked.sh", "#!/bin/sh\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let plain = w.file("plain.txt", "not a program");
    let fsops = w.program("fsops", &[]);
    let r = w.run(&[], &[&fsops, "exec_check", &script, "exec_fd", &plain]);
    // AT_EXECVE_CHECK is Linux 6.14 and later (before, EINVAL).
    assert_eq!(
        ok_run(&r),
        format!("exec_check {script} -> ok\nexec_fd {plain} -> EACCES\n")
    );
    let t = r.trace();
    assert_complete(t);
    // No new program ran, yet the file was looked at as one.
    expect_access(
        t,
        &script,
        &json!({"op": "exec", "syscall": "execveat", "result": "ok", "raw": script}),
    );
    assert!(
        execs(t).iter().all(|e| e.path != script),
        "a check filed as a run"
    );
    expect_access(
        t,
        &plain,
        &json!({"op": "exec", "syscall": "execveat", "result": "EACCES", "observed": true}),
    );
}

// ---------------------------------------------------------------------
// 6. Pid scope.
// ---------------------------------------------------------------------

#[test]
fn pid_scope_follows_threads_after_the_leader_exits() {
    let w = Work::new();
    const N: usize = 10;
    for i in 0..N {
        w.file(&format!("le/f{i:02}"), "");
    }
    let child = w.file("le/child", "");
    let prog = w.program("leader_exit", &["-pthread"]);
    let r = w.run(&["--scope", "pids"], &[&prog, &w.p("le"), &N.to_string()]);
    assert_eq!(ok_run(&r), "worker done\n");
    let t = r.trace();
    assert_eq!(t.scope.mode, "pids");
    assert_complete(t);
    let want = json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true});
    let missing: Vec<usize> = (0..N)
        .filter(|i| matching(t, &w.p(&format!("le/f{i:02}")), &want).is_empty())
        .collect();
    assert!(
        missing.is_empty(),
        "opens after the leader's exit lost: {missing:?}"
    );
    expect_access(t, &child, &want);
}

#[test]
fn pid_scope_follows_an_exec_from_a_non_leader_thread() {
    let w = Work::new();
    let f1 = w.file("after-exec", "1");
    let f2 = w.file("grandchild", "2");
    let prog = w.program("thread_exec", &["-pthread"]);
    let script = format!("cat {f1}; sh -c 'cat {f2}'");
    let r = w.run(&["--scope", "pids"], &[&prog, &w.p("tid"), &script]);
    assert_eq!(ok_run(&r), "12");
    let t = r.trace();
    assert_complete(t);
    let want = json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true});
    expect_access(t, &f1, &want);
    expect_access(t, &f2, &want);
    let argvs: Vec<&[String]> = execs(t).iter().map(|e| e.argv.as_slice()).collect();
    assert!(
        argvs.contains(&&["sh", "-c", &script].map(String::from)[..]),
        "the thread's exec missing: {argvs:?}"
    );
    assert!(
        argvs.contains(&&["cat".to_string(), f1.clone()][..]),
        "{argvs:?}"
    );
}

/// Starts `sh -c SCRIPT` (not traced) as pid `pid`, by setting the pid
/// namespace's last pid just before forking; retries while something else
/// on the machine takes the number first.
fn spawn_with_pid(pid: u32, script: &str) -> std::process::Child {
    for _ in 0..500 {
        fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).expect("ns_last_pid");
        let mut c = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        if c.id() == pid {
            return c;
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    panic!("could not get pid {pid} for the unrelated process");
}

fn alive(pid: u32) -> bool {
    // Not a zombie: a killed child of ours that was not yet waited for
    // still has a /proc entry.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pid_scope_never_touches_a_process_that_reused_a_traced_thread_id() {
    let w = Work::new();
    let tidfile = w.p("tid");
    let go = w.p("go");
    let late = w.file("late", "late");
    let unrelated_file = w.file("unrelated", "");
    let prog = w.program("thread_exec", &["-pthread"]);
    let script = format!("while [ ! -e {go} ]; do sleep 0.05; done; cat {late}");
    let trace = trace_cmd(
        &w.base,
        &["--scope", "pids", "--wait-descendants", "3"],
        &[&prog, &tidfile, &script],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn();
    wait_for("the thread's id", || {
        fs::read_to_string(&tidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let tid: u32 = fs::read_to_string(&tidfile)
        .expect("tid")
        .trim()
        .parse()
        .expect("a number");
    // The thread exec'd and took the leader's pid: its own id is free.
    wait_for("the thread id to be released", || {
        !Path::new(&format!("/proc/{tid}")).exists()
    });
    let mut unrelated = spawn_with_pid(
        tid,
        &format!("while :; do cat {unrelated_file} >/dev/null; sleep 0.05; done"),
    );
    fs::write(&go, "").expect("go");
    let out = trace.wait_with_output().expect("trace finishes");
    let still_alive = alive(tid);
    let _ = unrelated.kill();
    let _ = unrelated.wait();
    let r = Run::new(out, &w.base);
    assert_eq!(ok_run(&r), "late");
    assert!(still_alive, "trace killed the unrelated process {tid}");
    let t = r.trace();
    assert_eq!(t.scope.leftovers_killed, 0);
    assert!(
        file(t, &unrelated_file).is_none(),
        "the unrelated process {tid} was traced"
    );
    expect_access(
        t,
        &late,
        &json!({"op": "open", "syscall": "openat", "result": "ok"}),
    );
}

#[test]
fn wait_descendants_kills_only_live_traced_descendants() {
    let w = Work::new();
    let pidfile = w.p("daemon.pid");
    let mut bystander = Command::new("sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep runs");
    let bystander_pid = bystander.id();
    // A daemon outlives the command; a short-lived child is already gone.
    let script = format!(
        "sh -c 'exit 0'; setsid sh -c 'echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 300' </dev/null >/dev/null 2>&1 & \
         while [ ! -e {pidfile} ]; do sleep 0.02; done"
    );
    let r = w.run(
        &["--scope", "pids", "--wait-descendants", "1"],
        &["sh", "-c", &script],
    );
    ok_run(&r);
    let daemon: u32 = fs::read_to_string(&pidfile)
        .expect("daemon pid")
        .trim()
        .parse()
        .expect("a number");
    let daemon_alive = alive(daemon);
    let bystander_alive = alive(bystander_pid);
    if daemon_alive {
        // SAFETY: kill(2) on the pid the daemon wrote, which is ours.
        unsafe { libc::kill(daemon as i32, libc::SIGKILL) };
    }
    let _ = bystander.kill();
    let _ = bystander.wait();
    let t = r.trace();
    assert!(!daemon_alive, "the traced daemon {daemon} was left running");
    assert!(bystander_alive, "the unrelated sleep was killed");
    assert_eq!(t.scope.leftovers_killed, 1, "{:?}", t.scope);
}

// ---------------------------------------------------------------------
// 7. Attach sees what the process already had.
// ---------------------------------------------------------------------

#[test]
fn attach_records_what_the_process_already_held() {
    let w = Work::new();
    let cwd = w.mkdir("cwd");
    let held = w.file("held.txt", "held");
    let ready = w.p("ready");
    let code = format!(
        "import os, time\nos.chdir({cwd:?})\nf = open({held:?})\nopen({ready:?}, 'w').close()\ntime.sleep(60)\n"
    );
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", &code])
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs");
    wait_for("python to be ready", || Path::new(&ready).exists());
    let pid = py.id();
    let maps: Vec<String> = fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("maps")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(String::from)
        .collect();
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .expect("exe")
        .to_string_lossy()
        .into_owned();
    let out_path = w.p("attach.json");
    let mut attach = TestCommand::trace();
    attach
        .args(["attach", "--pid", &pid.to_string(), "--duration", "2", "-o"])
        .arg(&out_path);
    let o = attach.run();
    let _ = py.kill();
    let _ = py.wait();
    assert_eq!(o.status.code(), Some(0), "{}", attach.report(&o));
    let t = read_trace_file(Path::new(&out_path));
    assert_complete(&t);
    let pre = |path: &str, how: &str| {
        expect_access(
            &t,
            path,
            &json!({"op": "preexisting", "syscall": how, "result": "ok"}),
        );
    };
    pre(&exe, "exe");
    assert!(exe.starts_with("/usr/bin/python3"), "{exe}");
    pre(&cwd, "cwd");
    pre(&held, "fd");
    pre("/", "root");
    assert!(
        maps.iter().any(|m| m.ends_with("/libc.so.6")),
        "python maps no libc: {maps:?}"
    );
    for m in &maps {
        pre(m, "map");
    }
}

// ---------------------------------------------------------------------
// 8. Downstream: what build keeps.
// ---------------------------------------------------------------------

/// A writable copy of the fixture rootfs in `w` (the fixture is shared).
fn rootfs_copy(w: &Work) -> PathBuf {
    let src = PathBuf::from(std::env::var_os("TRACE_FIXTURES").expect("TRACE_FIXTURES"))
        .join("bookworm-rootfs");
    assert!(src.join("usr/bin/python3").exists(), "fixture missing");
    let dst = w.base.join("rootfs");
    let ok = Command::new("cp")
        .args(["-a"])
        .arg(&src)
        .arg(&dst)
        .status()
        .expect("cp runs");
    assert!(ok.success(), "cp -a rootfs");
    dst
}

/// Builds an OCI layout from `root` and `trace`, unpacks it with umoci and
/// returns the unpacked root filesystem.
fn build_and_unpack(w: &Work, root: &Path, trace: &Path) -> PathBuf {
    let out = w.base.join("out.oci");
    TestCommand::trace()
        .arg("build")
        .arg("--from")
        .arg(root)
        .arg("--trace")
        .arg(trace)
        .arg("-o")
        .arg(&out)
        .args(["--tag", "t", "--no-package-db"])
        .expect_code(0);
    let bundle = w.base.join("bundle");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", out.display()))
        .arg(&bundle)
        .output()
        .expect("umoci runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    bundle.join("rootfs")
}

#[test]
fn build_keeps_the_parent_of_a_created_file_with_its_mode_and_owner() {
    let w = Work::new();
    let root = rootfs_copy(&w);
    let app = root.join("var/log/app");
    fs::create_dir(&app).expect("mkdir var/log/app");
    fs::set_permissions(&app, fs::Permissions::from_mode(0o2751)).expect("chmod");
    std::os::unix::fs::chown(&app, Some(1234), Some(2345)).expect("chown");
    let r = run_in(
        &w.base,
        &["--root", root.to_str().expect("utf-8")],
        &["/bin/sh", "-c", "echo hi > /var/log/app/x.log"],
    );
    ok_run(&r);
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        "/var/log/app/x.log",
        &json!({"op": "open", "create": true, "result": "ok"}),
    );
    // The program never looked /var/log/app up itself.
    assert!(
        file(t, "/var/log/app").is_none(),
        "{:?}",
        accesses(t, "/var/log/app")
    );
    let img = build_and_unpack(&w, &root, &w.base.join("trace.json"));
    let m = fs::metadata(img.join("var/log/app")).expect("/var/log/app kept");
    assert!(m.is_dir());
    assert_eq!(m.permissions().mode() & 0o7777, 0o2751);
    assert_eq!((m.uid(), m.gid()), (1234, 2345));
}

#[test]
fn build_resolves_the_symlink_before_dotdot() {
    let w = Work::new();
    let root = rootfs_copy(&w);
    let opt = root.join("opt");
    fs::create_dir_all(opt.join("real/sub")).expect("mkdir");
    fs::write(opt.join("real/x"), "real").expect("x");
    fs::write(opt.join("x"), "decoy").expect("decoy");
    std::os::unix::fs::symlink("real/sub", opt.join("link")).expect("link");
    let code = "import os\nos.chdir('/opt')\nos.stat('link/../x')\n";
    let r = run_in(
        &w.base,
        &["--root", root.to_str().expect("utf-8")],
        &["/usr/bin/python3", "-c", code],
    );
    ok_run(&r);
    let t = r.trace();
    assert_complete(t);
    // A probe is filed under its lexical name, the request kept exact.
    expect_access(
        t,
        "/opt/x",
        &json!({"op": "stat", "result": "ok", "raw": "link/../x", "requested": "/opt/link/../x"}),
    );
    let img = build_and_unpack(&w, &root, &w.base.join("trace.json"));
    assert_eq!(
        fs::read_to_string(img.join("opt/real/x")).expect("/opt/real/x kept"),
        "real"
    );
    assert_eq!(
        fs::read_link(img.join("opt/link")).expect("/opt/link kept as a symlink"),
        Path::new("real/sub")
    );
    // The walk goes through the symlink's target, so it must be there.
    assert!(
        img.join("opt/real/sub").is_dir(),
        "/opt/real/sub (the directory link names) not kept"
    );
    // And so the program does in its image what it did in the rootfs.
    let o = Command::new("chroot")
        .arg(&img)
        .args(["/usr/bin/python3", "-c", code])
        .output()
        .expect("chroot runs");
    assert!(
        o.status.success(),
        "fails in its image: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !img.join("opt/x").exists(),
        "the lexical /opt/x (never touched) was kept"
    );
}

#[test]
fn build_keeps_what_a_readlink_einval_proved() {
    let w = Work::new();
    let root = rootfs_copy(&w);
    fs::write(root.join("opt/plain"), "plain").expect("plain");
    let code = "import os\ntry:\n    os.readlink('/opt/plain')\nexcept OSError as e:\n    assert e.errno == 22\n";
    let r = run_in(
        &w.base,
        &["--root", root.to_str().expect("utf-8")],
        &["/usr/bin/python3", "-c", code],
    );
    ok_run(&r);
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        "/opt/plain",
        &json!({"op": "readlink", "result": "EINVAL"}),
    );
    let img = build_and_unpack(&w, &root, &w.base.join("trace.json"));
    assert_eq!(
        fs::read_to_string(img.join("opt/plain")).expect("/opt/plain kept"),
        "plain"
    );
}

#[test]
fn odd_names_reach_the_trace_the_image_and_the_allowlist() {
    use std::os::unix::ffi::OsStrExt;
    let w = Work::new();
    let root = rootfs_copy(&w);
    let latin1: &[u8] = b"/opt/caf\xe9";
    let newline = "/opt/new\nline";
    let in_root = |p: &[u8]| root.join(std::ffi::OsStr::from_bytes(&p[1..]));
    fs::write(in_root(latin1), "latin1").expect("latin-1 name");
    fs::write(in_root(newline.as_bytes()), "nl").expect("newline name");
    let code = r"open(b'/opt/caf\xe9', 'rb').read()
open('/opt/new\nline').read()
";
    let rootarg = root.to_str().expect("utf-8").to_string();
    let r = run_in(
        &w.base,
        &["--root", &rootarg],
        &["/usr/bin/python3", "-c", code],
    );
    ok_run(&r);
    let t = r.trace();
    assert_complete(t);
    let hex: String = latin1.iter().map(|b| format!("{b:02x}")).collect();
    let entry = files(t)
        .iter()
        .find(|f| f.path_hex.as_deref() == Some(hex.as_str()))
        .unwrap_or_else(|| panic!("no entry with path_hex {hex}: {:?}", paths(t)));
    assert!(
        entry
            .accesses
            .iter()
            .any(|a| a.op == Op::Open && a.result == "ok"),
        "{entry:?}"
    );
    expect_access(t, newline, &json!({"op": "open", "result": "ok"}));
    // The allowlist names each once, on one line, and build reads it back.
    let list = w.base.join("allow.list");
    TestCommand::trace()
        .arg("allowlist")
        .arg(w.base.join("trace.json"))
        .args(["--from", &rootarg, "-o"])
        .arg(&list)
        .expect_code(0);
    let text = fs::read(&list).expect("allowlist");
    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    assert!(
        !lines.iter().any(|l| *l == b"line"),
        "a newline split an entry:\n{}",
        String::from_utf8_lossy(&text)
    );
    let text = String::from_utf8(text).expect("the allowlist is UTF-8 text");
    for want in ["/opt/caf\\xe9", "/opt/new\\x0aline"] {
        assert!(
            text.lines().any(|l| l == want),
            "{want} not a line of:\n{text}"
        );
    }
    // The text summary and the report show the names escaped the same way,
    // never a raw control character.
    let o = TestCommand::trace()
        .arg("report")
        .arg(w.base.join("trace.json"))
        .expect_code(0);
    let shown = String::from_utf8(o.stdout).expect("report is UTF-8");
    assert!(
        shown.contains("  /opt/new\\x0aline\n") && shown.contains("  /opt/caf\\xe9\n"),
        "{shown}"
    );
    assert!(
        !shown.chars().any(|c| c.is_control() && c != '\n'),
        "{shown:?}"
    );
    // build keeps both, byte for byte.
    let img = build_and_unpack(&w, &root, &w.base.join("trace.json"));
    let in_img = |p: &[u8]| img.join(std::ffi::OsStr::from_bytes(&p[1..]));
    assert_eq!(
        fs::read_to_string(in_img(latin1)).expect("latin-1 name kept"),
        "latin1"
    );
    assert_eq!(
        fs::read_to_string(in_img(newline.as_bytes())).expect("newline name kept"),
        "nl"
    );
    let plain = w.base.join("plain");
    fs::create_dir(&plain).expect("mkdir");
    let r2 = run_in(
        &plain,
        &["--root", &rootarg],
        &["/usr/bin/python3", "-c", "pass"],
    );
    ok_run(&r2);
    let out = w.base.join("from-list.oci");
    TestCommand::trace()
        .arg("build")
        .args(["--from", &rootarg, "--trace"])
        .arg(plain.join("trace.json"))
        .arg("--include-from")
        .arg(&list)
        .arg("-o")
        .arg(&out)
        .args(["--tag", "t", "--no-package-db"])
        .expect_code(0);
    let bundle = w.base.join("bundle-list");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", out.display()))
        .arg(&bundle)
        .output()
        .expect("umoci runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = bundle.join("rootfs");
    let in_img = |p: &[u8]| img.join(std::ffi::OsStr::from_bytes(&p[1..]));
    assert!(
        in_img(latin1).is_file(),
        "latin-1 name not read back from the allowlist"
    );
    assert!(
        in_img(newline.as_bytes()).is_file(),
        "newline name not read back from the allowlist"
    );
}

// ---------------------------------------------------------------------
// More hostile cases, by class.
// ---------------------------------------------------------------------

#[test]
fn chroot_without_chdir_keeps_the_old_cwd_outside_the_new_root() {
    let w = Work::new();
    let d = w.mkdir("D");
    let cfg = w.file("D/etc/cfg", "inside");
    let rel = w.file("rel", "outside");
    let fsops = w.program("fsops", &[]);
    let base = w.p("");
    let r = w.run(
        &[],
        &[
            &fsops, "chdir", &base, "chroot", &d, "open", "rel", "stat", "nope", "open", "/etc/cfg",
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!(
            "chdir {base} -> ok\nchroot {d} -> ok\nopen rel -> ok\nstat nope -> ENOENT\nopen /etc/cfg -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    // The cwd is still BASE, below nothing of the new root.
    expect_access(
        t,
        &rel,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": "rel", "observed": true}),
    );
    expect_access(
        t,
        &w.p("nope"),
        &json!({"op": "stat", "syscall": "stat", "result": "ENOENT", "raw": "nope"}),
    );
    expect_access(
        t,
        &cfg,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": "/etc/cfg"}),
    );
    for wrong in [w.p("D/rel"), w.p("D/nope"), "/rel".into(), "/nope".into()] {
        assert!(file(t, &wrong).is_none(), "{wrong} recorded");
    }
}

#[test]
fn after_pivot_root_the_old_root_is_named_from_the_scope_root() {
    let w = Work::new();
    let nr = w.mkdir("nr");
    let old = w.mkdir("nr/old");
    let outside = w.file("outside", "x");
    let fsops = w.program("fsops", &[]);
    let via_old = format!("/old{outside}");
    let script =
        format!("{fsops} mount_bind {nr} {nr} pivot_root {nr} {old} chdir / open {via_old}");
    let r = w.run(&[], &["unshare", "-m", "sh", "-c", &script]);
    assert_eq!(
        ok_run(&r),
        format!(
            "mount_bind {nr} -> ok\npivot_root {nr} -> ok\nchdir / -> ok\nopen {via_old} -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &outside,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": via_old, "observed": true}),
    );
    for wrong in [
        format!("{nr}{outside}"),
        format!("{old}{outside}"),
        via_old.clone(),
    ] {
        assert!(file(t, &wrong).is_none(), "{wrong} recorded");
    }
}

#[test]
fn mounts_in_a_namespace_tmpfs_move_mount_and_umount() {
    let w = Work::new();
    let tm = w.mkdir("tm");
    let s = w.mkdir("s");
    let sf = w.file("s/f", "x");
    let d = w.mkdir("d");
    let fsops = w.program("fsops", &[]);
    let tf = w.p("tm/t");
    let df = w.p("d/f");
    let script = format!(
        "{fsops} mount_tmpfs {tm} create {tf} open {tf} move_mount {s} {d} open {df} umount {d}"
    );
    let r = w.run(&[], &["unshare", "-m", "sh", "-c", &script]);
    assert_eq!(
        ok_run(&r),
        format!(
            "mount_tmpfs {tm} -> ok\ncreate {tf} -> ok\nopen {tf} -> ok\nmove_mount {s} -> ok\nopen {df} -> ok\numount {d} -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &tm,
        &json!({"op": "mount", "syscall": "mount", "role": "target", "result": "ok"}),
    );
    // A file on the tmpfs says where that filesystem is mounted.
    expect_access(
        t,
        &tf,
        &json!({"op": "open", "syscall": "open", "result": "ok", "observed": true,
                "mount": {"fs": "tmpfs", "at": tm}}),
    );
    expect_access(
        t,
        &d,
        &json!({"op": "move_mount", "syscall": "move_mount", "role": "target", "result": "ok"}),
    );
    // Through the moved copy, on the root filesystem: named where it lies.
    expect_access(
        t,
        &sf,
        &json!({"op": "open", "syscall": "open", "result": "ok", "observed": true,
                "raw": df, "requested": df, "mount": null}),
    );
    expect_access(
        t,
        &d,
        &json!({"op": "umount", "syscall": "umount2", "result": "ok"}),
    );
    // The source was named by a descriptor (MOVE_MOUNT_F_EMPTY_PATH).
    expect_access(
        t,
        &s,
        &json!({"op": "move_mount", "syscall": "move_mount", "role": "source", "result": "ok"}),
    );
}

/// Runs the uring helper in MODE under `trace run` with `extra`.
fn uring_run(w: &Work, extra: &[&str], mode: &str) -> Run {
    let d = w.mkdir("u");
    for f in ["a", "c"] {
        w.file(&format!("u/{f}"), f);
    }
    let prog = w.program("uring", &["-luring"]);
    w.run(extra, &[&prog, &d, mode])
}

fn uring_two_checked(w: &Work, r: &Run) {
    let out = ok_run(r);
    assert_eq!(
        out,
        format!("openat {} -> ok\nstatx {} -> ok\n", w.p("u/a"), w.p("u/c"))
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &w.p("u/a"),
        &json!({"op": "open", "syscall": "openat", "result": "ok", "channel": "io_uring",
                "observed": true}),
    );
    expect_access(
        t,
        &w.p("u/c"),
        &json!({"op": "stat", "syscall": "statx", "result": "ok", "channel": "io_uring"}),
    );
}

#[test]
fn io_uring_requests_run_by_a_worker_thread_are_recorded() {
    let w = Work::new();
    let r = uring_run(&w, &[], "async");
    uring_two_checked(&w, &r);
}

#[test]
fn io_uring_sqpoll_submissions_are_recorded_in_both_scopes() {
    for scope in ["cgroup", "pids"] {
        let w = Work::new();
        let r = uring_run(&w, &["--scope", scope], "sqpoll");
        assert_eq!(r.trace().scope.mode, scope);
        uring_two_checked(&w, &r);
    }
}

#[test]
fn io_uring_open_into_the_fixed_file_table_is_recorded_or_flagged() {
    let w = Work::new();
    let r = uring_run(&w, &[], "direct");
    assert_eq!(ok_run(&r), format!("openat_direct {} -> ok\n", w.p("u/a")));
    let t = r.trace();
    let recorded = !matching(
        t,
        &w.p("u/a"),
        &json!({"op": "open", "syscall": "openat", "result": "ok", "channel": "io_uring"}),
    )
    .is_empty();
    let flagged = !t.complete && t.unobserved.iter().any(|u| u.channel == "io_uring");
    assert!(
        recorded || flagged,
        "a direct open neither recorded nor flagged: complete {} unobserved {:?} entry {:?}",
        t.complete,
        t.unobserved,
        accesses(t, &w.p("u/a"))
    );
}

#[test]
fn ia32_chdir_relative_open_and_exec() {
    let w = Work::new();
    let rel = w.file("rel", "x");
    let fsops32 = w.program_as("fsops", "fsops32", &["-m32"]);
    let fsops64 = w.program("fsops", &[]);
    let base = w.p("");
    let r = w.run(
        &[],
        &[&fsops32, "chdir", &base, "open", "rel", "exec", &fsops64],
    );
    assert_eq!(ok_run(&r), format!("chdir {base} -> ok\nopen rel -> ok\n"));
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        w.base.to_str().expect("utf-8"),
        &json!({"op": "chdir", "syscall": "chdir", "abi": "x86", "result": "ok"}),
    );
    expect_access(
        t,
        &rel,
        &json!({"op": "open", "syscall": "open", "abi": "x86", "result": "ok", "raw": "rel",
                "observed": true}),
    );
    // The ia32 process ran the 64-bit one.
    expect_access(
        t,
        &fsops64,
        &json!({"op": "exec", "syscall": "execve", "abi": "x86", "result": "ok"}),
    );
    let e = execs(t)
        .iter()
        .find(|e| e.path == fsops64.as_str())
        .unwrap_or_else(|| panic!("exec of {fsops64} missing: {:?}", t.execs));
    assert_eq!(e.exe.as_deref(), Some(fsops64.as_str()));
    assert_eq!(e.argv, [fsops64.as_str()]);
}

#[test]
fn fexecve_of_a_binary_names_the_binary() {
    let w = Work::new();
    let bin = w.p("bin2/mytrue");
    fs::create_dir_all(w.base.join("bin2")).expect("mkdir");
    fs::copy("/usr/bin/true", &bin).expect("copy true");
    let fsops = w.program("fsops", &[]);
    let r = w.run(&[], &[&fsops, "fexecve", &bin]);
    assert_eq!(ok_run(&r), "");
    let t = r.trace();
    assert_complete(t);
    let e = execs(t)
        .iter()
        .find(|e| e.argv == [bin.as_str()])
        .unwrap_or_else(|| panic!("no exec of {bin}: {:?}", t.execs));
    assert_eq!(e.path, bin.as_str(), "{e:?}");
    assert_eq!(e.exe.as_deref(), Some(bin.as_str()), "{e:?}");
    expect_access(t, &bin, &json!({"op": "exec", "result": "ok"}));
    let dev_fd: Vec<String> = paths(t)
        .into_iter()
        .filter(|p| p.starts_with("/dev/fd") || p.starts_with("/proc/self/fd"))
        .collect();
    assert!(dev_fd.is_empty(), "{dev_fd:?}");
}

#[test]
fn pid_scope_follows_a_clone_parent_child() {
    let w = Work::new();
    let f = w.file("cp", "x");
    let fsops = w.program("fsops", &[]);
    let r = w.run(&["--scope", "pids"], &[&fsops, "clone_parent_open", &f]);
    assert_eq!(ok_run(&r), format!("clone_parent_open {f} -> ok\n"));
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &f,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true}),
    );
}

#[test]
fn a_descendant_working_after_the_command_exits_is_recorded() {
    for scope in ["cgroup", "pids"] {
        let w = Work::new();
        let late = w.file("late", "x");
        let script = format!("(sleep 0.5; cat {late} >/dev/null) </dev/null >/dev/null 2>&1 &");
        let r = w.run(
            &["--scope", scope, "--wait-descendants", "30"],
            &["sh", "-c", &script],
        );
        ok_run(&r);
        let t = r.trace();
        assert_complete(t);
        expect_access(
            t,
            &late,
            &json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true}),
        );
        assert_eq!(t.scope.leftovers_killed, 0, "{scope}");
    }
}

#[test]
fn attach_records_every_process_thread_cwd_and_descriptor() {
    let w = Work::new();
    let main_cwd = w.mkdir("main_cwd");
    let thread_cwd = w.mkdir("thread_cwd");
    let child_cwd = w.mkdir("child_cwd");
    let held_main = w.file("held_main", "m");
    let held_child = w.file("held_child", "c");
    let rel = w.file("thread_cwd/rel", "r");
    let prog = w.program("attach_target", &["-pthread"]);
    let mut target = Command::new(&prog)
        .arg(w.p(""))
        .stdin(Stdio::null())
        .spawn()
        .expect("target runs");
    let ready = w.p("ready");
    wait_for("the target to be ready", || Path::new(&ready).exists());
    let pid = target.id();
    let out_path = w.p("attach.json");
    let mut attach = TestCommand::trace();
    attach
        .args(["attach", "--pid", &pid.to_string(), "--duration", "2", "-o"])
        .arg(&out_path);
    let o = attach.run();
    let _ = target.kill();
    let _ = target.wait();
    assert_eq!(o.status.code(), Some(0), "{}", attach.report(&o));
    let t = read_trace_file(Path::new(&out_path));
    assert_complete(&t);
    let pre = |path: &str, how: &str| {
        expect_access(
            &t,
            path,
            &json!({"op": "preexisting", "syscall": how, "result": "ok"}),
        );
    };
    pre(&prog, "exe");
    pre(&main_cwd, "cwd");
    pre(&held_main, "fd");
    // The child process, already there at attach time.
    pre(&child_cwd, "cwd");
    pre(&held_child, "fd");
    // What the thread did while attached, relative to its own cwd.
    expect_access(
        &t,
        &rel,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "raw": "rel", "observed": true}),
    );
    assert!(file(&t, &w.p("main_cwd/rel")).is_none());
    // The thread's own cwd, which it held before the attach.
    pre(&thread_cwd, "cwd");
}

/// Makes BASE/NAME/NAME/... (`depth` levels) with a file `f` at the
/// bottom, by relative steps (the whole path may exceed PATH_MAX); returns
/// the full path of the bottom directory.
fn deep_tree(w: &Work, name: &str, depth: usize) -> String {
    let code = format!(
        "import os\nos.chdir({:?})\nfor _ in range({depth}):\n    os.mkdir({name:?})\n    os.chdir({name:?})\nopen('f', 'w').close()\n",
        w.p("")
    );
    let o = Command::new("/usr/bin/python3")
        .args(["-c", &code])
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut p = w.base.to_string_lossy().into_owned();
    for _ in 0..depth {
        p.push('/');
        p.push_str(name);
    }
    p
}

/// Opens `f` and stats `missing` at the bottom of a deep tree: the trace
/// names both exactly, or says it could not.
fn deep_open_checked(name: &str, depth: usize) {
    let w = Work::new();
    let bottom = deep_tree(&w, name, depth);
    let fsops = w.program("fsops", &[]);
    let base = w.p("");
    let n = depth.to_string();
    let r = w.run(
        &[],
        &[
            &fsops, "chdir", &base, "chdir_n", name, &n, "open", "f", "stat", "missing",
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!("chdir {base} -> ok\nchdir_n {name} -> ok\nopen f -> ok\nstat missing -> ENOENT\n")
    );
    let t = r.trace();
    let f = format!("{bottom}/f");
    let missing = format!("{bottom}/missing");
    let opened = !matching(
        t,
        &f,
        &json!({"op": "open", "syscall": "open", "result": "ok", "raw": "f", "observed": true}),
    )
    .is_empty();
    let probed = !matching(
        t,
        &missing,
        &json!({"op": "stat", "syscall": "stat", "result": "ENOENT", "raw": "missing"}),
    )
    .is_empty();
    if opened && probed {
        return;
    }
    // Not named whole: then the trace must say so.
    let flagged_entries: Vec<usize> = files(t)
        .iter()
        .filter(|e| e.truncated)
        .map(|e| e.path.len())
        .collect();
    assert!(
        !t.complete && t.counters.truncated_paths > 0 && !flagged_entries.is_empty(),
        "depth {depth} x {name:?} ({} bytes): open named {opened}, stat named {probed}, \
         complete {}, reasons {:?}, truncated entries (path lengths) {flagged_entries:?}, \
         raw-f entries {:?}",
        f.len(),
        t.complete,
        t.incomplete_reasons,
        entries_with(t, &json!({"raw": "f"}))
            .iter()
            .map(|p| p.len())
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_walk_deeper_than_the_walk_limit_is_named_or_flagged() {
    deep_open_checked("d", 1100);
}

#[test]
fn a_path_longer_than_the_record_is_named_or_flagged() {
    deep_open_checked(&"x".repeat(250), 120);
}

#[test]
fn dedup_distinguishes_results_and_modes() {
    let w = Work::new();
    let p = w.p("later");
    let fsops = w.program("fsops", &[]);
    let r = w.run(
        &[],
        &[&fsops, "stat", &p, "create", &p, "stat", &p, "openat", &p],
    );
    assert_eq!(
        ok_run(&r),
        format!("stat {p} -> ENOENT\ncreate {p} -> ok\nstat {p} -> ok\nopenat {p} -> ok\n")
    );
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &p,
        &json!({"op": "stat", "syscall": "stat", "result": "ENOENT"}),
    );
    expect_access(
        t,
        &p,
        &json!({"op": "stat", "syscall": "stat", "result": "ok"}),
    );
    expect_access(
        t,
        &p,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "mode": "write", "create": true}),
    );
    expect_access(
        t,
        &p,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "mode": "read", "create": null}),
    );
}

#[test]
fn ia32_unix_sockets_through_socketcall() {
    let w = Work::new();
    let fsops32 = w.program_as("fsops", "fsops32", &["-m32"]);
    let base = w.p("");
    let s1 = w.p("s1.sock");
    let r = w.run(
        &[],
        &[
            &fsops32,
            "socketcall_bind",
            &s1,
            "chdir",
            &base,
            "bind",
            "rel.sock",
            "connect",
            "rel.sock",
            "connect",
            "none.sock",
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!(
            "socketcall_bind {s1} -> ok\nchdir {base} -> ok\nbind rel.sock -> ok\nconnect rel.sock -> ok\nconnect none.sock -> ENOENT\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    let sc = |path: &str, op: &str, result: &str| {
        expect_access(
            t,
            path,
            &json!({"op": op, "syscall": "socketcall", "abi": "x86", "result": result}),
        );
    };
    sc(&s1, "bind", "ok");
    sc(&w.p("rel.sock"), "bind", "ok");
    sc(&w.p("rel.sock"), "connect", "ok");
    sc(&w.p("none.sock"), "connect", "ENOENT");
}

#[test]
fn processes_in_a_new_pid_namespace_are_followed_in_both_scopes() {
    for scope in ["cgroup", "pids"] {
        let w = Work::new();
        let f = w.file("in-ns", "ns");
        let script = format!("cat {f}; sh -c 'cat {f}.2 2>/dev/null; true'");
        let r = w.run(
            &["--scope", scope],
            &["unshare", "-p", "-f", "--mount-proc", "sh", "-c", &script],
        );
        assert_eq!(ok_run(&r), "ns", "{scope}");
        let t = r.trace();
        assert_complete(t);
        expect_access(
            t,
            &f,
            &json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true}),
        );
        expect_access(
            t,
            &format!("{f}.2"),
            &json!({"op": "open", "syscall": "openat", "result": "ENOENT"}),
        );
    }
}

#[test]
fn a_chroot_inside_root_is_named_relative_to_the_root() {
    let w = Work::new();
    let root = rootfs_copy(&w);
    fs::create_dir_all(root.join("opt/jail/etc")).expect("mkdir");
    fs::write(root.join("opt/jail/etc/x"), "jailed").expect("x");
    let code = "import os\nos.chroot('/opt/jail')\nprint(open('/etc/x').read())\n";
    let r = run_in(
        &w.base,
        &["--root", root.to_str().expect("utf-8")],
        &["/usr/bin/python3", "-c", code],
    );
    assert_eq!(ok_run(&r), "jailed\n");
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        "/opt/jail",
        &json!({"op": "chroot", "syscall": "chroot", "result": "ok", "raw": "/opt/jail"}),
    );
    expect_access(
        t,
        "/opt/jail/etc/x",
        &json!({"op": "open", "syscall": "openat", "result": "ok", "raw": "/etc/x", "observed": true}),
    );
    assert!(
        file(t, "/etc/x").is_none(),
        "named outside the inner chroot"
    );
}

#[test]
fn a_bind_from_outside_the_root_is_marked_outside_root() {
    let w = Work::new();
    let root = rootfs_copy(&w);
    fs::create_dir(root.join("mnt/host")).expect("mkdir");
    let host = w.mkdir("hostdir");
    let hf = w.file("hostdir/f", "from the host");
    let trace_json = w.p("trace.json");
    let script = format!(
        "mount --bind {host} {}/mnt/host && exec {} run -o {trace_json} --root {} -- /bin/cat /mnt/host/f",
        root.display(),
        trace_bin().display(),
        root.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .output()
        .expect("unshare runs");
    let r = Run::new(out, &w.base);
    assert_eq!(ok_run(&r), "from the host");
    let t = r.trace();
    assert_complete(t);
    // Not the image's /mnt/host/f: the host file, named from the top of
    // its filesystem (which is the host's /), and said to be outside.
    expect_access(
        t,
        &hf,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true,
                "outside_root": true, "raw": "/mnt/host/f"}),
    );
    let as_image: Vec<&Access> = matching(t, "/mnt/host/f", &json!({"result": "ok"}))
        .into_iter()
        .filter(|a| !a.outside_root && a.mount.is_none())
        .collect();
    assert!(
        as_image.is_empty(),
        "/mnt/host/f filed as the image's own file: {as_image:?}"
    );
}

#[test]
fn dedup_sees_a_symlink_retargeted_between_two_identical_requests() {
    let w = Work::new();
    let f1 = w.file("d1/f", "1");
    let f2 = w.file("d2/f", "2");
    let t1 = w.file("t1", "1");
    let t2 = w.file("t2", "2");
    let dir_link = w.symlink("d1", "dl");
    let file_link = w.symlink("t1", "fl");
    let fsops = w.program("fsops", &[]);
    let via_dir = w.p("dl/f");
    // The same request, from the same directory, twice; in between the
    // symlinks are replaced (unlink + symlink: no rename, no mount).
    let r = w.run(
        &[],
        &[
            &fsops, "open", &via_dir, "open", &file_link, "unlink", &dir_link, "symlink", "d2",
            &dir_link, "unlink", &file_link, "symlink", "t2", &file_link, "open", &via_dir, "open",
            &file_link,
        ],
    );
    assert_eq!(
        ok_run(&r),
        format!(
            "open {via_dir} -> ok\nopen {file_link} -> ok\nunlink {dir_link} -> ok\nsymlink d2 -> ok\nunlink {file_link} -> ok\nsymlink t2 -> ok\nopen {via_dir} -> ok\nopen {file_link} -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    for (real, asked) in [
        (&f1, &via_dir),
        (&f2, &via_dir),
        (&t1, &file_link),
        (&t2, &file_link),
    ] {
        expect_access(
            t,
            real,
            &json!({"op": "open", "syscall": "open", "result": "ok", "observed": true,
                    "raw": asked, "requested": asked}),
        );
    }
}

#[test]
fn dedup_sees_the_same_request_in_another_mount_namespace() {
    let w = Work::new();
    let a = w.mkdir("A");
    let b = w.mkdir("B");
    let af = w.file("A/f", "from A\n");
    let bf = w.file("B/f", "from B\n");
    let ready = w.p("ns-ready");
    // A namespace with B hidden under a bind of A, made before the trace
    // (so no mount happens while tracing), held open by a sleeping shell.
    let mut holder = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &format!("mount --bind {a} {b} && touch {ready} && exec sleep 120"),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare runs");
    wait_for("the namespace", || Path::new(&ready).exists());
    let script = format!("cat {bf}; nsenter -t {} -m cat {bf}", holder.id());
    let r = w.run(&[], &["sh", "-c", &script]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(ok_run(&r), "from B\nfrom A\n");
    let t = r.trace();
    assert_complete(t);
    expect_access(
        t,
        &bf,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true, "raw": bf}),
    );
    expect_access(
        t,
        &af,
        &json!({"op": "open", "syscall": "openat", "result": "ok", "observed": true,
                "raw": bf, "requested": bf}),
    );
}

/// The same two requests twice, with the symlinks they go through
/// replaced in between by a process outside the trace (`replace`).
fn retargeted_from_outside(replace: impl FnOnce(&Work)) {
    let w = Work::new();
    let f1 = w.file("d1/f", "1");
    let f2 = w.file("d2/f", "2");
    let t1 = w.file("t1", "1");
    let t2 = w.file("t2", "2");
    w.symlink("d1", "dl");
    let file_link = w.symlink("t1", "fl");
    let fsops = w.program("fsops", &[]);
    let via_dir = w.p("dl/f");
    let (first, go) = (w.p("first-done"), w.p("go"));
    let trace = trace_cmd(
        &w.base,
        &[],
        &[
            &fsops, "open", &via_dir, "open", &file_link, "create", &first, "wait", &go, "open",
            &via_dir, "open", &file_link,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn();
    wait_for("the first opens", || Path::new(&first).exists());
    replace(&w);
    fs::write(&go, "").expect("go");
    let out = trace.wait_with_output().expect("trace finishes");
    let r = Run::new(out, &w.base);
    assert_eq!(
        ok_run(&r),
        format!(
            "open {via_dir} -> ok\nopen {file_link} -> ok\ncreate {first} -> ok\nwait {go} -> ok\nopen {via_dir} -> ok\nopen {file_link} -> ok\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    for (real, asked) in [
        (&f1, &via_dir),
        (&f2, &via_dir),
        (&t1, &file_link),
        (&t2, &file_link),
    ] {
        expect_access(
            t,
            real,
            &json!({"op": "open", "syscall": "open", "result": "ok", "observed": true,
                    "raw": asked, "requested": asked}),
        );
    }
}

#[test]
fn dedup_sees_symlinks_replaced_by_an_untraced_process() {
    retargeted_from_outside(|w| {
        for (link, to) in [("dl", "d2"), ("fl", "t2")] {
            fs::remove_file(w.base.join(link)).expect("unlink");
            std::os::unix::fs::symlink(to, w.base.join(link)).expect("symlink");
        }
    });
}

#[test]
fn dedup_sees_symlinks_renamed_over_by_an_untraced_process() {
    retargeted_from_outside(|w| {
        for (link, to) in [("dl", "d2"), ("fl", "t2")] {
            let tmp = w.base.join(format!("{link}.new"));
            std::os::unix::fs::symlink(to, &tmp).expect("symlink");
            fs::rename(&tmp, w.base.join(link)).expect("rename");
        }
    });
}

#[test]
fn the_same_script_rewritten_for_another_interpreter_is_seen_twice() {
    let w = Work::new();
    let script = w.file("s.sh", "#!/bin/sh\necho sh\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let (first, go) = (w.p("first-done"), w.p("go"));
    let cmd =
        format!("{script}; touch {first}; while [ ! -e {go} ]; do sleep 0.02; done; {script}");
    let trace = trace_cmd(&w.base, &[], &["sh", "-c", &cmd])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    wait_for("the first run", || Path::new(&first).exists());
    // Rewritten in place by a process outside the trace: same inode, same
    // name, same command line; only the #! line differs.
    fs::write(&script, "#!/usr/bin/python3\nprint('py')\n").expect("rewrite");
    fs::write(&go, "").expect("go");
    let out = trace.wait_with_output().expect("trace finishes");
    let r = Run::new(out, &w.base);
    assert_eq!(ok_run(&r), "sh\npy\n");
    let t = r.trace();
    assert_complete(t);
    let python = canonical("/usr/bin/python3");
    let dash = canonical("/bin/sh");
    for exe in [&python, &dash] {
        expect_access(t, exe, &json!({"op": "exec", "result": "ok", "exe": true}));
    }
    let interpreters: Vec<Option<&str>> = execs(t)
        .iter()
        .filter(|e| e.path == script.as_str())
        .map(|e| e.interpreter.as_deref())
        .collect();
    assert!(
        interpreters.contains(&Some("/bin/sh")) && interpreters.contains(&Some("/usr/bin/python3")),
        "execs of {script}: {interpreters:?}"
    );
}

#[test]
fn io_uring_links_symlinks_and_connects_are_recorded() {
    let w = Work::new();
    let d = w.mkdir("u");
    w.file("u/l1", "x");
    let prog = w.program("uring", &["-luring"]);
    let r = w.run(&[], &[&prog, &d, "more"]);
    let (l1, l2, sl) = (w.p("u/l1"), w.p("u/l2"), w.p("u/sl"));
    let (sock, none) = (w.p("u/s.sock"), w.p("u/none.sock"));
    assert_eq!(
        ok_run(&r),
        format!(
            "linkat {l1} -> ok\nsymlinkat {sl} -> ok\nconnect {sock} -> ok\nconnect {none} -> ENOENT\n"
        )
    );
    let t = r.trace();
    assert_complete(t);
    let ur = |path: &str, want: Value| {
        let mut want = want;
        want["channel"] = json!("io_uring");
        expect_access(t, path, &want);
    };
    ur(
        &l1,
        json!({"op": "link", "syscall": "linkat", "role": "source", "result": "ok"}),
    );
    ur(
        &l2,
        json!({"op": "link", "syscall": "linkat", "role": "target", "result": "ok"}),
    );
    ur(
        &sl,
        json!({"op": "symlink", "syscall": "symlinkat", "result": "ok", "content": "target"}),
    );
    ur(
        &sock,
        json!({"op": "connect", "syscall": "connect", "result": "ok"}),
    );
    ur(
        &none,
        json!({"op": "connect", "syscall": "connect", "result": "ENOENT"}),
    );
}

// ---------------------------------------------------------------------
// Programs kept loaded between captures (`capture::kept`).
// ---------------------------------------------------------------------

/// A process-table size no other test uses: these tests' captures get a
/// kept set of their own (the size is part of its key).
const KEPT_TABLE: &str = "32001";
const REUSED: &str = "programs kept by an earlier capture reset";
const VERIFIED: &str = "programs verified";

fn kept_cmd(w: &Work, script: &str) -> TestCommand {
    let mut cmd = trace_cmd(&w.base, &[], &["/bin/sh", "-c", script]);
    cmd.env("TRACE_DEBUG_PROCESS_TABLE", KEPT_TABLE)
        .env("TRACE_DEBUG_TIMING", "1");
    cmd
}

fn paths(t: &Trace) -> std::collections::BTreeSet<String> {
    t.files.iter().map(|f| f.path.clone()).collect()
}

/// Serialises the tests below: each expects to find the set free.
static KEPT: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn kept_programs_start_each_capture_afresh() {
    let _one = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let w = Work::new();
    let (a, b, c) = (w.file("a", "a"), w.file("b", "b"), w.file("c", "c"));
    // Keeps a set (or reuses one an earlier test run of this boot kept).
    let r = Run::new(kept_cmd(&w, &format!("cat {a} {b}")).run(), &w.base);
    assert_eq!(ok_run(&r), "ab");
    // Reuses it: the files the first capture saw are seen again (its dedup
    // state is not this one's), and nothing is counted twice or lost.
    let r = Run::new(kept_cmd(&w, &format!("cat {a} {b} {c}")).run(), &w.base);
    assert_eq!(ok_run(&r), "abc");
    assert!(r.stderr().contains(REUSED), "{}", r.stderr());
    let kept = r.trace();
    assert_complete(kept);
    for f in [&a, &b, &c] {
        assert!(!matching(kept, f, &json!({"op": "open"})).is_empty(), "{f}");
    }
    // The same files as programs loaded afresh see.
    let mut fresh = kept_cmd(&w, &format!("cat {a} {b} {c}"));
    fresh.env("TRACE_KEEP_PROGRAMS", "0");
    let f = Run::new(fresh.run(), &w.base);
    assert_eq!(ok_run(&f), "abc");
    assert!(f.stderr().contains(VERIFIED), "{}", f.stderr());
    assert!(!f.stderr().contains(REUSED), "{}", f.stderr());
    assert_eq!(paths(kept), paths(f.trace()));
}

#[test]
fn a_capture_killed_while_using_kept_programs_leaves_nothing_stale() {
    let _one = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let w = Work::new();
    let a = w.file("a", "a");
    let marker = w.p("opened");
    let mut child = kept_cmd(&w, &format!("cat {a}; touch {marker}; exec sleep 30"))
        .stderr(Stdio::null())
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(&marker).exists() {
        assert!(Instant::now() < deadline, "the traced command never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    // The next capture reuses the set the killed one held, and sees the
    // file again, whole.
    let r = Run::new(kept_cmd(&w, &format!("cat {a}")).run(), &w.base);
    assert_eq!(ok_run(&r), "a");
    assert!(r.stderr().contains(REUSED), "{}", r.stderr());
    let t = r.trace();
    assert_complete(t);
    assert!(!matching(t, &a, &json!({"op": "open"})).is_empty());
}

#[test]
fn a_capture_beside_one_using_the_kept_programs_loads_its_own() {
    let _one = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let w = Work::new();
    let (a, b) = (w.file("a", "a"), w.file("b", "b"));
    let marker = w.p("opened");
    let first = Work::new();
    let mut child = kept_cmd(&first, &format!("cat {a}; touch {marker}; sleep 2"))
        .stderr(Stdio::null())
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(&marker).exists() {
        assert!(Instant::now() < deadline, "the traced command never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = Run::new(kept_cmd(&w, &format!("cat {b}")).run(), &w.base);
    assert_eq!(ok_run(&r), "b");
    assert!(r.stderr().contains(VERIFIED), "{}", r.stderr());
    let t = r.trace();
    assert_complete(t);
    assert!(!matching(t, &b, &json!({"op": "open"})).is_empty());
    assert!(
        matching(t, &a, &json!({})).is_empty(),
        "the other capture's file"
    );
    let status = child.wait().expect("wait");
    assert!(status.success());
    let t = read_trace(&first.base).expect("the first capture's trace");
    assert_complete(&t);
    assert!(!matching(&t, &a, &json!({"op": "open"})).is_empty());
    assert!(
        matching(&t, &b, &json!({})).is_empty(),
        "the other capture's file"
    );
}

#[test]
fn kept_programs_in_a_directory_others_can_write_are_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    let _one = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let w = Work::new();
    let a = w.file("a", "a");
    // A set to find.
    let r = Run::new(kept_cmd(&w, &format!("cat {a}")).run(), &w.base);
    assert_eq!(ok_run(&r), "a");
    let root = Path::new("/sys/fs/bpf/trace");
    let mode = fs::metadata(root)
        .expect("the kept sets' directory")
        .permissions();
    fs::set_permissions(root, fs::Permissions::from_mode(0o777)).expect("chmod");
    let r = Run::new(kept_cmd(&w, &format!("cat {a}")).run(), &w.base);
    fs::set_permissions(root, mode).expect("chmod back");
    assert_eq!(ok_run(&r), "a");
    assert!(r.stderr().contains(VERIFIED), "{}", r.stderr());
    assert!(!r.stderr().contains(REUSED), "{}", r.stderr());
    assert_complete(r.trace());
    assert!(!matching(r.trace(), &a, &json!({"op": "open"})).is_empty());
}

#[test]
fn a_kept_set_that_cannot_be_reset_is_replaced() {
    let _one = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let w = Work::new();
    let a = w.file("a", "a");
    let r = Run::new(kept_cmd(&w, &format!("cat {a}")).run(), &w.base);
    assert_eq!(ok_run(&r), "a");
    // Break every kept set: without the scope's root map none can be reset.
    // (Other tests' captures then load afresh, which is harmless.)
    for set in fs::read_dir("/sys/fs/bpf/trace")
        .expect("kept sets")
        .flatten()
    {
        let _ = fs::remove_file(set.path().join("map_ROOT"));
    }
    let r = Run::new(kept_cmd(&w, &format!("cat {a}")).run(), &w.base);
    assert_eq!(ok_run(&r), "a");
    assert!(r.stderr().contains(VERIFIED), "{}", r.stderr());
    assert_complete(r.trace());
    assert!(!matching(r.trace(), &a, &json!({"op": "open"})).is_empty());
    // The broken set was replaced by a whole one.
    let r = Run::new(kept_cmd(&w, &format!("cat {a}")).run(), &w.base);
    assert_eq!(ok_run(&r), "a");
    assert!(r.stderr().contains(REUSED), "{}", r.stderr());
    assert_complete(r.trace());
}
