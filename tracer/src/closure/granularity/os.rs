//! OS packages: who owns which file, and what depends on what, from the
//! image's own package database (dpkg's `status` and `info/*.list`, or
//! apk's `lib/apk/db/installed`). Listed paths are mapped to where they
//! are in the image through its symlinks (`/bin/ls` of a merged-/usr
//! system is `/usr/bin/ls`) and dpkg's diversions.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    path::{Path, PathBuf},
};

use super::{Unit, docs::Filter};
use crate::{
    closure::{ClosureError, Reason, essentials, resolve::resolve, walk_tree},
    source::rootfs::{Kind, Meta, Rootfs},
};

const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const DPKG_INFO: &str = "/var/lib/dpkg/info";
const DPKG_DIVERSIONS: &str = "/var/lib/dpkg/diversions";
const APK_INSTALLED: &str = "/lib/apk/db/installed";

/// One installed package as the database describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkg {
    pub name: String,
    pub essential: bool,
    /// `Depends` and `Pre-Depends`: each entry a list of alternatives.
    pub depends: Vec<Vec<String>>,
    pub provides: Vec<String>,
    /// Paths as the database lists them.
    pub listed: Vec<PathBuf>,
}

fn io(path: &str) -> impl FnOnce(std::io::Error) -> ClosureError + '_ {
    move |source| ClosureError::Io {
        path: PathBuf::from(path),
        source,
    }
}

fn is_file(fs: &dyn Rootfs, p: &Path) -> bool {
    matches!(fs.meta(p), Ok(Some(m)) if m.kind == Kind::Regular)
}

/// `name (>= 1.0)`, `name:any` -> `name`.
fn relation_name(s: &str) -> Option<String> {
    let n = s.trim().split([' ', '(', '\t']).next()?.split(':').next()?;
    (!n.is_empty()).then(|| n.to_string())
}

fn relations(field: &str) -> Vec<Vec<String>> {
    field
        .split(',')
        .map(|alts| {
            alts.split('|')
                .filter_map(relation_name)
                .collect::<Vec<_>>()
        })
        .filter(|a| !a.is_empty())
        .collect()
}

/// The fields of one deb822 paragraph (continuation lines joined).
fn fields(paragraph: &str) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut last: Option<String> = None;
    for line in paragraph.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(k) = &last
                && let Some(v) = out.get_mut(k)
            {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    out
}

/// Installed packages from dpkg's `status` text, without file lists.
pub fn parse_dpkg_status(status: &str) -> Vec<(Pkg, String)> {
    status
        .split("\n\n")
        .filter_map(|p| {
            let f = fields(p);
            if !f.get("Status")?.ends_with(" installed") {
                return None;
            }
            let mut depends = relations(f.get("Depends").map_or("", String::as_str));
            depends.extend(relations(f.get("Pre-Depends").map_or("", String::as_str)));
            let pkg = Pkg {
                name: f.get("Package")?.clone(),
                essential: f.get("Essential").is_some_and(|e| e == "yes"),
                depends,
                provides: relations(f.get("Provides").map_or("", String::as_str))
                    .into_iter()
                    .flatten()
                    .collect(),
                listed: Vec::new(),
            };
            Some((pkg, f.get("Architecture").cloned().unwrap_or_default()))
        })
        .collect()
}

/// dpkg's diversions: (path, where it was moved, the package diverting).
fn parse_diversions(text: &str) -> Vec<(PathBuf, PathBuf, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(3)
        .filter(|c| c.len() == 3)
        .map(|c| (PathBuf::from(c[0]), PathBuf::from(c[1]), c[2].to_string()))
        .collect()
}

/// apk's installed database: `P:` name, `D:` depends, `p:` provides,
/// `F:` a directory, `R:` a file in the last `F:`.
pub fn parse_apk(text: &str) -> Vec<Pkg> {
    let mut out = Vec::new();
    for record in text.split("\n\n") {
        let mut pkg = Pkg::default();
        let mut dir = PathBuf::from("/");
        for line in record.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let name = |s: &str| {
                s.split(['=', '<', '>', '~'])
                    .next()
                    .map(String::from)
                    .filter(|n| !n.is_empty() && !n.starts_with('!'))
            };
            match k {
                "P" => pkg.name = v.to_string(),
                "D" => pkg
                    .depends
                    .extend(v.split_whitespace().filter_map(name).map(|n| vec![n])),
                "p" => pkg.provides.extend(v.split_whitespace().filter_map(name)),
                "F" => {
                    dir = Path::new("/").join(v);
                    pkg.listed.push(dir.clone());
                }
                "R" => pkg.listed.push(dir.join(v)),
                _ => {}
            }
        }
        if !pkg.name.is_empty() {
            out.push(pkg);
        }
    }
    out
}

