//! End-to-end tests of `trace run`: real programs under the real eBPF
//! programs (run as root), exact assertions on the trace they produce.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
};

use crate::util::*;

#[test]
fn cat_etc_hostname() {
    let dir = tempdir();
    let r = run_in(dir.path(), &[], &["cat", "/etc/hostname"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    // stdout passes through untouched.
    assert_eq!(r.stdout(), fs::read_to_string("/etc/hostname").unwrap());
    let t = r.trace();
    assert_complete(t);
    assert_eq!(t.format, "trace");
    assert_eq!(t.version, 2);
    assert_eq!(t.scope.mode, "cgroup");
    let host = accesses(t, "/etc/hostname");
    assert_eq!(host.len(), 1, "{host:?}");
    assert_eq!(host[0].op, Op::Open);
    assert_eq!(host[0].mode, Some(OpenMode::Read));
    assert_eq!(host[0].result, "ok");
    assert_eq!(host[0].raw.as_deref(), Some("/etc/hostname"));
    // The dynamic loader's work is seen too.
    assert!(has(t, "/etc/ld.so.cache", "open", "ok"));
    let cat = canonical("/usr/bin/cat");
    let exec = execs(t)
        .iter()
        .find(|e| e.exe.as_deref() == Some(cat.as_str()))
        .expect("exec of cat recorded");
    assert_eq!(exec.argv, ["cat", "/etc/hostname"]);
}

#[test]
fn relative_open_after_cd() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    fs::create_dir(base.join("sub")).unwrap();
    fs::write(base.join("data.txt"), "x").unwrap();
    let script = format!("cd {}/sub && cat ../data.txt", base.display());
    let r = run_in(dir.path(), &[], &["sh", "-c", &script]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    let data = format!("{}/data.txt", base.display());
    let acc = accesses(t, &data);
    assert!(
        acc.iter().any(|a| a.op == Op::Open
            && a.raw.as_deref() == Some("../data.txt")
            && a.result == "ok"),
        "{acc:?}"
    );
    assert!(has(t, &format!("{}/sub", base.display()), "chdir", "ok"));
    // No path in the trace is relative.
    assert!(paths(t).iter().all(|p| p.starts_with('/')));
}

#[test]
fn relative_chdir_resolves_against_the_old_cwd() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    fs::create_dir_all(base.join("a").join("b")).unwrap();
    fs::write(base.join("a").join("b").join("f.txt"), "x").unwrap();
    let code = format!(
        "import os\nos.chdir({:?})\nos.chdir('a')\nos.chdir('b')\nopen('f.txt').read()",
        base.display().to_string()
    );
    let r = run_in(dir.path(), &[], &["/usr/bin/python3", "-c", &code]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    let b = base.display();
    let a_dir = accesses(t, &format!("{b}/a"));
    assert!(
        a_dir
            .iter()
            .any(|a| a.op == Op::Chdir && a.raw.as_deref() == Some("a")),
        "{a_dir:?}"
    );
    assert!(has(t, &format!("{b}/a/b"), "chdir", "ok"));
    assert!(has(t, &format!("{b}/a/b/f.txt"), "open", "ok"));
    // Resolving against the cwd after the call would give these instead.
    assert!(file(t, &format!("{b}/a/a")).is_none());
    assert!(file(t, &format!("{b}/a/b/b")).is_none());
}

#[test]
fn dirfd_relative_open() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    fs::create_dir(base.join("d")).unwrap();
    fs::write(base.join("d").join("inside.txt"), "x").unwrap();
    let code = format!(
        "import os\nd = os.open({:?}, os.O_RDONLY)\nos.close(os.open('inside.txt', os.O_RDONLY, dir_fd=d))",
        base.join("d").display().to_string()
    );
    let r = run_in(dir.path(), &[], &["/usr/bin/python3", "-c", &code]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    let acc = accesses(t, &format!("{}/d/inside.txt", base.display()));
    assert!(
        acc.iter().any(|a| a.op == Op::Open
            && a.raw.as_deref() == Some("inside.txt")
            && a.result == "ok"),
        "{acc:?}"
    );
}

#[test]
fn exec_through_path_search_and_symlinked_dir() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let empty = base.join("empty");
    fs::create_dir(&empty).unwrap();
    // The shell searches PATH: first a directory without `cat`, then /bin,
    // which is a symlink to usr/bin on merged-/usr systems.
    let script = format!("PATH={}:/bin; cat /etc/hostname", empty.display());
    let r = run_in(dir.path(), &[], &["sh", "-c", &script]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    let missing = format!("{}/cat", empty.display());
    assert!(
        accesses(t, &missing).iter().any(|a| a.result == "ENOENT"),
        "PATH lookup in the empty dir not recorded as failed: {:?}",
        accesses(t, &missing)
    );
    let cat = canonical("/bin/cat");
    let exec = execs(t)
        .iter()
        .find(|e| e.raw == "/bin/cat")
        .expect("exec of /bin/cat recorded");
    assert_eq!(exec.path, "/bin/cat");
    assert_eq!(exec.exe.as_deref(), Some(cat.as_str()));
    assert!(has(t, "/bin/cat", "exec", "ok"));
    // The file the kernel ran is listed too, when it differs from the name.
    if cat != "/bin/cat" {
        assert!(accesses(t, &cat).iter().any(|a| a.exe));
    }
}

#[test]
fn shebang_script_records_interpreter() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let script = base.join("hello.sh");
    fs::write(&script, "#!/bin/sh\ncat /etc/hostname >/dev/null\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let s = script.display().to_string();
    let r = run_in(dir.path(), &[], &[&s]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    let exec = execs(t)
        .iter()
        .find(|e| e.path == s.as_str())
        .expect("exec of the script");
    let sh = canonical("/bin/sh");
    assert_eq!(
        exec.exe.as_deref(),
        Some(sh.as_str()),
        "interpreter is the running image"
    );
    assert!(has(t, &s, "exec", "ok"));
    assert!(accesses(t, &sh).iter().any(|a| a.exe));
    assert!(has(t, "/etc/hostname", "open", "ok"));
}

fn double_forked_daemon(scope: &str) {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let late = base.join("late.txt");
    fs::write(&late, "x").unwrap();
    // The inner subshell is orphaned when the outer one exits at once; it
    // opens the file well after the command itself has returned.
    let script = format!(
        "( ( sleep 0.4; cat {} >/dev/null ) & ); exit 0",
        late.display()
    );
    let r = run_in(dir.path(), &["--scope", scope], &["sh", "-c", &script]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    assert_eq!(t.scope.mode, scope);
    assert!(
        has(t, &late.display().to_string(), "open", "ok"),
        "daemon's open missing in {scope} scope"
    );
    assert_eq!(t.scope.leftovers_killed, 0);
}

#[test]
fn cgroup_join_without_clone3() {
    // Kernels before 5.7 have no CLONE_INTO_CGROUP: the child then writes
    // itself into cgroup.procs before exec. Same result expected.
    let dir = tempdir();
    let out = trace_cmd(dir.path(), &[], &["cat", "/etc/hostname"])
        .env("TRACE_DEBUG_NO_CLONE3", "1")
        .run();
    assert_eq!(out.status.code(), Some(0));
    let t = read_trace(dir.path()).expect("trace written");
    assert_complete(&t);
    assert_eq!(t.scope.mode, "cgroup");
    assert!(has(&t, "/etc/hostname", "open", "ok"));
    assert!(execs(&t).iter().any(|e| e.argv[0] == "cat"));
}

#[test]
fn double_forked_daemon_cgroup_scope() {
    double_forked_daemon("cgroup");
}

#[test]
fn double_forked_daemon_pid_scope() {
    double_forked_daemon("pids");
}

#[test]
fn thread_opening_a_file() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let f = base.join("from-thread.txt");
    fs::write(&f, "x").unwrap();
    let code = format!(
        "import threading\nt = threading.Thread(target=lambda: open({:?}).read())\nt.start(); t.join()",
        f.display().to_string()
    );
    let r = run_in(dir.path(), &[], &["/usr/bin/python3", "-c", &code]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(has(r.trace(), &f.display().to_string(), "open", "ok"));
}

#[test]
fn failed_lookup_is_recorded_as_failed() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let nope = base.join("does-not-exist");
    let n = nope.display().to_string();
    let r = run_in(dir.path(), &[], &["cat", &n]);
    assert_eq!(r.code(), 1, "cat's own exit status");
    let t = r.trace();
    let acc = accesses(t, &n);
    assert!(!acc.is_empty());
    assert!(
        acc.iter()
            .all(|a| a.result == "ENOENT" && a.errno == Some(2))
    );
}

#[test]
fn probes_are_recorded() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let target = base.join("target.txt");
    fs::write(&target, "x").unwrap();
    let link = base.join("link");
    std::os::unix::fs::symlink("target.txt", &link).unwrap();
    let code = format!(
        "import os\nos.stat({t:?}); os.lstat({l:?}); os.access({t:?}, os.R_OK); os.readlink({l:?})",
        t = target.display().to_string(),
        l = link.display().to_string()
    );
    let r = run_in(dir.path(), &[], &["/usr/bin/python3", "-c", &code]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    let (ts, ls) = (target.display().to_string(), link.display().to_string());
    assert!(has(t, &ts, "stat", "ok"));
    assert!(has(t, &ts, "access", "ok"));
    assert!(has(t, &ls, "readlink", "ok"));
    assert!(
        accesses(t, &ls)
            .iter()
            .any(|a| a.op == Op::Stat && a.nofollow),
        "lstat is a no-follow stat: {:?}",
        accesses(t, &ls)
    );
}

#[test]
fn writes_and_creates_are_marked() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let out = base.join("out.txt");
    let script = format!("echo hi > {}", out.display());
    let r = run_in(dir.path(), &[], &["sh", "-c", &script]);
    assert_eq!(r.code(), 0);
    let acc = accesses(r.trace(), &out.display().to_string());
    assert!(
        acc.iter()
            .any(|a| a.op == Op::Open && a.mode == Some(OpenMode::Write) && a.create),
        "{acc:?}"
    );
}

#[test]
fn path_longer_than_3000_bytes() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let mut deep = base.clone();
    for i in 0..16 {
        deep.push(format!("{i:02}{}", "d".repeat(198)));
    }
    fs::create_dir_all(&deep).unwrap();
    let file = deep.join("leaf.txt");
    fs::write(&file, "x").unwrap();
    let f = file.display().to_string();
    assert!(f.len() > 3000, "{}", f.len());
    // Absolute (raw argument) and relative (kernel directory walk) forms.
    let script = format!(
        "cat {f} >/dev/null && cd {} && cat leaf.txt >/dev/null",
        deep.display()
    );
    let r = run_in(dir.path(), &[], &["sh", "-c", &script]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    assert_complete(t);
    let entry = file_entry(t, &f);
    assert!(!entry.truncated, "{entry:?}");
    let acc = accesses(t, &f);
    assert!(
        acc.iter()
            .any(|a| a.raw.as_deref() == Some(f.as_str()) && a.result == "ok")
    );
    assert!(
        acc.iter()
            .any(|a| a.raw.as_deref() == Some("leaf.txt") && a.result == "ok")
    );
}

fn file_entry<'a>(t: &'a Trace, path: &str) -> &'a FileEntry {
    match file(t, path) {
        Some(f) => f,
        None => panic!("{path} not in trace"),
    }
}

