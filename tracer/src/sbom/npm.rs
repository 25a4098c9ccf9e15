//! npm packages from kept `node_modules/<name>/package.json` (and
//! `node_modules/@scope/<name>/package.json`); each owns the files in its
//! directory outside nested `node_modules`.
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    SbomError,
    collect::View,
    model::{Ecosystem, Package},
    purl,
};

/// The package directory when `p` is a package's own manifest.
fn package_dir(p: &Path) -> Option<&Path> {
    if p.file_name()? != "package.json" {
        return None;
    }
    let dir = p.parent()?;
    let up = dir.parent()?;
    let scoped = up.file_name()?.to_string_lossy().starts_with('@');
    let modules = if scoped { up.parent()? } else { up };
    (modules.file_name()? == "node_modules").then_some(dir)
}

fn person(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("name")?.as_str().map(str::to_string),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

pub fn packages(view: &View) -> Result<Vec<Package>, SbomError> {
    let mut out = Vec::new();
    for manifest in view.paths.iter().filter(|p| package_dir(p).is_some()) {
        let Some(dir) = package_dir(manifest) else {
            continue;
        };
        let Some(bytes) = view.read(manifest)? else {
            continue;
        };
        let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let (Some(full), Some(version)) = (
            json.get("name").and_then(Value::as_str),
            json.get("version").and_then(Value::as_str),
        ) else {
            continue;
        };
        let (ns, name) = match full.split_once('/') {
            Some((ns, n)) if ns.starts_with('@') => (Some(ns), n),
            _ => (None, full),
        };
        let license = match json.get("license") {
            Some(Value::String(s)) if !s.is_empty() && s != "UNLICENSED" => Some(s.clone()),
            Some(Value::Object(o)) => o.get("type").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        let nested = dir.join("node_modules");
        let present: Vec<PathBuf> = view
            .files_under(dir)
            .filter(|p| !p.starts_with(&nested))
            .cloned()
            .collect();
        out.push(Package {
            ecosystem: Ecosystem::Npm,
            purl: purl::build("npm", ns, name, version, &[]),
            name: full.to_string(),
            version: version.to_string(),
            arch: None,
            license,
            supplier: json.get("author").and_then(person),
            source: dir.to_path_buf(),
            present,
            // npm records no file list: what is missing is unknown.
            absent: 0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_recognized() {
        assert_eq!(
            package_dir(Path::new("/app/node_modules/left-pad/package.json")),
            Some(Path::new("/app/node_modules/left-pad"))
        );
        assert_eq!(
            package_dir(Path::new("/app/node_modules/@types/node/package.json")),
            Some(Path::new("/app/node_modules/@types/node"))
        );
        assert_eq!(package_dir(Path::new("/app/package.json")), None);
        assert_eq!(
            package_dir(Path::new("/app/node_modules/x/lib/package.json")),
            None
        );
    }
}
