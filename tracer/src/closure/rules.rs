//! The user's adjustments: `--include`, `--exclude`, `--include-from`.
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("bad pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("{0:?} is not an absolute path or pattern")]
    NotAbsolute(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One `--include`: a literal path, or a glob (`*`, `?`, `[`, `{`).
#[derive(Clone, Debug)]
pub struct Include {
    pub text: String,
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

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
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

impl Rules {
    pub fn new(
        includes: &[String],
        excludes: &[String],
        include_files: &[PathBuf],
    ) -> Result<Rules, RuleError> {
        let mut all: Vec<(String, bool)> = includes.iter().map(|i| (i.clone(), true)).collect();
        for f in include_files {
            let text = std::fs::read_to_string(f).map_err(|source| RuleError::Read {
                path: f.clone(),
                source,
            })?;
            all.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| (l.to_string(), false)),
            );
        }
        let mut rules = Rules::default();
        for (text, named) in all {
            if !text.starts_with('/') {
                return Err(RuleError::NotAbsolute(text));
            }
            let include = if is_glob(&text) {
                let literal: PathBuf = Path::new(&text)
                    .components()
                    .take_while(|c| !is_glob(&c.as_os_str().to_string_lossy()))
                    .collect();
                Include {
                    walk_from: Some(literal),
                    glob: Some(glob(&text)?.compile_matcher()),
                    text,
                    program: false,
                }
            } else {
                Include {
                    text,
                    walk_from: None,
                    glob: None,
                    program: named,
                }
            };
            rules.includes.push(include);
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
