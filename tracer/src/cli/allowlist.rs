//! `trace allowlist`: the paths an image needs, for review before
//! `trace build --include-from`.
use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::{
    closure::{self, Reason, essentials, rules::Rules},
    model::write,
    source,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// One path per line (what `--include-from` reads).
    Text,
    /// `{"paths": [...], "reasons": {...}}`.
    Json,
}

#[derive(Debug, Args)]
pub struct AllowlistArgs {
    #[arg(value_name = "TRACE.json")]
    pub trace: PathBuf,
    /// Apply `trace build`'s closure rules over this source image
    /// (symlinks, parents, libraries, interpreters, essentials).
    #[arg(long, value_name = "SRC", value_parser = source::transport::parse)]
    pub from: Option<source::ImageRef>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ListFormat,
    #[command(flatten)]
    pub keep: super::keep::KeepArgs,
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Serialize)]
struct Json {
    paths: Vec<String>,
    reasons: BTreeMap<String, Reason>,
}

/// Glob characters are escaped so `--include-from` takes each line as
/// the literal path it is.
fn escape(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn run(args: AllowlistArgs) -> Result<i32> {
    let trace = write::read(&args.trace)?;
    if args.from.is_none() && (args.keep.keep != closure::Level::File || args.keep.keep_listed) {
        anyhow::bail!("--keep and --keep-listed need --from SRC (the image the units are in)");
    }
    let reasons: BTreeMap<String, Reason> = match &args.from {
        Some(src) => {
            let image = src
                .open()
                .with_context(|| format!("reading the source image {src}"))?;
            let kept = closure::compute_with(
                image.rootfs.as_ref(),
                &[trace],
                &Rules::default(),
                &args.keep.options(image.config.as_ref()),
            )?;
            kept.paths
                .into_iter()
                .map(|(p, r)| (p.display().to_string(), r))
                .collect()
        }
        None => {
            let binds = &trace.scope.bind_mounts;
            trace
                .files
                .iter()
                .filter(|f| f.used() && f.path_hex.is_none())
                .filter(|f| {
                    !essentials::RUNTIME_PREFIXES
                        .iter()
                        .any(|p| f.path.starts_with(p))
                })
                .filter(|f| {
                    !binds
                        .iter()
                        .any(|b| std::path::Path::new(&f.path).starts_with(b))
                })
                .map(|f| (f.path.clone(), Reason::Traced))
                .collect()
        }
    };
    let bytes = match args.format {
        ListFormat::Text => {
            let mut s = format!("# trace allowlist of {}\n", args.trace.display());
            for p in reasons.keys() {
                s.push_str(&escape(p));
                s.push('\n');
            }
            s.into_bytes()
        }
        ListFormat::Json => {
            let mut v = serde_json::to_vec_pretty(&Json {
                paths: reasons.keys().cloned().collect(),
                reasons: reasons.clone(),
            })?;
            v.push(b'\n');
            v
        }
    };
    write::write_atomic(&args.output, &bytes)?;
    eprintln!(
        "trace allowlist: {} paths -> {}",
        reasons.len(),
        args.output.display()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(super::escape("/a/b[1]*.txt"), "/a/b\\[1\\]\\*.txt");
        assert_eq!(super::escape("/plain/path"), "/plain/path");
    }
}
