//! OS packages from the dpkg database: every installed package its
//! status records (for a minimal image, the trimmed database), with the
//! files of its list that the image holds.
use std::path::Path;

use super::{
    SbomError,
    collect::{Located, View},
    model::{Ecosystem, Package},
    purl,
};
use crate::closure::packages::{self, field};

/// `debian-12` from os-release, and the purl namespace (`debian`).
fn distro(view: &View) -> Result<(String, Option<String>), SbomError> {
    for p in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Some(text) = view.read_source(Path::new(p))? {
            let text = String::from_utf8_lossy(&text);
            let get = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            };
            if let Some(id) = get("ID") {
                let d = get("VERSION_ID").map(|v| format!("{id}-{v}"));
                return Ok((id, d));
            }
        }
    }
    Ok(("debian".to_string(), None))
}

pub fn packages(view: &View) -> Result<Vec<Package>, SbomError> {
    let Some(status) = view.read_source(Path::new(packages::STATUS))? else {
        return Ok(Vec::new());
    };
    let status = String::from_utf8_lossy(&status).into_owned();
    let (namespace, distro) = distro(view)?;
    let mut out = Vec::new();
    for p in packages::installed(&status) {
        let version = field(&p.paragraph, "Version").unwrap_or("").to_string();
        let (mut present, mut absent) = (Vec::new(), 0);
        if let Some(list) = packages::list_path(view.fs, &p) {
            let list = view.read_source(&list)?.unwrap_or_default();
            for line in String::from_utf8_lossy(&list).lines() {
                let f = Path::new(line);
                match view.locate(f) {
                    Located::Absent => absent += 1,
                    Located::File(p) => present.push(p),
                    Located::Other => {}
                }
            }
        }
        present.sort();
        present.dedup();
        let copyright = Path::new("/usr/share/doc").join(&p.name).join("copyright");
        let license = view
            .read_source(&copyright)?
            .and_then(|c| license(&String::from_utf8_lossy(&c)));
        let arch = (!p.arch.is_empty()).then(|| p.arch.clone());
        out.push(Package {
            ecosystem: Ecosystem::Deb,
            purl: purl::build(
                "deb",
                Some(&namespace),
                &p.name,
                &version,
                &[
                    ("arch", &p.arch),
                    ("distro", distro.as_deref().unwrap_or("")),
                ],
            ),
            name: p.name,
            version,
            arch,
            license,
            supplier: field(&p.paragraph, "Maintainer").map(str::to_string),
            source: packages::STATUS.into(),
            present,
            absent,
        });
    }
    Ok(out)
}

/// Debian short names (DEP-5) that differ from SPDX identifiers.
fn spdx_id(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let (base, plus) = match lower.strip_suffix('+') {
        Some(b) => (b, true),
        None => (lower.as_str(), false),
    };
    let gnu = |id: &str| format!("{id}-{}", if plus { "or-later" } else { "only" });
    Some(match base {
        "gpl-1" | "gpl-1.0" => gnu("GPL-1.0"),
        "gpl-2" | "gpl-2.0" => gnu("GPL-2.0"),
        "gpl-3" | "gpl-3.0" => gnu("GPL-3.0"),
        "lgpl-2" | "lgpl-2.0" => gnu("LGPL-2.0"),
        "lgpl-2.1" => gnu("LGPL-2.1"),
        "lgpl-3" | "lgpl-3.0" => gnu("LGPL-3.0"),
        "agpl-3" | "agpl-3.0" => gnu("AGPL-3.0"),
        "gfdl-1.2" => gnu("GFDL-1.2"),
        "gfdl-1.3" => gnu("GFDL-1.3"),
        _ if plus => return None,
        "expat" | "mit" => "MIT".into(),
        "bsd-2-clause" => "BSD-2-Clause".into(),
        "bsd-3-clause" => "BSD-3-Clause".into(),
        "bsd-4-clause" => "BSD-4-Clause".into(),
        "isc" => "ISC".into(),
        "zlib" => "Zlib".into(),
        "apache-2.0" => "Apache-2.0".into(),
        "mpl-1.1" => "MPL-1.1".into(),
        "mpl-2.0" => "MPL-2.0".into(),
        "artistic" | "artistic-1.0" => "Artistic-1.0".into(),
        "artistic-2.0" => "Artistic-2.0".into(),
        "psf-2" | "python" | "psf-2.0" => "PSF-2.0".into(),
        "cc0-1.0" | "cc0" => "CC0-1.0".into(),
        "curl" => "curl".into(),
        "openssl" => "OpenSSL".into(),
        "unicode-dfs-2016" => "Unicode-DFS-2016".into(),
        "x11" => "X11".into(),
        "bsl-1.0" => "BSL-1.0".into(),
        "0bsd" => "0BSD".into(),
        _ => return None,
    })
}

/// One DEP-5 `License:` short name as an SPDX expression: its SPDX id, or
/// a `LicenseRef-` naming it.
fn one(name: &str) -> String {
    spdx_id(name).unwrap_or_else(|| {
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("LicenseRef-{clean}")
    })
}

/// The licences a machine-readable (DEP-5) copyright file declares, as one
/// SPDX expression (all of them apply: `AND`); None when the file is not
/// machine-readable or declares none.
pub fn license(copyright: &str) -> Option<String> {
    let first = copyright.lines().next()?;
    if !(first.starts_with("Format:") && first.contains("copyright-format")) {
        return None;
    }
    let mut all: Vec<String> = Vec::new();
    for line in copyright.lines() {
        let Some(v) = line.strip_prefix("License:") else {
            continue;
        };
        // `GPL-2+ or Artistic`, `MIT and BSD-3-clause`; commas are
        // DEP-5's exceptions ("GPL-2+ with OpenSSL exception") — named
        // whole.
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let mut expr = Vec::new();
        let mut words = Vec::new();
        let flush = |words: &mut Vec<&str>, expr: &mut Vec<String>| {
            if !words.is_empty() {
                expr.push(one(&words.join("-")));
                words.clear();
            }
        };
        for w in v.split_whitespace() {
            match w.to_ascii_lowercase().as_str() {
                "or" | "and" => {
                    flush(&mut words, &mut expr);
                    expr.push(w.to_ascii_uppercase());
                }
                _ => words.push(w.trim_end_matches(',')),
            }
        }
        flush(&mut words, &mut expr);
        let e = if expr.len() > 1 {
            format!("({})", expr.join(" "))
        } else {
            expr.join(" ")
        };
        if !all.contains(&e) {
            all.push(e);
        }
    }
    all.sort();
    (!all.is_empty()).then(|| all.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep5_licences_become_spdx() {
        let c = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                 Upstream-Name: x\n\nFiles: *\nCopyright: me\nLicense: GPL-2+\n\n\
                 Files: lib/*\nLicense: Expat\n\nFiles: y\nLicense: GPL-2+ or Artistic\n\n\
                 License: GPL-2+\n This program is free software\n";
        assert_eq!(
            license(c).as_deref(),
            Some("(GPL-2.0-or-later OR Artistic-1.0) AND GPL-2.0-or-later AND MIT")
        );
        assert_eq!(
            license("Format: https://x/copyright-format/1.0/\n\nLicense: public-domain\n")
                .as_deref(),
            Some("LicenseRef-public-domain")
        );
        assert_eq!(
            license("This is the Debian package of x.\nLicense: GPL\n"),
            None
        );
    }
}
