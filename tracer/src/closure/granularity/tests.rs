//! The closure's precision and granularity rules on synthetic images.
use std::{
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::Path,
};

use crate::{
    closure::{
        Kept, Level, Options, Reason, compute_with, elf::tests as elf, programs::ConfigProgram,
        rules::Rules,
    },
    model::trace::{Access, FileEntry, Op, Trace},
    source::dir::DirRootfs,
};

fn access(op: Op) -> Access {
    Access::new(op, "openat")
}

fn trace(files: &[(&str, Op)], complete: bool) -> Trace {
    let mut t: Trace = serde_json::from_str(
        r#"{"format":"trace","version":2,"tool":"t","command":["x"],"exit":{"code":0},
            "scope":{"mode":"cgroup","leftovers_killed":0},"complete":true,
            "lost_events":{"total":0,"per_cpu":[],"by_cause":{}},
            "counters":{"syscalls_seen":0,"deduplicated_in_kernel":0,"records":0,
              "unreadable_paths":0,"unresolved_paths":0,"truncated_paths":0,"malformed_records":0},
            "execs":[],"files":[]}"#,
    )
    .unwrap();
    t.complete = complete;
    t.files = files
        .iter()
        .map(|(p, op)| FileEntry {
            path: p.to_string(),
            path_hex: None,
            truncated: false,
            accesses: vec![access(*op)],
            seen_in: Vec::new(),
        })
        .collect();
    t
}

fn write(root: &Path, path: &str, body: &[u8], mode: u32) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn keep(root: &Path, traces: &[Trace], rules: &Rules, opts: &Options) -> Kept {
    let fs = DirRootfs::open(root).unwrap();
    compute_with(&fs, traces, rules, opts).unwrap()
}

fn has(k: &Kept, p: &str) -> bool {
    k.paths.contains_key(Path::new(p))
}

/// perl and a script that names it, plus a library pair.
fn script_image() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "/usr/bin/perl", b"perl binary", 0o755);
    write(
        r,
        "/usr/share/hooks/watch.sample",
        b"#!/usr/bin/perl\nprint 1;\n",
        0o755,
    );
    write(
        r,
        "/usr/local/bin/tool",
        b"#!/usr/bin/perl\nprint 2;\n",
        0o755,
    );
    d
}

#[test]
fn a_script_only_read_needs_no_interpreter() {
    let d = script_image();
    let read = trace(&[("/usr/share/hooks/watch.sample", Op::Open)], true);
    let k = keep(d.path(), &[read], &Rules::default(), &Options::default());
    assert!(has(&k, "/usr/share/hooks/watch.sample"));
    assert!(!has(&k, "/usr/bin/perl"));
    assert!(k.interpreters.is_empty());

    let ran = trace(&[("/usr/local/bin/tool", Op::Exec)], true);
    let k = keep(d.path(), &[ran], &Rules::default(), &Options::default());
    assert_eq!(k.paths[Path::new("/usr/bin/perl")], Reason::Interpreter);
    assert_eq!(k.interpreters.len(), 1);
    assert_eq!(k.interpreters[0].script, "/usr/local/bin/tool");
    assert_eq!(k.interpreters[0].why, "executed");
}

#[test]
fn a_chain_of_interpreters_is_kept_to_its_end() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "/usr/bin/perl", b"perl binary", 0o755);
    write(r, "/opt/chain/i1", b"#!/usr/bin/perl\n", 0o755);
    write(r, "/opt/chain/i2", b"#!/opt/chain/i1 -w\n", 0o755);
    write(r, "/opt/chain/top", b"#!/opt/chain/i2\n", 0o755);
    // The trace names the script run and the binary the kernel ended at.
    let ran = trace(
        &[("/opt/chain/top", Op::Exec), ("/usr/bin/perl", Op::Exec)],
        true,
    );
    let k = keep(d.path(), &[ran], &Rules::default(), &Options::default());
    for p in ["/opt/chain/i2", "/opt/chain/i1"] {
        assert_eq!(k.paths.get(Path::new(p)), Some(&Reason::Interpreter), "{p}");
    }
    let scripts: Vec<&str> = k.interpreters.iter().map(|i| i.script.as_str()).collect();
    assert_eq!(scripts.len(), 3, "{scripts:?}");
    assert!(scripts.contains(&"/opt/chain/i2"), "{scripts:?}");
}

