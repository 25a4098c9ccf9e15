//! Which kept files are programs: only a program's `#!` line names an
//! interpreter the image needs, and (when the trace records every open)
//! only a program roots the ELF closure. A script that was only read or
//! copied (a stdlib module starting with `#!/usr/bin/env`, a hook sample
//! `git init` copies) needs neither.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{ClosureError, resolve::resolve, rules::Rules};
use crate::{
    model::trace::{Op, Trace},
    source::rootfs::{Kind, Rootfs},
};

/// Why a file counts as a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Why {
    /// `executed`, `entrypoint`, `cmd`, `include`, or the unit that
    /// brought it (`package git`).
    pub text: String,
    /// Only an executable file is a program (for files a level adds).
    pub needs_exec_bit: bool,
}

impl Why {
    fn named(text: &str) -> Why {
        Why {
            text: text.to_string(),
            needs_exec_bit: false,
        }
    }
    /// The interpreter a kept script's `#!` names.
    pub fn interpreter_of(script: &Path) -> Why {
        Why::named(&format!("interpreter of {}", script.display()))
    }

    pub fn of_unit(unit: &str) -> Why {
        Why {
            text: unit.to_string(),
            needs_exec_bit: true,
        }
    }
}

/// One interpreter in the image and the script that needs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct InterpreterUse {
    /// As the `#!` line names it.
    pub interpreter: String,
    /// The file that lookup ends at in the image.
    pub resolved: String,
    pub script: String,
    pub why: String,
}

/// A program the image's config starts: `argv[0]` of Entrypoint (or of
/// Cmd when there is no Entrypoint), and the PATH to look a bare name up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProgram {
    pub why: &'static str,
    pub name: String,
    pub path_var: Option<String>,
}

/// The programs an image config starts.
pub fn from_config(config: Option<&oci_spec::image::ImageConfiguration>) -> Vec<ConfigProgram> {
    let Some(c) = config.and_then(|c| c.config().as_ref()) else {
        return Vec::new();
    };
    let path_var = c.env().as_ref().and_then(|env| {
        env.iter()
            .find_map(|e| e.strip_prefix("PATH=").map(String::from))
    });
    let mut out = Vec::new();
    for (why, argv) in [("entrypoint", c.entrypoint()), ("cmd", c.cmd())] {
        if let Some(first) = argv.as_ref().and_then(|a| a.first()) {
            out.push(ConfigProgram {
                why,
                name: first.clone(),
                path_var: path_var.clone(),
            });
        }
    }
    out
}

/// True when the trace saw every open of its processes: complete, and
/// from their start (not `trace attach` to something already running).
pub fn covers_every_open(t: &Trace) -> bool {
    t.complete && t.command.first().map(String::as_str) != Some("attach")
}

/// The default PATH of runc and docker when the config sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn regular(fs: &dyn Rootfs, path: &Path) -> Result<Option<PathBuf>, ClosureError> {
    Ok(match resolve(fs, path, true)? {
        Some(r) if matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Regular) => {
            Some(r.path)
        }
        _ => None,
    })
}

/// Programs named by the traces (executed), the config and `--include`,
/// by their real path in the image.
pub fn named(
    fs: &dyn Rootfs,
    traces: &[Trace],
    rules: &Rules,
    config: &[ConfigProgram],
) -> Result<BTreeMap<PathBuf, Why>, ClosureError> {
    let mut out = BTreeMap::new();
    for t in traces {
        for f in &t.files {
            // The name execve was given and, for a script or a symlink,
            // the file the kernel ran (`exe`): both were executed. The
            // name as asked, when the folded one differs (`dir/link/..`),
            // is where the lookup went.
            for a in f.accesses.iter().filter(|a| a.ok() && a.op == Op::Exec) {
                let name = a.requested_path().unwrap_or_else(|| f.os_path());
                if let Some(real) = regular(fs, &name)? {
                    out.entry(real).or_insert_with(|| Why::named("executed"));
                }
            }
        }
    }
    for c in config {
        let candidates: Vec<PathBuf> = if c.name.contains('/') {
            vec![Path::new("/").join(&c.name)]
        } else {
            c.path_var
                .as_deref()
                .unwrap_or(DEFAULT_PATH)
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| Path::new(d).join(&c.name))
                .collect()
        };
        for cand in candidates {
            if let Some(real) = regular(fs, &cand)? {
                out.entry(real).or_insert_with(|| Why::named(c.why));
                break;
            }
        }
    }
    for inc in rules.includes.iter().filter(|i| i.program) {
        if let Some(real) = regular(fs, &inc.path)? {
            out.entry(real).or_insert_with(|| Why::named("include"));
        }
    }
    Ok(out)
}
