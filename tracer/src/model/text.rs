//! The human-readable summary (`--format text`).
use std::fmt::Write as _;

use std::os::unix::ffi::OsStrExt;

use super::{
    escape,
    trace::{FileEntry, Op, Trace},
};

/// An entry's path as one safe line (see `escape`).
fn name(f: &FileEntry) -> String {
    escape::path(f.os_path().as_os_str().as_bytes())
}

pub fn render(t: &Trace) -> String {
    let mut out = String::new();
    let read: Vec<_> = t
        .files
        .iter()
        .filter(|f| {
            f.accesses
                .iter()
                .any(|a| a.ok() && a.op != Op::Exec && a.op != Op::Chdir)
                && !f.written()
        })
        .collect();
    let written: Vec<_> = t.files.iter().filter(|f| f.written()).collect();
    let failed: Vec<_> = t.files.iter().filter(|f| f.failed_only()).collect();

    let _ = writeln!(out, "Executables ({}):", t.execs.len());
    for e in &t.execs {
        let exe = match &e.exe {
            Some(x) if *x != e.path => format!(" -> {}", escape::path(x.as_bytes())),
            _ => String::new(),
        };
        let argv: Vec<String> = e.argv.iter().map(|a| escape::text(a)).collect();
        let _ = writeln!(
            out,
            "  {}{}    [{}]",
            escape::path(e.path.as_bytes()),
            exe,
            argv.join(" ")
        );
    }
    let _ = writeln!(out, "Files read or probed ({}):", read.len());
    for f in &read {
        let _ = writeln!(
            out,
            "  {}{}",
            name(f),
            if f.truncated { " (truncated)" } else { "" }
        );
    }
    let _ = writeln!(out, "Files written ({}):", written.len());
    for f in &written {
        let _ = writeln!(out, "  {}", name(f));
    }
    let _ = writeln!(out, "Failed lookups ({}):", failed.len());
    for f in &failed {
        let mut results: Vec<&str> = f.accesses.iter().map(|a| a.result.as_ref()).collect();
        results.dedup();
        let _ = writeln!(out, "  {}  ({})", name(f), results.join(", "));
    }
    let lost = &t.lost_events;
    let _ = writeln!(
        out,
        "trace: {} executables, {} files read, {} written, {} failed lookups; {} syscalls seen, {} reported; {}",
        t.execs.len(),
        read.len(),
        written.len(),
        failed.len(),
        t.counters.syscalls_seen,
        t.counters.records,
        if t.complete {
            "complete, 0 events lost".to_string()
        } else {
            format!(
                "INCOMPLETE: {} events lost, {} paths truncated",
                lost.total, t.counters.truncated_paths
            )
        }
    );
    out
}