/// A relative interpreter (`#!./mid`, `PT_INTERP` "ld.so") is looked up
/// by the kernel from the caller's working directory, which no trace
/// records: it is reported, and a file of that name under `/` (never
/// accessed) is not kept in its place.
#[test]
fn a_relative_interpreter_is_reported_not_guessed() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "/interp", b"interp binary", 0o755);
    write(r, "/w/mid", b"#!/interp\n", 0o755);
    write(r, "/mid", b"#!/interp\n", 0o755);
    write(r, "/s.sh", b"#!./mid\n", 0o755);
    write(r, "/ld.so", b"decoy", 0o755);
    write(r, "/w6/ld.so", b"the loader", 0o755);
    let prog = elf::synth(&elf::Spec {
        interp: Some("ld.so"),
        ..Default::default()
    });
    write(r, "/bin/dyn", &prog, 0o755);
    let ran = trace(
        &[
            ("/s.sh", Op::Exec),
            ("/interp", Op::Exec),
            ("/bin/dyn", Op::Exec),
        ],
        true,
    );
    let k = keep(r, &[ran], &Rules::default(), &Options::default());
    for p in ["/mid", "/w/mid", "/ld.so", "/w6/ld.so"] {
        assert!(!has(&k, p), "{p}");
    }
    assert!(has(&k, "/s.sh") && has(&k, "/interp") && has(&k, "/bin/dyn"));
    let mut rel = k.relative_interpreters.clone();
    rel.sort();
    assert_eq!(
        rel,
        vec![
            ("./mid".to_string(), "/s.sh".into()),
            ("ld.so".to_string(), "/bin/dyn".into())
        ]
    );
    assert!(k.missing_libraries.is_empty(), "{:?}", k.missing_libraries);
}

/// A stat through a symlink the run made (or re-pointed) reached that
/// link's target, not the image's link of the same name.
#[test]
fn a_name_through_a_symlink_the_run_made_keeps_its_target() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "/s/A/f", b"a", 0o644);
    write(r, "/s/B/f", b"b", 0o644);
    write(r, "/s/B/g", b"g", 0o644);
    write(r, "/abs/h", b"h", 0o644);
    symlink("A", r.join("s/lnk")).unwrap();
    let mut t = trace(
        &[
            ("/s/lnk", Op::Symlink),
            ("/s/lnk/f", Op::Stat),
            ("/s/lnk/g", Op::Access),
            ("/s/new", Op::Symlink),
            ("/s/new/h", Op::Stat),
        ],
        true,
    );
    t.files[0].accesses[0].content = Some("B".into());
    t.files[3].accesses[0].content = Some("/abs".into());
    let k = keep(r, &[t], &Rules::default(), &Options::default());
    // The image's own link, as before the run re-pointed it, and where
    // the run's links led.
    for p in ["/s/lnk", "/s/A/f", "/s/B/f", "/s/B/g", "/abs/h"] {
        assert!(has(&k, p), "{p}: {:?}", k.paths.keys());
    }
    assert!(!k.not_in_source.contains(Path::new("/s/B/f")));
}

/// `mv D D.bak; cat D.bak/y`: the file read was the image's `D/y`. A
/// file renamed over another (an atomic write) brings nothing.
#[test]
fn a_name_below_a_directory_the_run_renamed_keeps_the_original() {
    use crate::model::trace::Role;
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "/s/D/x", b"x", 0o644);
    write(r, "/s/D/y", b"y", 0o644);
    write(r, "/s/D/z", b"z", 0o644);
    write(r, "/etc/conf", b"c", 0o644);
    let mut t = trace(
        &[
            ("/s/D", Op::Rename),
            ("/s/D.bak", Op::Rename),
            ("/s/D.bak/x", Op::Stat),
            ("/s/D.bak/y", Op::Open),
            ("/etc/conf.tmp", Op::Rename),
            ("/etc/conf", Op::Rename),
        ],
        true,
    );
    t.files[0].accesses[0].role = Some(Role::Source);
    t.files[1].accesses[0].role = Some(Role::Target);
    t.files[4].accesses[0].role = Some(Role::Source);
    t.files[5].accesses[0].role = Some(Role::Target);
    let k = keep(r, &[t], &Rules::default(), &Options::default());
    for p in ["/s/D/x", "/s/D/y"] {
        assert!(has(&k, p), "{p}: {:?}", k.paths.keys());
    }
    assert!(!has(&k, "/s/D/z"));
}

