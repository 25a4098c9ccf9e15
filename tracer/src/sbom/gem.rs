//! Ruby gems from kept `specifications/*.gemspec` files (the Ruby that
//! RubyGems writes: `s.name = "rake".freeze`); each owns the files under
//! `gems/<name>-<version>/` beside its specifications directory.
use std::path::{Path, PathBuf};

use super::{
    SbomError,
    collect::View,
    model::{Ecosystem, Package},
    purl,
};

/// The gemspec's `s.<key> = "value"` (or `["value", …]`: the first).
fn value<'a>(spec: &'a str, key: &str) -> Option<&'a str> {
    spec.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("s.").or_else(|| l.strip_prefix("spec."))?;
        let rest = rest
            .strip_prefix(key)?
            .trim_start()
            .strip_prefix('=')?
            .trim_start();
        let rest = rest.strip_prefix('[').unwrap_or(rest).trim_start();
        let q = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let body = &rest[1..];
        body.find(q).map(|end| &body[..end])
    })
}

/// The gem home (`…/gems/3.1.0`) when `p` is a specification in it.
fn gem_home(p: &Path) -> Option<&Path> {
    if p.extension().is_none_or(|e| e != "gemspec") {
        return None;
    }
    let mut d = p.parent()?;
    if d.file_name()? == "default" {
        d = d.parent()?;
    }
    (d.file_name()? == "specifications")
        .then(|| d.parent())
        .flatten()
}

pub fn packages(view: &View) -> Result<Vec<Package>, SbomError> {
    let mut out = Vec::new();
    for spec in view.paths.iter().filter(|p| gem_home(p).is_some()) {
        let Some(home) = gem_home(spec) else { continue };
        let Some(text) = view.read(spec)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        let (Some(name), Some(version)) = (value(&text, "name"), value(&text, "version")) else {
            continue;
        };
        let dir = home.join("gems").join(format!("{name}-{version}"));
        let mut present: Vec<PathBuf> = view.files_under(&dir).cloned().collect();
        present.push(spec.clone());
        present.sort();
        out.push(Package {
            ecosystem: Ecosystem::Gem,
            purl: purl::build("gem", None, name, version, &[]),
            name: name.to_string(),
            version: version.to_string(),
            arch: None,
            license: value(&text, "licenses")
                .or_else(|| value(&text, "license"))
                .map(str::to_string),
            supplier: value(&text, "authors").map(str::to_string),
            source: spec.clone(),
            present,
            // A gemspec's file list is often incomplete: not counted.
            absent: 0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemspecs_parse() {
        let spec = "Gem::Specification.new do |s|\n  s.name = \"rake\".freeze\n  s.version = \"13.0.6\"\n  \
                    s.authors = [\"Hiroshi SHIBATA\".freeze, \"Eric Hodel\".freeze]\n  s.licenses = [\"MIT\".freeze]\nend\n";
        assert_eq!(value(spec, "name"), Some("rake"));
        assert_eq!(value(spec, "version"), Some("13.0.6"));
        assert_eq!(value(spec, "licenses"), Some("MIT"));
        assert_eq!(value(spec, "authors"), Some("Hiroshi SHIBATA"));
        assert_eq!(
            gem_home(Path::new(
                "/usr/lib/ruby/gems/3.1.0/specifications/default/json-2.6.1.gemspec"
            )),
            Some(Path::new("/usr/lib/ruby/gems/3.1.0"))
        );
    }
}