/// Packages with their files where they are in the image.
pub struct OsPackages {
    pkgs: Vec<Pkg>,
    by_name: HashMap<String, Vec<usize>>,
    /// Non-directory entries (as found in the image) and their owners.
    owner: HashMap<PathBuf, Vec<usize>>,
    files: Vec<Vec<PathBuf>>,
    dirs: Vec<Vec<PathBuf>>,
    dir_owners: HashMap<PathBuf, Vec<usize>>,
    /// Entries no package lists, by the nearest directory one does.
    unowned: HashMap<PathBuf, Vec<PathBuf>>,
    unowned_links: Vec<PathBuf>,
}

impl OsPackages {
    /// The image's package database; `None` when it has none.
    pub fn load(fs: &dyn Rootfs) -> Result<Option<OsPackages>, ClosureError> {
        let pkgs = if is_file(fs, Path::new(DPKG_STATUS)) {
            let status = fs
                .read_all(Path::new(DPKG_STATUS))
                .map_err(io(DPKG_STATUS))?;
            let mut pkgs = Vec::new();
            for (mut p, arch) in parse_dpkg_status(&String::from_utf8_lossy(&status)) {
                let list = [
                    format!("{}:{arch}.list", p.name),
                    format!("{}.list", p.name),
                ]
                .into_iter()
                .map(|n| Path::new(DPKG_INFO).join(n))
                .find(|l| is_file(fs, l));
                if let Some(l) = list {
                    let text = fs.read_all(&l).map_err(|source| ClosureError::Io {
                        path: l.clone(),
                        source,
                    })?;
                    p.listed = String::from_utf8_lossy(&text)
                        .lines()
                        .filter(|l| l.starts_with('/') && *l != "/.")
                        .map(PathBuf::from)
                        .collect();
                }
                pkgs.push(p);
            }
            if is_file(fs, Path::new(DPKG_DIVERSIONS)) {
                let text = fs
                    .read_all(Path::new(DPKG_DIVERSIONS))
                    .map_err(io(DPKG_DIVERSIONS))?;
                let div = parse_diversions(&String::from_utf8_lossy(&text));
                for p in &mut pkgs {
                    for l in &mut p.listed {
                        // Another package's diversion moved this file.
                        if let Some((_, to, _)) =
                            div.iter().find(|(from, _, by)| from == l && *by != p.name)
                        {
                            *l = to.clone();
                        }
                    }
                }
            }
            pkgs
        } else if is_file(fs, Path::new(APK_INSTALLED)) {
            let text = fs
                .read_all(Path::new(APK_INSTALLED))
                .map_err(io(APK_INSTALLED))?;
            parse_apk(&String::from_utf8_lossy(&text))
        } else {
            return Ok(None);
        };
        Ok(Some(Self::index(fs, pkgs)?))
    }