#[test]
fn process_outside_the_scope_is_not_recorded() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let outside = base.join("outside.txt");
    fs::write(&outside, "x").unwrap();
    let log = base.join("outside.log");
    // A busy neighbour, started before and running during the trace.
    let mut neighbour = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while :; do cat {} >/dev/null; echo . >> {}; sleep 0.01; done",
            outside.display(),
            log.display()
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let r = run_in(
        dir.path(),
        &[],
        &["sh", "-c", "sleep 0.5; cat /etc/hostname >/dev/null"],
    );
    let _ = neighbour.kill();
    let _ = neighbour.wait();
    assert_eq!(r.code(), 0);
    let t = r.trace();
    // The neighbour really worked while we traced...
    let lines = fs::read_to_string(&log).unwrap().lines().count();
    assert!(lines >= 10, "neighbour ran only {lines} times");
    // ...and none of it is in the trace.
    assert!(file(t, &outside.display().to_string()).is_none());
    assert!(file(t, &log.display().to_string()).is_none());
    assert!(has(t, "/etc/hostname", "open", "ok"));
}

#[test]
fn exit_status_passes_through() {
    let dir = tempdir();
    assert_eq!(run_in(dir.path(), &[], &["sh", "-c", "exit 7"]).code(), 7);
    let killed = run_in(dir.path(), &[], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.code(), 143);
    assert_eq!(killed.trace().exit.signal, Some(15));
    let missing = run_in(dir.path(), &[], &["no-such-command-for-trace"]);
    assert_eq!(missing.code(), 127);
    assert!(
        missing
            .stderr()
            .contains("no-such-command-for-trace: command not found")
    );
    // Found but not runnable: 126, as in a shell.
    let data = dir.path().join("data.txt");
    fs::write(&data, "not a program").unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o644)).unwrap();
    let not_exec = run_in(dir.path(), &[], &[data.to_str().unwrap()]);
    assert_eq!(not_exec.code(), 126, "{}", not_exec.stderr());
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    let bad_format = run_in(dir.path(), &[], &[data.to_str().unwrap()]);
    assert_eq!(bad_format.code(), 126, "{}", bad_format.stderr());
    // The failed PATH search is itself in the trace.
    let failed: Vec<_> = files(missing.trace())
        .iter()
        .filter(|f| f.path.ends_with("/no-such-command-for-trace"))
        .collect();
    assert!(!failed.is_empty());
}