#[test]
fn a_script_run_through_a_symlink_and_dotdot_is_a_program() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "/usr/bin/perl", b"perl binary", 0o755);
    write(r, "/opt/real/run.sh", b"#!/usr/bin/perl\n", 0o755);
    fs::create_dir_all(r.join("opt/real/sub")).unwrap();
    symlink("real/sub", r.join("opt/L")).unwrap();
    // Filed under the lexical /opt/run.sh, which the image does not hold;
    // the request went through L to /opt/real/run.sh.
    let mut ran = trace(&[("/opt/run.sh", Op::Exec)], true);
    ran.files[0].accesses[0].requested = Some("/opt/L/../run.sh".into());
    let k = keep(d.path(), &[ran], &Rules::default(), &Options::default());
    assert!(has(&k, "/opt/real/run.sh"));
    assert_eq!(
        k.paths.get(Path::new("/usr/bin/perl")),
        Some(&Reason::Interpreter)
    );
}

#[test]
fn an_excluded_directory_that_holds_a_kept_file_stays_as_its_parent() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "/opt/d/f", b"x", 0o644);
    write(d.path(), "/opt/d/g", b"y", 0o644);
    let t = trace(&[("/opt/d/f", Op::Open), ("/opt/d/g", Op::Open)], true);
    let rules = Rules::new(&[], &["/opt/d".into(), "/opt/d/g".into()], &[]).unwrap();
    let k = keep(d.path(), &[t], &rules, &Options::default());
    assert_eq!(k.paths.get(Path::new("/opt/d")), Some(&Reason::Parent));
    assert!(has(&k, "/opt/d/f"));
    assert!(!has(&k, "/opt/d/g") && k.excluded.contains_key(Path::new("/opt/d/g")));
    assert!(!k.excluded.contains_key(Path::new("/opt/d")));
}

#[test]
fn include_and_config_name_programs_include_from_names_files() {
    let d = script_image();
    let none = trace(&[], true);
    let inc = Rules::new(&["/usr/local/bin/tool".into()], &[], &[]).unwrap();
    let k = keep(
        d.path(),
        std::slice::from_ref(&none),
        &inc,
        &Options::default(),
    );
    assert!(has(&k, "/usr/bin/perl"));
    assert_eq!(k.interpreters[0].why, "include");

    let list = d.path().join("allow.txt");
    fs::write(&list, "/usr/local/bin/tool\n").unwrap();
    let from = Rules::new(&[], &[], &[list]).unwrap();
    let k = keep(
        d.path(),
        std::slice::from_ref(&none),
        &from,
        &Options::default(),
    );
    assert!(has(&k, "/usr/local/bin/tool") && !has(&k, "/usr/bin/perl"));

    // The config's Entrypoint, a bare name found on its PATH.
    let opts = Options {
        config_programs: vec![ConfigProgram {
            why: "entrypoint",
            name: "tool".into(),
            path_var: Some("/usr/local/bin:/usr/bin".into()),
        }],
        ..Options::default()
    };
    let read = trace(&[("/usr/local/bin/tool", Op::Open)], true);
    let k = keep(d.path(), &[read], &Rules::default(), &opts);
    assert_eq!(k.interpreters[0].why, "entrypoint");
}

#[test]
fn a_library_only_read_roots_no_closure_in_a_complete_trace() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    let lib = |needed: &'static [&'static str], soname| {
        elf::synth(&elf::Spec {
            needed,
            soname: Some(soname),
            ..Default::default()
        })
    };
    write(
        r,
        "/usr/lib/libfoo.so.1",
        &lib(&["libbar.so.1"], "libfoo.so.1"),
        0o644,
    );
    write(r, "/usr/lib/libbar.so.1", &lib(&[], "libbar.so.1"), 0o644);
    let prog = elf::synth(&elf::Spec {
        needed: &["libbar.so.1"],
        ..Default::default()
    });
    write(r, "/usr/bin/prog", &prog, 0o755);
    // `sha256sum /usr/lib/libfoo.so.1`: read, not mapped.
    let read = trace(&[("/usr/lib/libfoo.so.1", Op::Open)], true);
    let k = keep(
        r,
        std::slice::from_ref(&read),
        &Rules::default(),
        &Options::default(),
    );
    assert!(has(&k, "/usr/lib/libfoo.so.1") && !has(&k, "/usr/lib/libbar.so.1"));
    assert!(k.precise);
    // A trace that lost events may miss the loader's opens: keep it all.
    let lossy = trace(&[("/usr/lib/libfoo.so.1", Op::Open)], false);
    let k = keep(r, &[lossy], &Rules::default(), &Options::default());
    assert!(!k.precise);
    assert_eq!(
        k.paths[Path::new("/usr/lib/libbar.so.1")],
        Reason::SharedLibrary
    );
    // An executed program always brings what it needs.
    let ran = trace(&[("/usr/bin/prog", Op::Exec)], true);
    let k = keep(r, &[ran], &Rules::default(), &Options::default());
    assert_eq!(
        k.paths[Path::new("/usr/lib/libbar.so.1")],
        Reason::SharedLibrary
    );
}

