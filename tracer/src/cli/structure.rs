//! `trace structure-test`: a container-structure-test config (schema
//! 2.0.0) that pins the minimal image down: what it must have (the
//! executables and files the run used, with their permissions), what it
//! must not (shells, package managers and tools the run never used), and
//! its metadata.
use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    closure::{self, Reason, rules::Rules},
    model::{trace::Op, write},
    source::{self, rootfs::Kind},
};

/// Tools a minimal image should not carry unless the run used them.
const UNWANTED: &[&str] = &[
    "/bin/sh",
    "/bin/bash",
    "/bin/dash",
    "/usr/bin/sh",
    "/usr/bin/bash",
    "/usr/bin/dash",
    "/usr/bin/apt",
    "/usr/bin/apt-get",
    "/usr/bin/dpkg",
    "/usr/bin/perl",
    "/usr/bin/curl",
    "/usr/bin/wget",
    "/usr/bin/su",
    "/usr/bin/passwd",
];

#[derive(Debug, Args)]
pub struct StructureArgs {
    #[arg(value_name = "TRACE.json")]
    pub trace: PathBuf,
    /// The source image the minimal one is built from.
    #[arg(long, value_name = "SRC", value_parser = source::transport::parse)]
    pub from: source::ImageRef,
    #[arg(short, long, value_name = "cst.yaml")]
    pub output: PathBuf,
}

/// `-rwxr-xr-x`, `urwxr-xr-x` for setuid: Go's FileMode string, which
/// container-structure-test compares against.
fn go_mode(mode: u32) -> String {
    let mut s = String::new();
    if mode & 0o4000 != 0 {
        s.push('u');
    }
    if mode & 0o2000 != 0 {
        s.push('g');
    }
    if mode & 0o1000 != 0 {
        s.push('t');
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in ['r', 'w', 'x', 'r', 'w', 'x', 'r', 'w', 'x']
        .iter()
        .enumerate()
    {
        s.push(if mode & (0o400 >> i) != 0 { *c } else { '-' });
    }
    s
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

pub fn run(args: StructureArgs) -> Result<i32> {
    let trace = write::read(&args.trace)?;
    let image = args
        .from
        .open()
        .with_context(|| format!("reading the source image {}", args.from))?;
    let fs = image.rootfs.as_ref();
    let kept = closure::compute(fs, std::slice::from_ref(&trace), &Rules::default())?;
    let mut y = String::from("schemaVersion: \"2.0.0\"\n\nfileExistenceTests:\n");
    let mut must: BTreeSet<PathBuf> = BTreeSet::new();
    // What the run executed, and the regular files it used.
    for e in &trace.execs {
        must.insert(PathBuf::from(e.exe.as_deref().unwrap_or(&e.path)));
    }
    for f in &trace.files {
        if f.accesses.iter().any(|a| a.ok() && a.op == Op::Open) {
            must.insert(PathBuf::from(&f.path));
        }
    }
    let mut n = 0;
    for p in &must {
        if kept.paths.get(p) != Some(&Reason::Traced) {
            continue;
        }
        let Ok(Some(m)) = fs.meta(p) else { continue };
        if m.kind != Kind::Regular {
            continue;
        }
        n += 1;
        let _ = writeln!(
            y,
            "  - name: \"kept {n}\"\n    path: {}\n    shouldExist: true\n    permissions: \"{}\"",
            quote(&p.display().to_string()),
            go_mode(m.mode)
        );
    }
    for u in UNWANTED {
        let p = Path::new(u);
        if kept.paths.contains_key(p) || !matches!(fs.meta(p), Ok(Some(_))) {
            continue;
        }
        n += 1;
        let _ = writeln!(
            y,
            "  - name: \"absent {n}\"\n    path: {}\n    shouldExist: false",
            quote(u)
        );
    }
    y.push_str("\nmetadataTest:\n");
    let config = image.config.as_ref().and_then(|c| c.config().clone());
    if let Some(c) = &config {
        if let Some(env) = c.env() {
            y.push_str("  envVars:\n");
            for kv in env {
                if let Some((k, v)) = kv.split_once('=') {
                    let _ = writeln!(y, "    - key: {}\n      value: {}", quote(k), quote(v));
                }
            }
        }
        let list = |v: &Option<Vec<String>>| -> String {
            let items: Vec<String> = v.iter().flatten().map(|s| quote(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let _ = writeln!(y, "  entrypoint: {}", list(c.entrypoint()));
        let _ = writeln!(y, "  cmd: {}", list(c.cmd()));
        if let Some(w) = c.working_dir().as_ref().filter(|w| !w.is_empty()) {
            let _ = writeln!(y, "  workdir: {}", quote(w));
        }
        if let Some(u) = c.user().as_ref().filter(|u| !u.is_empty()) {
            let _ = writeln!(y, "  user: {}", quote(u));
        }
    } else {
        y.push_str("  entrypoint: []\n  cmd: []\n");
    }
    write::write_atomic(&args.output, y.as_bytes())?;
    eprintln!(
        "trace structure-test: {n} file checks -> {}",
        args.output.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_style_modes() {
        assert_eq!(super::go_mode(0o755), "-rwxr-xr-x");
        assert_eq!(super::go_mode(0o4755), "urwxr-xr-x");
        assert_eq!(super::go_mode(0o644), "-rw-r--r--");
        assert_eq!(super::go_mode(0o1777), "trwxrwxrwx");
    }
}