#[test]
fn sigterm_is_forwarded_and_trace_still_written() {
    let dir = tempdir();
    let mut child = spawn_started(dir.path(), "sleep 30");
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let t = read_trace(dir.path()).expect("trace written");
    assert_eq!(t.exit.signal, Some(15));
    assert!(
        execs(&t).iter().any(|e| e.argv[0] == "sleep"),
        "{:?}",
        t.execs
    );
}

#[test]
fn killed_trace_leaves_no_partial_output() {
    let dir = tempdir();
    let mut child = spawn_started(dir.path(), "sleep 30");
    child.kill().unwrap();
    child.wait().unwrap();
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn text_format_summary() {
    let dir = tempdir();
    let out = TestCommand::trace()
        .args(["run", "--format", "text", "--", "cat", "/etc/hostname"])
        .run();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    for section in [
        "Executables (",
        "Files read or probed (",
        "Files written (",
        "Failed lookups (",
    ] {
        assert!(text.contains(section), "missing {section}: {text}");
    }
    assert!(text.contains("\n  /etc/hostname\n"), "{text}");
    assert!(text.contains("complete, 0 events lost"), "{text}");
    // Nothing but the command's own output on stdout.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        fs::read_to_string("/etc/hostname").unwrap()
    );
    drop(dir);
}