const STATUS: &str = "Package: app\nStatus: install ok installed\nArchitecture: amd64\n\
    Depends: libx (>= 1), ess, vapp | other\nRecommends: rec\n\n\
    Package: libx\nStatus: install ok installed\nArchitecture: amd64\n\n\
    Package: ess\nEssential: yes\nStatus: install ok installed\nArchitecture: amd64\n\n\
    Package: prov\nStatus: install ok installed\nArchitecture: all\nProvides: vapp\n\n\
    Package: rec\nStatus: install ok installed\nArchitecture: all\n\n";

/// A merged-/usr Debian-like image with a dpkg database.
fn dpkg_image() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "/var/lib/dpkg/status", STATUS.as_bytes(), 0o644);
    let lists = [
        (
            "app:amd64",
            "/.\n/bin\n/bin/app\n/etc\n/etc/app\n/etc/app/app.conf\n/usr/share/doc/app\n/usr/share/doc/app/README\n/usr/share/locale/fr/LC_MESSAGES/app.mo\n",
        ),
        ("libx:amd64", "/usr\n/usr/lib\n/usr/lib/libx.so.1\n"),
        ("ess:amd64", "/usr/bin\n/usr/bin/ess\n"),
        ("prov", "/usr/share/prov\n/usr/share/prov/data\n"),
        ("rec", "/usr/share/rec\n/usr/share/rec/data\n"),
    ];
    for (n, l) in lists {
        write(
            r,
            &format!("/var/lib/dpkg/info/{n}.list"),
            l.as_bytes(),
            0o644,
        );
    }
    write(r, "/usr/bin/app", b"app", 0o755);
    write(r, "/usr/bin/ess", b"ess", 0o755);
    write(r, "/etc/app/app.conf", b"conf", 0o644);
    // Made by the postinst: owned by nobody, in app's own directory.
    write(r, "/etc/app/cache.db", b"generated", 0o644);
    // In /etc, which an Essential package shares: not app's to bring.
    write(r, "/etc/other-generated", b"x", 0o644);
    write(r, "/usr/share/doc/app/README", b"doc", 0o644);
    write(r, "/usr/share/locale/fr/LC_MESSAGES/app.mo", b"mo", 0o644);
    write(r, "/usr/lib/libx.so.1", b"not elf", 0o644);
    write(r, "/usr/share/prov/data", b"p", 0o644);
    write(r, "/usr/share/rec/data", b"r", 0o644);
    symlink("usr/bin", r.join("bin")).unwrap();
    fs::create_dir_all(r.join("etc/alternatives")).unwrap();
    symlink("/usr/bin/app", r.join("etc/alternatives/application")).unwrap();
    symlink(
        "/etc/alternatives/application",
        r.join("usr/bin/application"),
    )
    .unwrap();
    // ess's list names /etc too, so /etc is shared with an Essential package.
    write(
        r,
        "/var/lib/dpkg/info/ess:amd64.list",
        b"/etc\n/usr/bin\n/usr/bin/ess\n",
        0o644,
    );
    d
}

fn at(level: Level) -> Options {
    Options {
        keep: level,
        ..Options::default()
    }
}

#[test]
fn package_levels_from_a_dpkg_database() {
    let d = dpkg_image();
    let t = trace(&[("/bin/app", Op::Exec)], true);
    let k = keep(
        d.path(),
        std::slice::from_ref(&t),
        &Rules::default(),
        &at(Level::File),
    );
    assert!(has(&k, "/usr/bin/app") && !has(&k, "/etc/app/app.conf"));

    let k = keep(
        d.path(),
        std::slice::from_ref(&t),
        &Rules::default(),
        &at(Level::Package),
    );
    assert_eq!(k.paths[Path::new("/etc/app/app.conf")], Reason::Package);
    assert_eq!(k.units[Path::new("/etc/app/app.conf")], "package app");
    assert!(
        has(&k, "/etc/app/cache.db"),
        "made at install in app's directory"
    );
    assert!(!has(&k, "/etc/other-generated"));
    assert!(!has(&k, "/usr/share/doc/app/README"));
    assert!(!has(&k, "/usr/share/locale/fr/LC_MESSAGES/app.mo"));
    assert!(has(&k, "/usr/bin/application") && has(&k, "/etc/alternatives/application"));
    assert!(!has(&k, "/usr/lib/libx.so.1"));

    let k = keep(
        d.path(),
        std::slice::from_ref(&t),
        &Rules::default(),
        &at(Level::PackageDeps),
    );
    assert_eq!(k.paths[Path::new("/usr/lib/libx.so.1")], Reason::Dependency);
    assert_eq!(
        k.units[Path::new("/usr/lib/libx.so.1")],
        "package libx (Depends of app)"
    );
    // A virtual package through Provides.
    assert!(has(&k, "/usr/share/prov/data"));
    // Essential and unused; Recommends never.
    assert!(!has(&k, "/usr/bin/ess"));
    assert!(!has(&k, "/usr/share/rec/data"));

    let docs = Options {
        keep_docs: true,
        ..at(Level::Package)
    };
    let k = keep(d.path(), &[t], &Rules::default(), &docs);
    assert!(has(&k, "/usr/share/doc/app/README"));
}

