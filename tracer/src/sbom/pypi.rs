//! Python distributions from kept `*.dist-info` metadata (what pip
//! installs): name and version from METADATA, files from RECORD (read
//! from the source when the minimal image leaves RECORD out).
use std::path::{Path, PathBuf};

use super::{
    SbomError,
    collect::{Located, View, join_lexical},
    model::{Ecosystem, Package},
    purl,
};

/// The header fields of a METADATA file (RFC 822 style, up to the body).
fn headers(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            (!k.starts_with(' ')).then(|| (k.trim(), v.trim()))
        })
        .collect()
}

/// A RECORD line's path: the first CSV field, maybe quoted.
fn record_path(line: &str) -> Option<String> {
    if let Some(rest) = line.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push('"');
                } else {
                    return Some(out);
                }
            } else {
                out.push(c);
            }
        }
        return None;
    }
    line.split(',')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub fn packages(view: &View) -> Result<Vec<Package>, SbomError> {
    let mut out = Vec::new();
    let metas: Vec<&PathBuf> = view
        .paths
        .iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| n == "METADATA")
                && p.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|d| d.to_string_lossy().ends_with(".dist-info"))
        })
        .collect();
    for meta in metas {
        let Some(text) = view.read(meta)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        let h = headers(&text);
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| *v)
        };
        let (Some(name), Some(version)) = (get("Name"), get("Version")) else {
            continue;
        };
        // License-Expression (PEP 639) is SPDX; an old free-text
        // `License:` is used only when it is one plain word such as `MIT`.
        let license = get("License-Expression").map(str::to_string).or_else(|| {
            get("License")
                .filter(|l| {
                    !l.is_empty()
                        && l.len() < 40
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))
                        && !l.eq_ignore_ascii_case("unknown")
                })
                .map(str::to_string)
        });
        let supplier = get("Author")
            .filter(|a| !a.is_empty() && !a.eq_ignore_ascii_case("unknown"))
            .or_else(|| get("Author-email"))
            .or_else(|| get("Maintainer"))
            .or_else(|| get("Maintainer-email"))
            .map(str::to_string);
        let dist = meta.parent().unwrap_or(Path::new("/"));
        let site = dist.parent().unwrap_or(Path::new("/"));
        let (mut present, mut absent) = (Vec::new(), 0);
        if let Some(record) = view.read_source(&dist.join("RECORD"))? {
            for line in String::from_utf8_lossy(&record).lines() {
                let Some(rel) = record_path(line) else {
                    continue;
                };
                let f = join_lexical(site, &rel);
                match view.locate(&f) {
                    Located::Absent => absent += 1,
                    Located::File(p) => present.push(p),
                    Located::Other => {}
                }
            }
        }
        present.sort();
        present.dedup();
        out.push(Package {
            ecosystem: Ecosystem::Pypi,
            purl: purl::build("pypi", None, &purl::pypi_name(name), version, &[]),
            name: name.to_string(),
            version: version.to_string(),
            arch: None,
            license,
            supplier,
            source: dist.to_path_buf(),
            present,
            absent,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_record_parse() {
        let h = headers(
            "Metadata-Version: 2.1\nName: Pygments\nVersion: 2.17.2\nLicense: BSD-2-Clause\n\nbody: no\n",
        );
        assert!(h.contains(&("Name", "Pygments")));
        assert!(!h.iter().any(|(k, _)| *k == "body"));
        assert_eq!(
            record_path("pygments/__init__.py,sha256=abc,123").as_deref(),
            Some("pygments/__init__.py")
        );
        assert_eq!(record_path("\"a,b.py\",,").as_deref(), Some("a,b.py"));
    }
}