#[test]
fn lost_events_are_reported_never_silent() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    // Many distinct files into a one-page ring buffer that is not read
    // until the command ends: records must be dropped, and counted.
    let script = format!(
        "i=0; while [ $i -lt 400 ]; do cat {}/f$i 2>/dev/null; i=$((i+1)); done; true",
        base.display()
    );
    let out = trace_cmd(
        dir.path(),
        &["--ringbuf-size", "4096"],
        &["sh", "-c", &script],
    )
    .env("TRACE_DEBUG_STALL_READER", "1")
    .run();
    assert_eq!(out.status.code(), Some(0));
    let t = read_trace(dir.path()).expect("trace written");
    assert!(!t.complete);
    let lost = &t.lost_events;
    assert!(lost.total > 0, "{lost:?}");
    assert_eq!(Some(&lost.total), lost.by_cause.get("ringbuf_full"));
    let per_cpu: u64 = lost.per_cpu.iter().sum();
    assert_eq!(per_cpu, lost.total);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("incomplete"), "{stderr}");
}

#[test]
fn not_root_is_one_clear_error() {
    // Copy the binary where an unprivileged user can run it.
    let bin_dir = tempdir();
    fs::set_permissions(bin_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("trace");
    fs::copy(trace_bin(), &bin).unwrap();
    let out_dir = tempdir();
    fs::set_permissions(out_dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["run", "-o"])
        .arg(out_dir.path().join("t.json"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("trace: error:") && stderr.contains("root"),
        "{stderr}"
    );
    assert_eq!(fs::read_dir(out_dir.path()).unwrap().count(), 0);
}

#[test]
fn btf_offsets_are_kept_for_the_rest_of_the_boot() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    // A BTF file of its own: no earlier run kept offsets for it.
    let btf = base.join("vmlinux");
    fs::copy("/sys/kernel/btf/vmlinux", &btf).unwrap();
    fs::create_dir(base.join("sub")).unwrap();
    fs::write(base.join("data.txt"), "x").unwrap();
    // A relative open: its path is walked from the cwd's dentry, with the
    // offsets read or kept.
    let script = format!("cd {}/sub && cat ../data.txt", base.display());
    let data = format!("{}/data.txt", base.display());
    let mut phases = Vec::new();
    for _ in 0..2 {
        let mut c = trace_cmd(
            dir.path(),
            &["--btf", btf.to_str().unwrap()],
            &["sh", "-c", &script],
        );
        c.env("TRACE_DEBUG_TIMING", "1");
        let r = Run::new(c.run(), dir.path());
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let t = r.trace();
        assert_complete(t);
        assert!(has(t, &data, "open", "ok"), "{:?}", paths(t));
        assert!(paths(t).iter().all(|p| p.starts_with('/')));
        phases.push(
            [
                "offsets read from BTF",
                "offsets kept from earlier in this boot",
            ]
            .into_iter()
            .find(|p| r.stderr().contains(p))
            .unwrap_or("neither"),
        );
    }
    assert_eq!(
        phases,
        [
            "offsets read from BTF",
            "offsets kept from earlier in this boot"
        ]
    );
    // Another file (even with the same bytes) is another kernel's BTF.
    let other = base.join("vmlinux2");
    fs::copy(&btf, &other).unwrap();
    let mut c = trace_cmd(dir.path(), &["--btf", other.to_str().unwrap()], &["true"]);
    c.env("TRACE_DEBUG_TIMING", "1");
    let r = Run::new(c.run(), dir.path());
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stderr().contains("offsets read from BTF"),
        "{}",
        r.stderr()
    );
}

