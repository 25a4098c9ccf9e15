//! A container-structure-test config (schema 2.0.0) that pins a minimal
//! image down: what it must have (the executables and files the run used,
//! with their permissions), what it must not (shells, package managers
//! and tools the run never used), and its metadata. Typed, and written
//! with a YAML serializer, so a name can never break the document.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    closure::{Kept, Reason},
    model::trace::{Op, Trace},
    source::rootfs::{Kind, Rootfs},
};

/// Tools a minimal image should not carry unless the run used them.
const UNWANTED: &[&str] = &[
    "/bin/sh",
    "/bin/bash",
    "/bin/dash",
    "/usr/bin/sh",
    "/usr/bin/bash",
    "/usr/bin/dash",
    "/usr/bin/apt",
    "/usr/bin/apt-get",
    "/usr/bin/dpkg",
    "/usr/bin/perl",
    "/usr/bin/curl",
    "/usr/bin/wget",
    "/usr/bin/su",
    "/usr/bin/passwd",
];

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StructureTest {
    pub schema_version: String,
    pub file_existence_tests: Vec<FileExistence>,
    pub metadata_test: Metadata,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileExistence {
    pub name: String,
    pub path: String,
    pub should_exist: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_vars: Vec<EnvVar>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct EnvVar {
    pub key: String,
    pub value: String,
}

/// The config, and the paths left out because the YAML document (UTF-8
/// strings) cannot name them.
pub struct Built {
    pub doc: StructureTest,
    pub unnamed: Vec<PathBuf>,
}

/// `-rwxr-xr-x`, `urwxr-xr-x` for setuid: Go's FileMode string, which
/// container-structure-test compares against.
fn go_mode(mode: u32) -> String {
    let mut s = String::new();
    for (bit, c) in [(0o4000, 'u'), (0o2000, 'g'), (0o1000, 't')] {
        if mode & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (0o400 >> i) != 0 { c } else { '-' });
    }
    s
}

/// The config for the image built from `fs` and `trace` (`kept` is their
/// closure).
pub fn build(
    fs: &dyn Rootfs,
    trace: &Trace,
    kept: &Kept,
    config: Option<&oci_spec::image::Config>,
) -> Built {
    let mut must: BTreeSet<PathBuf> = BTreeSet::new();
    // What the run executed, and the regular files it used.
    for e in &trace.execs {
        must.insert(PathBuf::from(e.exe.as_deref().unwrap_or(&e.path)));
    }
    for f in &trace.files {
        if f.accesses.iter().any(|a| a.ok() && a.op == Op::Open) {
            must.insert(PathBuf::from(&f.path));
        }
    }
    let mut tests = Vec::new();
    let mut unnamed = Vec::new();
    for p in &must {
        if kept.paths.get(p) != Some(&Reason::Traced) {
            continue;
        }
        let Ok(Some(m)) = fs.meta(p) else { continue };
        if m.kind != Kind::Regular {
            continue;
        }
        let Some(path) = p.to_str() else {
            unnamed.push(p.clone());
            continue;
        };
        tests.push(FileExistence {
            name: format!("kept {}", tests.len() + 1),
            path: path.to_string(),
            should_exist: true,
            permissions: Some(go_mode(m.mode)),
        });
    }
    for u in UNWANTED {
        let p = Path::new(u);
        if kept.paths.contains_key(p) || !matches!(fs.meta(p), Ok(Some(_))) {
            continue;
        }
        tests.push(FileExistence {
            name: format!("absent {}", tests.len() + 1),
            path: u.to_string(),
            should_exist: false,
            permissions: None,
        });
    }
    Built {
        doc: StructureTest {
            schema_version: "2.0.0".into(),
            file_existence_tests: tests,
            metadata_test: config.map(metadata).unwrap_or_default(),
        },
        unnamed,
    }
}

fn metadata(c: &oci_spec::image::Config) -> Metadata {
    let nonempty = |s: &Option<String>| s.as_ref().filter(|s| !s.is_empty()).cloned();
    Metadata {
        env_vars: c
            .env()
            .iter()
            .flatten()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| EnvVar {
                key: k.into(),
                value: v.into(),
            })
            .collect(),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        workdir: nonempty(c.working_dir()),
        user: nonempty(c.user()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_modes() {
        assert_eq!(go_mode(0o755), "-rwxr-xr-x");
        assert_eq!(go_mode(0o4755), "urwxr-xr-x");
        assert_eq!(go_mode(0o644), "-rw-r--r--");
        assert_eq!(go_mode(0o1777), "trwxrwxrwx");
        assert_eq!(go_mode(0o6755), "ugrwxr-xr-x");
    }

    /// Names with YAML syntax, quotes and newlines come back as they went.
    #[test]
    fn hostile_names_round_trip() {
        let doc = StructureTest {
            schema_version: "2.0.0".into(),
            file_existence_tests: vec![FileExistence {
                name: "kept 1".into(),
                path: "/a: b\n- path: /etc/shadow\n\"#".into(),
                should_exist: true,
                permissions: Some("-rw-r--r--".into()),
            }],
            metadata_test: Metadata {
                env_vars: vec![EnvVar {
                    key: "K".into(),
                    value: "{x: [y]}".into(),
                }],
                entrypoint: vec!["yes".into(), "no".into()],
                ..Default::default()
            },
        };
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        let back: StructureTest = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, doc);
    }
}
