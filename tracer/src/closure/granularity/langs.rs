//! Node packages, Ruby gems and Perl modules, found from paths alone:
//! a Node package is the directory under `node_modules` (`@scope/name`
//! included) and its `package.json` is its metadata; a gem is
//! `gems/NAME-VERSION` beside `specifications/NAME-VERSION.gemspec`; a
//! Perl module `Foo/Bar.pm` under an `@INC` directory comes with
//! `auto/Foo/Bar/` (its XS library and autoloaded parts).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use super::{Unit, whole_dir};
use crate::{
    closure::{ClosureError, Reason, walk_tree},
    source::rootfs::{Kind, Rootfs},
};

fn comps(p: &Path) -> Vec<&str> {
    p.iter().filter_map(|c| c.to_str()).collect()
}

fn join(c: &[&str]) -> PathBuf {
    c.iter().collect()
}

/// The Node package a path lies in (the innermost one), and its name.
pub fn node_package(p: &Path) -> Option<(PathBuf, String)> {
    let c = comps(p);
    let i = c.iter().rposition(|&x| x == "node_modules")?;
    let first = *c.get(i + 1)?;
    let len = if first.starts_with('@') { i + 3 } else { i + 2 };
    if c.len() < len {
        return None;
    }
    Some((join(&c[..len]), c[i + 1..len].join("/")))
}

/// The gem a path lies in: its directory, name-version, and the
/// specification file.
pub fn gem(p: &Path) -> Option<(PathBuf, String, PathBuf)> {
    let c = comps(p);
    let i = c.iter().rposition(|&x| x == "gems")?;
    let name = *c.get(i + 1)?;
    let base = join(&c[..i]);
    Some((
        join(&c[..i + 2]),
        name.to_string(),
        base.join("specifications").join(format!("{name}.gemspec")),
    ))
}

/// A Perl module: the `@INC` directory (`perl5`, `perl/5.36`,
/// `perl5/5.36`, `perl-base`) and the module's path below it.
pub fn perl_module(p: &Path) -> Option<(PathBuf, PathBuf)> {
    if p.extension().is_none_or(|e| e != "pm") {
        return None;
    }
    let c = comps(p);
    let is_version =
        |s: &str| s.starts_with("5.") && s[2..].split('.').all(|n| n.parse::<u32>().is_ok());
    let i = c
        .iter()
        .position(|&x| x == "perl5" || x == "perl" || x == "perl-base")?;
    let root_len = if c.get(i + 1).is_some_and(|v| is_version(v)) {
        i + 2
    } else {
        i + 1
    };
    if c.len() <= root_len || c[root_len] == "auto" {
        return None;
    }
    Some((join(&c[..root_len]), join(&c[root_len..])))
}

fn is_file(fs: &dyn Rootfs, p: &Path) -> bool {
    matches!(fs.meta(p), Ok(Some(m)) if m.kind == Kind::Regular)
}

/// Metadata of kept packages and gems, at every level.
pub fn metadata(
    fs: &dyn Rootfs,
    kept: &BTreeMap<PathBuf, Reason>,
    out: &mut Vec<Unit>,
) -> Result<(), ClosureError> {
    let mut seen = BTreeSet::new();
    for p in kept.keys() {
        let mut meta = Vec::new();
        if let Some((root, name)) = node_package(p) {
            meta.push((
                root.join("package.json"),
                format!("node package {name} (metadata)"),
            ));
        }
        if let Some((_, name, spec)) = gem(p) {
            meta.push((spec, format!("ruby gem {name} (metadata)")));
        }
        for (m, unit) in meta {
            if !kept.contains_key(&m) && seen.insert(m.clone()) && is_file(fs, &m) {
                out.push(Unit {
                    path: m,
                    reason: Reason::Metadata,
                    unit,
                    program: false,
                });
            }
        }
    }
    Ok(())
}

/// Whole Node packages (without the packages nested in their own
/// `node_modules`), gems and Perl modules around kept paths.
pub fn modules(
    fs: &dyn Rootfs,
    kept: &BTreeMap<PathBuf, Reason>,
    done: &mut BTreeSet<String>,
    out: &mut Vec<Unit>,
) -> Result<(), ClosureError> {
    for p in kept.keys() {
        if let Some((root, name)) = node_package(p)
            && done.insert(format!("node:{}", root.display()))
            && matches!(fs.meta(&root), Ok(Some(m)) if m.kind == Kind::Dir)
        {
            let unit = format!("node package {name}");
            out.push(Unit {
                path: root.clone(),
                reason: Reason::Module,
                unit: unit.clone(),
                program: false,
            });
            let nested = root.join("node_modules");
            for q in walk_tree(fs, &root)? {
                if !q.starts_with(&nested) {
                    out.push(Unit {
                        path: q,
                        reason: Reason::Module,
                        unit: unit.clone(),
                        program: true,
                    });
                }
            }
        }
        if let Some((dir, name, _)) = gem(p)
            && done.insert(format!("gem:{}", dir.display()))
            && matches!(fs.meta(&dir), Ok(Some(m)) if m.kind == Kind::Dir)
        {
            whole_dir(
                fs,
                &dir,
                Reason::Module,
                &format!("ruby gem {name}"),
                true,
                out,
            )?;
        }
        if let Some((root, rel)) = perl_module(p)
            && done.insert(format!("perl:{}", p.display()))
        {
            let name = rel
                .with_extension("")
                .display()
                .to_string()
                .replace('/', "::");
            let unit = format!("perl module {name}");
            out.push(Unit {
                path: p.clone(),
                reason: Reason::Module,
                unit: unit.clone(),
                program: false,
            });
            let auto = root.join("auto").join(rel.with_extension(""));
            if matches!(fs.meta(&auto), Ok(Some(m)) if m.kind == Kind::Dir) {
                whole_dir(fs, &auto, Reason::Module, &unit, true, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_paths() {
        assert_eq!(
            node_package(Path::new("/app/node_modules/@babel/core/lib/index.js")),
            Some((
                PathBuf::from("/app/node_modules/@babel/core"),
                "@babel/core".into()
            ))
        );
        assert_eq!(
            node_package(Path::new("/app/node_modules/a/node_modules/b/x.js")),
            Some((
                PathBuf::from("/app/node_modules/a/node_modules/b"),
                "b".into()
            ))
        );
        assert_eq!(node_package(Path::new("/app/src/x.js")), None);
        let g = gem(Path::new(
            "/var/lib/gems/3.1.0/gems/rake-13.0.6/lib/rake.rb",
        ))
        .unwrap();
        assert_eq!(g.0, PathBuf::from("/var/lib/gems/3.1.0/gems/rake-13.0.6"));
        assert_eq!(
            g.2,
            PathBuf::from("/var/lib/gems/3.1.0/specifications/rake-13.0.6.gemspec")
        );
        assert_eq!(
            perl_module(Path::new(
                "/usr/lib/x86_64-linux-gnu/perl/5.36/List/Util.pm"
            )),
            Some((
                PathBuf::from("/usr/lib/x86_64-linux-gnu/perl/5.36"),
                PathBuf::from("List/Util.pm")
            ))
        );
        assert_eq!(
            perl_module(Path::new("/usr/share/perl5/Error.pm")),
            Some((PathBuf::from("/usr/share/perl5"), PathBuf::from("Error.pm")))
        );
        assert_eq!(perl_module(Path::new("/usr/share/perl5/x.pl")), None);
    }
}