#[test]
fn python_modules_stdlib_imports_and_metadata() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(
        r,
        "/usr/lib/python3.11/json/__init__.py",
        b"import re\nfrom .decoder import x\n",
        0o644,
    );
    write(r, "/usr/lib/python3.11/json/decoder.py", b"x = 1\n", 0o644);
    write(r, "/usr/lib/python3.11/re.py", b"import sre\n", 0o644);
    write(
        r,
        "/usr/lib/python3.11/__pycache__/re.cpython-311.pyc",
        b"pyc",
        0o644,
    );
    write(r, "/usr/lib/python3.11/wave.py", b"", 0o644);
    let site = "/usr/local/lib/python3.11/dist-packages";
    write(r, &format!("{site}/pkg/__init__.py"), b"", 0o644);
    write(r, &format!("{site}/pkg/lazy.py"), b"", 0o644);
    write(
        r,
        &format!("{site}/pkg-1.0.dist-info/METADATA"),
        b"Version: 1.0\n",
        0o644,
    );
    write(
        r,
        &format!("{site}/pkg-1.0.dist-info/top_level.txt"),
        b"pkg\n",
        0o644,
    );
    write(
        r,
        &format!("{site}/other-2.0.dist-info/METADATA"),
        b"Version: 2.0\n",
        0o644,
    );
    let init = format!("{site}/pkg/__init__.py");
    let t = trace(
        &[
            ("/usr/lib/python3.11/json/__init__.py", Op::Open),
            (&init, Op::Open),
        ],
        true,
    );
    let k = keep(
        r,
        std::slice::from_ref(&t),
        &Rules::default(),
        &at(Level::File),
    );
    let meta = format!("{site}/pkg-1.0.dist-info/METADATA");
    assert_eq!(k.paths[Path::new(&meta)], Reason::Metadata);
    assert!(!has(&k, &format!("{site}/other-2.0.dist-info/METADATA")));
    assert!(!has(&k, &format!("{site}/pkg/lazy.py")));

    let k = keep(r, &[t], &Rules::default(), &at(Level::Module));
    assert_eq!(
        k.units[Path::new(&format!("{site}/pkg/lazy.py"))],
        "python module pkg"
    );
    assert!(has(&k, "/usr/lib/python3.11/json/decoder.py"));
    assert_eq!(
        k.units[Path::new("/usr/lib/python3.11/re.py")],
        "python stdlib re (imported by json)"
    );
    assert!(has(
        &k,
        "/usr/lib/python3.11/__pycache__/re.cpython-311.pyc"
    ));
    assert!(!has(&k, "/usr/lib/python3.11/wave.py"));
}

#[test]
fn keep_listed_keeps_entries_one_level_deep() {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "/data/a.txt", b"a", 0o644);
    write(r, "/data/sub/deep.txt", b"d", 0o644);
    let t = trace(&[("/data", Op::List)], true);
    let k = keep(
        r,
        std::slice::from_ref(&t),
        &Rules::default(),
        &Options::default(),
    );
    assert!(has(&k, "/data") && !has(&k, "/data/a.txt"));
    let opts = Options {
        keep_listed: true,
        ..Options::default()
    };
    let k = keep(r, &[t], &Rules::default(), &opts);
    assert_eq!(k.paths[Path::new("/data/a.txt")], Reason::Listed);
    assert_eq!(k.paths[Path::new("/data/sub")], Reason::Listed);
    assert!(!has(&k, "/data/sub/deep.txt"));
    assert_eq!(k.units[Path::new("/data/a.txt")], "listed /data");
}