#[test]
fn missing_or_malformed_btf_is_one_clear_error() {
    let dir = tempdir();
    let r = run_in(dir.path(), &["--btf", "/nonexistent/vmlinux"], &["true"]);
    assert_eq!(r.code(), 125);
    assert_eq!(r.stderr().lines().count(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("BTF not found at /nonexistent/vmlinux"));
    assert!(r.trace.is_none());
    let junk = dir.path().join("junk.btf");
    fs::write(&junk, b"not btf at all").unwrap();
    let r = run_in(dir.path(), &["--btf", junk.to_str().unwrap()], &["true"]);
    assert_eq!(r.code(), 125);
    assert_eq!(r.stderr().lines().count(), 1, "{}", r.stderr());
    assert!(r.stderr().contains("BTF"), "{}", r.stderr());
    assert!(r.trace.is_none());
    // The cgroup made for the failed run is gone again.
    let child = trace_cmd(dir.path(), &["--btf", junk.to_str().unwrap()], &["true"])
        .stderr(Stdio::null())
        .spawn();
    let prefix = format!("trace-{}-", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if let Ok(entries) = fs::read_dir(root) {
            for e in entries.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with(&prefix), "{root}/{name} left behind");
            }
        }
    }
}

#[test]
fn bad_arguments_are_rejected() {
    let out = TestCommand::trace()
        .args(["run", "--ringbuf-size", "1000", "--", "true"])
        .expect_code(2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("power of two"));
    TestCommand::trace().args(["run"]).expect_code(2);
}

