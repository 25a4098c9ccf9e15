//! Documentation, man pages and locales: left out of whole packages
//! (they are rarely read at run time) unless `--keep-docs`; the locale
//! languages a run looked at stay.
use std::{collections::BTreeSet, path::Path};

use crate::model::trace::Trace;

const DOC_DIRS: &[&str] = &[
    "/usr/share/doc",
    "/usr/share/doc-base",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/gtk-doc",
    "/usr/share/help",
];
const LOCALE_DIR: &str = "/usr/share/locale";

/// The language directory of a path below `/usr/share/locale`.
fn lang(path: &Path) -> Option<String> {
    let rest = path.strip_prefix(LOCALE_DIR).ok()?;
    let first = rest.components().next()?;
    // `locale.alias` and the like are files directly in the directory.
    (rest.components().count() > 1).then(|| first.as_os_str().to_string_lossy().into_owned())
}

/// Languages whose locale files some trace looked up (found or not).
pub fn traced_langs(traces: &[Trace]) -> BTreeSet<String> {
    traces
        .iter()
        .flat_map(|t| &t.files)
        .filter_map(|f| lang(Path::new(&f.path)))
        .collect()
}

pub struct Filter<'a> {
    pub keep_docs: bool,
    pub langs: &'a BTreeSet<String>,
}

impl Filter<'_> {
    /// Whether a package's file is left out.
    pub fn skip(&self, path: &Path) -> bool {
        if self.keep_docs {
            return false;
        }
        if DOC_DIRS.iter().any(|d| path.starts_with(d)) {
            return true;
        }
        lang(path).is_some_and(|l| !self.langs.contains(&l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_and_untraced_locales_are_left_out() {
        let langs = BTreeSet::from(["de".to_string()]);
        let f = Filter {
            keep_docs: false,
            langs: &langs,
        };
        assert!(f.skip(Path::new("/usr/share/doc/git/README")));
        assert!(f.skip(Path::new("/usr/share/man/man1/git.1.gz")));
        assert!(f.skip(Path::new("/usr/share/locale/fr/LC_MESSAGES/git.mo")));
        assert!(!f.skip(Path::new("/usr/share/locale/de/LC_MESSAGES/git.mo")));
        assert!(!f.skip(Path::new("/usr/share/locale/locale.alias")));
        assert!(!f.skip(Path::new("/usr/share/git-core/templates/description")));
        let all = Filter {
            keep_docs: true,
            langs: &langs,
        };
        assert!(!all.skip(Path::new("/usr/share/doc/git/README")));
    }
}
