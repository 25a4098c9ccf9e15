//! The user's adjustments: `--include`, `--exclude`, `--include-from`.
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("bad pattern {pattern:?}")]
    Pattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("{0:?} is not an absolute path or pattern")]
    NotAbsolute(String),
    #[error("{0:?}: a glob must be UTF-8 (name the path literally)")]
    NotUtf8Glob(String),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One `--include`: a literal path, or a glob (`*`, `?`, `[`, `{`).
#[derive(Clone, Debug)]
pub struct Include {
    /// As given (for messages).
    pub text: String,
    /// For a literal: the path, exactly (escapes decoded, any bytes).
    pub path: PathBuf,
    /// For a glob: the longest leading directory without glob characters,
    /// where matching files are looked for.
    pub walk_from: Option<PathBuf>,
    pub glob: Option<globset::GlobMatcher>,
    /// Given with `--include` as a literal path: it names a program, so a
    /// `#!` script brings its interpreter. Lines of `--include-from` (an
    /// allowlist lists interpreters itself) and globs name files.
    pub program: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub includes: Vec<Include>,
    excludes: Option<GlobSet>,
    pub exclude_texts: Vec<String>,
}

fn is_meta(b: u8) -> bool {
    matches!(b, b'*' | b'?' | b'[' | b'{')
}

use crate::model::escape::is_glob_syntax as needs_escape;
pub use crate::model::escape::path as escape;

/// An include line read back: each byte, and whether it was escaped.
fn unescape(line: &[u8]) -> Vec<(u8, bool)> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' if line.get(i + 1) == Some(&b'x') => {
                let hi = line.get(i + 2).copied().and_then(hex);
                let lo = line.get(i + 3).copied().and_then(hex);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(((hi * 16 + lo) as u8, true));
                    i += 4;
                } else {
                    out.push((b'x', true));
                    i += 2;
                }
            }
            b'\\' if i + 1 < line.len() => {
                out.push((line[i + 1], true));
                i += 2;
            }
            b => {
                out.push((b, false));
                i += 1;
            }
        }
    }
    out
}

fn glob(pattern: &str) -> Result<Glob, RuleError> {
    // `*` stays within one path component; `**` crosses them.
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|source| RuleError::Pattern {
            pattern: pattern.to_string(),
            source,
        })
}

fn os(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(bytes).into()
}

/// One include, from `--include` (`named`) or a line of `--include-from`.
fn include(line: &[u8], named: bool) -> Result<Include, RuleError> {
    let text = String::from_utf8_lossy(line).into_owned();
    if line.first() != Some(&b'/') {
        return Err(RuleError::NotAbsolute(text));
    }
    let pieces = unescape(line);
    let Some(first_meta) = pieces.iter().position(|&(b, esc)| !esc && is_meta(b)) else {
        return Ok(Include {
            path: os(pieces.into_iter().map(|(b, _)| b).collect()),
            text,
            walk_from: None,
            glob: None,
            program: named,
        });
    };
    // Walk from the last `/` before the first glob character.
    let cut = pieces[..first_meta]
        .iter()
        .rposition(|&(b, esc)| b == b'/' && !esc)
        .unwrap_or(0);
    let walk: Vec<u8> = pieces[..cut.max(1)].iter().map(|&(b, _)| b).collect();
    let mut pattern = Vec::with_capacity(line.len());
    for (b, esc) in pieces {
        if esc && needs_escape(b) {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    let pattern = String::from_utf8(pattern).map_err(|_| RuleError::NotUtf8Glob(text.clone()))?;
    Ok(Include {
        walk_from: Some(os(walk)),
        glob: Some(glob(&pattern)?.compile_matcher()),
        path: PathBuf::new(),
        text,
        program: false,
    })
}

impl Rules {
    pub fn new(
        includes: &[String],
        excludes: &[String],
        include_files: &[PathBuf],
    ) -> Result<Rules, RuleError> {
        let mut rules = Rules::default();
        for i in includes {
            rules.includes.push(include(i.as_bytes(), true)?);
        }
        for f in include_files {
            let bytes = std::fs::read(f).map_err(|source| RuleError::Read {
                path: f.clone(),
                source,
            })?;
            for line in bytes.split(|&b| b == b'\n') {
                let line = line.trim_ascii();
                if line.is_empty() || line.starts_with(b"#") {
                    continue;
                }
                rules.includes.push(include(line, false)?);
            }
        }
        if !excludes.is_empty() {
            let mut set = GlobSetBuilder::new();
            for e in excludes {
                if !e.starts_with('/') {
                    return Err(RuleError::NotAbsolute(e.clone()));
                }
                set.add(glob(e)?);
            }
            rules.excludes = Some(set.build().map_err(|source| RuleError::Pattern {
                pattern: excludes.join(" "),
                source,
            })?);
            rules.exclude_texts = excludes.to_vec();
        }
        Ok(rules)
    }

    /// The first `--exclude` pattern matching `path`, if any.
    pub fn excluded_by(&self, path: &Path) -> Option<&str> {
        let set = self.excludes.as_ref()?;
        set.matches(path)
            .first()
            .and_then(|&i| self.exclude_texts.get(i))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_literals() {
        let r = Rules::new(
            &["/etc/ssl/certs/*.pem".into(), "/etc/hostname".into()],
            &["/usr/share/doc/**".into(), "/usr/bin/*sh".into()],
            &[],
        )
        .unwrap();
        assert_eq!(
            r.includes[0].walk_from,
            Some(PathBuf::from("/etc/ssl/certs"))
        );
        assert!(
            r.includes[0]
                .glob
                .as_ref()
                .unwrap()
                .is_match("/etc/ssl/certs/a.pem")
        );
        assert!(
            !r.includes[0]
                .glob
                .as_ref()
                .unwrap()
                .is_match("/etc/ssl/certs/x/a.pem")
        );
        assert!(r.includes[1].glob.is_none());
        assert_eq!(
            r.excluded_by(Path::new("/usr/bin/bash")),
            Some("/usr/bin/*sh")
        );
        assert_eq!(
            r.excluded_by(Path::new("/usr/share/doc/a/b")),
            Some("/usr/share/doc/**")
        );
        assert_eq!(r.excluded_by(Path::new("/usr/bin/python3")), None);
    }

    #[test]
    fn include_from_file_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("list");
        std::fs::write(&f, "# comment\n/etc/passwd\n\n  /etc/group  \n").unwrap();
        let r = Rules::new(&[], &[], &[f]).unwrap();
        let texts: Vec<_> = r.includes.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(texts, vec!["/etc/passwd", "/etc/group"]);
        assert!(matches!(
            Rules::new(&["etc".into()], &[], &[]),
            Err(RuleError::NotAbsolute(_))
        ));
        assert!(matches!(
            Rules::new(&["/a[".into()], &[], &[]),
            Err(RuleError::Pattern { .. })
        ));
    }
}