#[test]
fn no_cgroup_or_bpf_state_is_left_behind() {
    let dir = tempdir();
    let r = run_in(dir.path(), &[], &["true"]);
    assert_eq!(r.code(), 0);
    let cg = r.trace().scope.cgroup.as_deref().unwrap().to_string();
    assert!(!std::path::Path::new(&cg).exists(), "{cg} left behind");
}

#[test]
fn a_trace_larger_than_memory_keeps_every_access() {
    // 100,000 distinct ~200-byte names, each opened then stat'ed: about
    // 50 MB of records, past the collector's 16 MB in memory, so sorted
    // runs go to disk and are merged back while the JSON is written.
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let bin = build_c("many_opens", &base, "many_opens", &[]);
    let missing = base.join("missing");
    fs::create_dir(&missing).unwrap();
    let count = 100_000;
    let r = run_in(
        &base,
        &[],
        &[
            bin.to_str().unwrap(),
            missing.to_str().unwrap(),
            &count.to_string(),
        ],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "0\n");
    let t = r.trace();
    assert_complete(t);
    let prefix = format!("{}/", missing.display());
    let mut seen = vec![false; count];
    for f in files(t) {
        let path = f.path.as_str();
        let Some(n) = path.strip_prefix(&prefix) else {
            continue;
        };
        let i: usize = n.parse().expect("a name the program made");
        assert!(!seen[i], "{path} listed twice");
        seen[i] = true;
        let ops: Vec<Op> = f
            .accesses
            .iter()
            .map(|a| {
                assert_eq!(a.result, "ENOENT", "{a:?}");
                a.op
            })
            .collect();
        assert!(
            ops.contains(&Op::Open) && ops.contains(&Op::Stat),
            "{path}: {ops:?}"
        );
    }
    let missed = seen.iter().filter(|s| !**s).count();
    assert_eq!(missed, 0, "{missed} of {count} names not in the trace");
}

#[test]
fn a_mount_point_that_is_not_utf8_does_not_stop_a_run() {
    use std::os::unix::ffi::OsStrExt;
    // Reading the mount table as text failed on such a name: every run on
    // that host stopped with "cannot read /proc/self/mountinfo".
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let file = base.join("f");
    fs::write(&file, "x").unwrap();
    let bad = base.join(std::ffi::OsStr::from_bytes(b"mnt\xff"));
    fs::create_dir(&bad).unwrap();
    // In a mount namespace of its own (gone with its last process).
    let script = r#"mount -t tmpfs none "$1" && grep -q mnt /proc/self/mountinfo && exec "$2" run -o "$3" -- cat "$4""#;
    let mut c = TestCommand::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&bad)
        .arg(trace_bin())
        .arg(base.join("trace.json"))
        .arg(&file)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null());
    let r = Run::new(c.run(), &base);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "x");
    let t = r.trace();
    assert_complete(t);
    assert_eq!(t.scope.mode, "cgroup");
    assert!(has(t, &file.display().to_string(), "open", "ok"), "{t:?}");
}