    fn index(fs: &dyn Rootfs, pkgs: Vec<Pkg>) -> Result<OsPackages, ClosureError> {
        let mut db = OsPackages {
            by_name: HashMap::new(),
            owner: HashMap::new(),
            files: vec![Vec::new(); pkgs.len()],
            dirs: vec![Vec::new(); pkgs.len()],
            dir_owners: HashMap::new(),
            unowned: HashMap::new(),
            unowned_links: Vec::new(),
            pkgs,
        };
        // Parent directories resolved once each.
        let mut parents: HashMap<PathBuf, Option<PathBuf>> = HashMap::new();
        for (i, p) in db.pkgs.iter().enumerate() {
            db.by_name.entry(p.name.clone()).or_default().push(i);
            for v in &p.provides {
                db.by_name.entry(v.clone()).or_default().push(i);
            }
            for l in &p.listed {
                let (Some(parent), Some(name)) = (l.parent(), l.file_name()) else {
                    continue;
                };
                let cp = match parents.get(parent) {
                    Some(c) => c.clone(),
                    None => {
                        let c = resolve(fs, parent, true)?.map(|r| r.path);
                        parents.insert(parent.to_path_buf(), c.clone());
                        c
                    }
                };
                let Some(cp) = cp else { continue };
                let real = cp.join(name);
                match fs.meta(&real) {
                    Ok(Some(m)) if m.kind == Kind::Dir => {
                        db.dirs[i].push(real.clone());
                        db.dir_owners.entry(real).or_default().push(i);
                    }
                    // A directory the package lists that merged /usr made
                    // a link (`/lib`, `/bin`): owning it says nothing.
                    Ok(Some(Meta {
                        kind: Kind::Symlink(_),
                        ..
                    })) if matches!(resolve(fs, &real, true), Ok(Some(r))
                        if matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Dir)) => {}
                    Ok(Some(_)) => {
                        db.files[i].push(real.clone());
                        db.owner.entry(real).or_default().push(i);
                    }
                    _ => {}
                }
            }
        }
        for p in walk_tree(fs, Path::new("/"))? {
            if essentials::RUNTIME_PREFIXES
                .iter()
                .any(|r| p.starts_with(r.trim_end_matches('/')))
                || db.owner.contains_key(&p)
                || db.dir_owners.contains_key(&p)
            {
                continue;
            }
            let kind = fs.meta(&p).ok().flatten().map(|m| m.kind);
            match kind {
                Some(Kind::Dir) | None => continue,
                Some(Kind::Symlink(_)) => db.unowned_links.push(p.clone()),
                Some(_) => {}
            }
            if let Some(anc) = p
                .ancestors()
                .skip(1)
                .find(|a| db.dir_owners.contains_key(*a))
            {
                db.unowned
                    .entry(anc.to_path_buf())
                    .or_default()
                    .push(p.clone());
            }
        }
        Ok(db)
    }

    pub fn names(&self, idx: impl IntoIterator<Item = usize>) -> Vec<String> {
        let mut v: Vec<String> = idx.into_iter().map(|i| self.pkgs[i].name.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Packages owning a kept file or symlink (directories say nothing).
    pub fn owners(&self, kept: &BTreeMap<PathBuf, Reason>) -> BTreeSet<usize> {
        kept.keys()
            .filter_map(|p| self.owner.get(p))
            .flatten()
            .copied()
            .collect()
    }

    /// `used` closed under Depends/Pre-Depends, each added package with
    /// the one that needs it. An alternative already kept wins, then the
    /// first one installed; `Essential: yes` packages come in only when
    /// something of theirs was used.
    pub fn with_depends(&self, used: &BTreeSet<usize>) -> BTreeMap<usize, Option<usize>> {
        let mut out: BTreeMap<usize, Option<usize>> = used.iter().map(|&i| (i, None)).collect();
        let mut queue: VecDeque<usize> = used.iter().copied().collect();
        while let Some(i) = queue.pop_front() {
            for alts in &self.pkgs[i].depends {
                let providers: Vec<usize> = alts
                    .iter()
                    .filter_map(|a| self.by_name.get(a))
                    .flatten()
                    .copied()
                    .collect();
                if providers.iter().any(|p| out.contains_key(p)) {
                    continue;
                }
                let Some(&j) = providers.first() else {
                    continue;
                };
                if self.pkgs[j].essential && !used.contains(&j) {
                    continue;
                }
                out.insert(j, Some(i));
                queue.push_back(j);
            }
        }
        out
    }

    /// The files of the packages owning kept files (and of their
    /// dependencies with `deps`), minus docs, plus what their install made.
    pub fn expand(
        &self,
        fs: &dyn Rootfs,
        kept: &BTreeMap<PathBuf, Reason>,
        deps: bool,
        filter: &Filter,
        done: &mut BTreeSet<String>,
        out: &mut Vec<Unit>,
    ) -> Result<(), ClosureError> {
        let used = self.owners(kept);
        let set = if deps {
            self.with_depends(&used)
        } else {
            used.iter().map(|&i| (i, None)).collect()
        };
        for (&i, via) in &set {
            let name = &self.pkgs[i].name;
            if !done.insert(format!("pkg:{name}")) {
                continue;
            }
            let (reason, unit) = match via {
                None => (Reason::Package, format!("package {name}")),
                Some(by) => (
                    Reason::Dependency,
                    format!("package {name} (Depends of {})", self.pkgs[*by].name),
                ),
            };
            let mut push = |path: &Path, program: bool| {
                if !filter.skip(path) {
                    out.push(Unit {
                        path: path.to_path_buf(),
                        reason,
                        unit: unit.clone(),
                        program,
                    });
                }
            };
            for d in &self.dirs[i] {
                push(d, false);
            }
            for f in &self.files[i] {
                push(f, true);
            }
            // Made at install time (a trust store, hash links), in a
            // directory of this package that no Essential package shares:
            // /etc and /usr/bin belong to everyone.
            for d in &self.dirs[i] {
                let shared = self.dir_owners[d].iter().any(|&o| self.pkgs[o].essential);
                if shared {
                    continue;
                }
                for e in self.unowned.get(d).into_iter().flatten() {
                    push(e, true);
                }
            }
        }
        // Links no package owns that point at a kept file: alternatives.
        for l in &self.unowned_links {
            if done.contains(&format!("link:{}", l.display())) {
                continue;
            }
            let Some(r) = resolve(fs, l, true)? else {
                continue;
            };
            if kept.contains_key(&r.path)
                && !matches!(fs.meta(&r.path), Ok(Some(m)) if m.kind == Kind::Dir)
            {
                done.insert(format!("link:{}", l.display()));
                let owner = self
                    .owner
                    .get(&r.path)
                    .map(|o| self.names(o.iter().copied()).join(", "))
                    .unwrap_or_else(|| "no package".into());
                out.push(Unit {
                    path: l.clone(),
                    reason: Reason::Package,
                    unit: format!("link to {} ({owner})", r.path.display()),
                    program: false,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_relations_and_essential() {
        let status = "Package: git\nStatus: install ok installed\nArchitecture: amd64\n\
            Depends: libc6 (>= 2.34), perl, liberror-perl, git-man (>> 1:2.39)\n\
            Recommends: ca-certificates, patch\nDescription: x\n more\n\n\
            Package: dash\nEssential: yes\nStatus: install ok installed\nArchitecture: amd64\n\
            Pre-Depends: libc6 (>= 2.34)\nProvides: sh\n\n\
            Package: gone\nStatus: deinstall ok config-files\n";
        let p = parse_dpkg_status(status);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0.name, "git");
        assert_eq!(
            p[0].0.depends,
            vec![
                vec!["libc6".to_string()],
                vec!["perl".into()],
                vec!["liberror-perl".into()],
                vec!["git-man".into()]
            ]
        );
        assert!(!p[0].0.essential && p[1].0.essential);
        assert_eq!(p[1].0.provides, vec!["sh"]);
        assert_eq!(p[1].0.depends, vec![vec!["libc6".to_string()]]);
        assert_eq!(
            relations("debconf (>= 0.5) | debconf-2.0, python3:any"),
            vec![
                vec!["debconf".to_string(), "debconf-2.0".into()],
                vec!["python3".into()]
            ]
        );
    }

    #[test]
    fn apk_records() {
        let db = "C:Q1abc\nP:musl\nV:1.2.4\nF:lib\nR:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n\
                  p:so:libc.musl-x86_64.so.1=1\n\n\
                  P:busybox\nD:so:libc.musl-x86_64.so.1 !busybox-extras\nF:bin\nR:busybox\n";
        let p = parse_apk(db);
        assert_eq!(p[0].name, "musl");
        assert_eq!(
            p[0].listed,
            vec![
                PathBuf::from("/lib"),
                "/lib/ld-musl-x86_64.so.1".into(),
                "/lib/libc.musl-x86_64.so.1".into()
            ]
        );
        assert_eq!(p[0].provides, vec!["so:libc.musl-x86_64.so.1"]);
        assert_eq!(
            p[1].depends,
            vec![vec!["so:libc.musl-x86_64.so.1".to_string()]]
        );
    }

    #[test]
    fn diversions_in_threes() {
        let d = parse_diversions("/bin/sh\n/bin/sh.distrib\ndash\n/x\n/x.real\nfoo\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1], ("/x".into(), "/x.real".into(), "foo".into()));
    }
}
