//! `trace allowlist`: the paths an image needs, for review before
//! `trace build --include-from`.
use std::{collections::BTreeMap, os::unix::ffi::OsStringExt, path::PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::{
    closure::{
        self, Reason,
        rules::{self, Rules},
    },
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
    /// The UTF-8 paths, as they are.
    paths: Vec<String>,
    /// The paths that are not UTF-8, their bytes in hex.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    paths_hex: Vec<String>,
    /// Keyed by path (lossy for the ones in `paths_hex`).
    reasons: BTreeMap<String, Reason>,
}

pub fn run(args: AllowlistArgs) -> Result<i32> {
    let trace = write::read(&args.trace)?;
    if args.from.is_none() && (args.keep.keep != closure::Level::File || args.keep.keep_listed) {
        anyhow::bail!("--keep and --keep-listed need --from SRC (the image the units are in)");
    }
    // Keyed by the exact bytes: names need not be UTF-8.
    let reasons: BTreeMap<Vec<u8>, Reason> = match &args.from {
        Some(src) => {
            let image = src.open().context("reading the source image")?;
            let kept = closure::compute_with(
                image.rootfs.as_ref(),
                &[trace],
                &Rules::default(),
                &args.keep.options(image.config.as_ref()),
            )?;
            kept.paths
                .into_iter()
                .map(|(p, r)| (p.into_os_string().into_vec(), r))
                .collect()
        }
        None => trace
            .files
            .iter()
            .filter(|f| f.used())
            .map(|f| f.os_path())
            .filter(|p| !trace.beyond_image(p))
            .map(|p| (p.into_os_string().into_vec(), Reason::Traced))
            .collect(),
    };
    let bytes = match args.format {
        ListFormat::Text => {
            let mut s = format!("# trace allowlist of {}\n", args.trace.display());
            for p in reasons.keys() {
                s.push_str(&rules::escape(p));
                s.push('\n');
            }
            s.into_bytes()
        }
        ListFormat::Json => {
            let (utf8, other): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) =
                reasons.keys().partition(|p| std::str::from_utf8(p).is_ok());
            let mut v = serde_json::to_vec_pretty(&Json {
                paths: utf8
                    .into_iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect(),
                paths_hex: other
                    .into_iter()
                    .map(|p| crate::source::archive::hex(p))
                    .collect(),
                reasons: reasons
                    .iter()
                    .map(|(p, r)| (String::from_utf8_lossy(p).into_owned(), *r))
                    .collect(),
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
    use crate::closure::rules::{Rules, escape};

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape(b"/a/b[1]*.txt"), "/a/b\\[1\\]\\*.txt");
        assert_eq!(escape(b"/plain/path"), "/plain/path");
    }

    #[test]
    fn any_name_round_trips_through_a_list() {
        let names: [&[u8]; 6] = [
            b"/opt/caf\xe9",
            b"/opt/new\nline",
            b"/opt/tab\there ",
            b"/opt/back\\slash\\x41",
            b"/opt/[odd]{name}*?",
            "/opt/\u{e9}t\u{e9}".as_bytes(),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let list = dir.path().join("list");
        let mut text = String::new();
        for n in names {
            let line = escape(n);
            assert!(!line.contains('\n') && line.trim() == line, "{line:?}");
            text.push_str(&line);
            text.push('\n');
        }
        std::fs::write(&list, text).expect("write");
        let rules = Rules::new(&[], &[], &[list]).expect("parses");
        let got: Vec<Vec<u8>> = rules
            .includes
            .iter()
            .map(|i| {
                assert!(i.glob.is_none(), "{} taken as a glob", i.text);
                std::os::unix::ffi::OsStrExt::as_bytes(i.path.as_os_str()).to_vec()
            })
            .collect();
        assert_eq!(got, names.map(<[u8]>::to_vec));
    }
}