#[test]
fn arguments_that_are_not_utf8_reach_the_command() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let name = b"caf\xe9.txt";
    let file = base.join(std::ffi::OsStr::from_bytes(name));
    fs::write(&file, "latin-1").unwrap();
    let mut c = trace_cmd(&base, &[], &["cat"]);
    c.arg(&file);
    let r = Run::new(c.run(), &base);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "latin-1");
    let t = r.trace();
    assert_complete(t);
    let hex: String = file
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
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
    // The trace names the command as an exec's argv is named.
    assert_eq!(t.command[0], "cat");
    assert!(t.command[1].ends_with("caf\u{fffd}.txt"), "{:?}", t.command);

    // In a container the arguments are JSON strings: refused, in one
    // line, before anything runs.
    let image = fixtures().join("bookworm-oci");
    let out = dir.path().join("in-image.json");
    let o = TestCommand::trace()
        .arg("run")
        .arg("--image")
        .arg(&image)
        .arg("-o")
        .arg(&out)
        .args(["--", "cat"])
        .arg(&file)
        .expect_code(125);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("argument 2") && e.contains("caf\u{fffd}.txt"),
        "{e}"
    );
    assert!(!out.exists());
    let o = TestCommand::trace()
        .arg("minimize")
        .arg("--image")
        .arg(&image)
        .arg("-o")
        .arg(dir.path().join("min.tar"))
        .args(["--", "cat"])
        .arg(&file)
        .expect_code(125);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("is not UTF-8"), "{e}");
    assert!(!dir.path().join("min.tar").exists());
}

#[test]
fn a_device_or_pipe_as_output_is_written_into_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    // Should a regression rename a file over /dev/null, this puts the
    // device back before the test fails, for everything else running.
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            let ok = fs::metadata("/dev/null").is_ok_and(|m| m.file_type().is_char_device());
            if !ok {
                let _ = fs::remove_file("/dev/null");
                let _ = Command::new("mknod")
                    .args(["-m", "666", "/dev/null", "c", "1", "3"])
                    .status();
            }
        }
    }
    let _restore = Restore;
    TestCommand::trace()
        .args(["run", "-o", "/dev/null", "--", "true"])
        .expect_success();
    let null = fs::symlink_metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device(), "{null:?}");

    // stdout is a pipe here: /dev/stdout leads to it.
    let o = TestCommand::trace()
        .args(["run", "-o", "/dev/stdout", "--", "true"])
        .expect_success();
    let t = tracer::model::write::from_slice(&o.stdout).expect("the trace on stdout");
    assert_eq!(t.command, ["true"]);
    assert!(
        fs::symlink_metadata("/dev/stdout")
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_process_that_leaves_the_cgroup_makes_the_trace_incomplete() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let file = base.join("after-the-move");
    fs::write(&file, "x").unwrap();
    // The v2 mount and this run's cgroup, as the traced shell sees them.
    let cg = r#"m=$(findmnt -n -t cgroup2 -o TARGET | head -n1); cg=$m$(sed -n 's/^0:://p' /proc/self/cgroup)"#;

    // Into a cgroup below the run's own (as a container runtime or
    // `systemd-run` does): still in scope, still recorded. The scope
    // check's shortcut only knows the run's own cgroup; the kernel's
    // ancestor lookup answers for the ones below it.
    let probed = base.join("probed-below").display().to_string();
    let inside = format!(
        "{cg}; mkdir \"$cg/sub\" && echo $$ > \"$cg/sub/cgroup.procs\" && cat {} && ! test -e {probed}",
        file.display()
    );
    let r = run_in(&base, &["--scope", "cgroup"], &["sh", "-c", &inside]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    assert_complete(t);
    assert!(has(t, &file.display().to_string(), "open", "ok"));
    // `cat` ran in the cgroup below: its exec is recorded, and so is the
    // shell's own probe, made from there.
    assert!(
        t.execs.iter().any(|e| e.path.ends_with("/cat")),
        "{:?}",
        t.execs
    );
    assert!(has(t, &probed, "stat", "ENOENT"), "{:?}", paths(t));

    // To the hierarchy's root: out of the scope. What it opens then is
    // not seen, and the trace must say so rather than claim it is whole.
    let outside = format!(
        "{cg}; echo $$ > \"$m/cgroup.procs\" && cat {}",
        file.display()
    );
    let r = run_in(&base, &["--scope", "cgroup"], &["sh", "-c", &outside]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    assert!(!t.complete, "a move out of the scope went unnoticed");
    assert!(
        t.incomplete_reasons
            .iter()
            .any(|w| w.contains("moved to a cgroup outside the scope")),
        "{:?}",
        t.incomplete_reasons
    );
    // The shell that moved, and `cat`, which it forked out there.
    let moved: Vec<_> = t
        .unobserved
        .iter()
        .filter(|u| u.channel == "cgroup")
        .collect();
    assert!(!moved.is_empty(), "{:?}", t.unobserved);
    assert!(
        moved
            .iter()
            .all(|u| u.pid > 0 && u.op == "moved out of the scope")
    );
    assert!(!has(t, &file.display().to_string(), "open", "ok"));

    // A child born straight into another cgroup, clone3(CLONE_INTO_CGROUP):
    // below the run's it is traced, at the root it is out of the scope.
    let prog = build_c("clone_into_cgroup", &base, "clone_into_cgroup", &[]);
    let born = |target: &str| {
        let script = format!(
            "{cg}; mkdir -p \"$cg/kids\" && exec {} \"{target}\" {}",
            prog.display(),
            file.display()
        );
        let r = run_in(&base, &["--scope", "cgroup"], &["sh", "-c", &script]);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        assert_eq!(r.stdout(), "child ok\n");
        r
    };
    let r = born("$cg/kids");
    let t = r.trace();
    assert_complete(t);
    assert!(has(t, &file.display().to_string(), "open", "ok"));
    let r = born("$m");
    let t = r.trace();
    assert!(!t.complete, "a child born outside the scope went unnoticed");
    let moved: Vec<_> = t
        .unobserved
        .iter()
        .filter(|u| u.channel == "cgroup")
        .collect();
    assert_eq!(moved.len(), 1, "{:?}", t.unobserved);
    assert!(!has(t, &file.display().to_string(), "open", "ok"));
}

#[test]
fn a_process_moved_into_the_cgroup_is_traced_from_the_move() {
    let dir = tempdir();
    let base = dir.path().canonicalize().unwrap();
    let p = |name: &str| base.join(name).display().to_string();
    let (go, done) = (p("go"), p("done"));
    let (inside, after) = (p("read-inside"), p("read-after-leaving"));
    fs::write(&inside, "x").unwrap();
    fs::write(&after, "x").unwrap();
    let m = String::from_utf8(
        Command::new("findmnt")
            .args(["-n", "-t", "cgroup2", "-o", "TARGET"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mount = m.lines().next().expect("a cgroup2 mount").to_string();
    // Started outside the run, never execs: it waits to be moved into the
    // run's cgroup, reads a file, then leaves for the hierarchy's root
    // and reads another.
    let script = r#"
import os, sys, time
go, inside, root, after, done = sys.argv[1:6]
while not os.path.exists(go):
    time.sleep(0.01)
open(inside).read()
with open(os.path.join(root, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
open(after).read()
open(done, "w").close()
"#;
    let mut outsider = Command::new("/usr/bin/python3")
        .args(["-c", script, &go, &inside, &mount, &after, &done])
        .spawn()
        .unwrap();
    let cmd = format!(
        r#"cg={mount}$(sed -n 's/^0:://p' /proc/self/cgroup); echo {pid} > "$cg/cgroup.procs" && touch {go} && while [ ! -e {done} ]; do sleep 0.02; done"#,
        pid = outsider.id()
    );
    let r = run_in(&base, &["--scope", "cgroup"], &["sh", "-c", &cmd]);
    assert!(outsider.wait().unwrap().success());
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let t = r.trace();
    // In the scope from the move on: what it reads there is recorded.
    assert!(has(t, &inside, "open", "ok"), "{:?}", paths(t));
    // And its move out is told like any traced process's.
    assert!(!has(t, &after, "open", "ok"));
    assert!(!t.complete, "a move out of the scope went unnoticed");
    assert!(
        t.unobserved
            .iter()
            .any(|u| u.channel == "cgroup" && u.pid == outsider.id()),
        "{:?}",
        t.unobserved
    );
}
