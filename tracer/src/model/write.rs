//! Writing and reading trace files. Writes are atomic: a temporary file in
//! the same directory, fsync'd, then renamed over the target, so a killed
//! `trace` never leaves a half-written trace.
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::trace::{FORMAT_NAME, FORMAT_VERSION, Trace};

#[derive(Debug, Error)]
pub enum TraceFileError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a trace file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} is trace format {found:?} version {version}; this trace reads {FORMAT_NAME:?} versions 1 to {FORMAT_VERSION}"
    )]
    Version {
        path: PathBuf,
        found: String,
        version: u64,
    },
}

/// Writes `contents` to `path` atomically.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), TraceFileError> {
    let err = |source| TraceFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

pub fn to_json(t: &Trace) -> Vec<u8> {
    // Serializing plain owned data with string keys cannot fail.
    let mut v = serde_json::to_vec_pretty(t).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Reads a trace file, rejecting other formats and versions with a clear
/// error before looking at the rest.
pub fn read(path: &Path) -> Result<Trace, TraceFileError> {
    let bytes = fs::read(path).map_err(|source| TraceFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse = |source| TraceFileError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(parse)?;
    let found = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
    let version = v.get("version").and_then(|f| f.as_u64()).unwrap_or(0);
    // Version 1 is a subset of 2 (the fields 2 added are optional).
    if found != FORMAT_NAME || !(1..=u64::from(FORMAT_VERSION)).contains(&version) {
        return Err(TraceFileError::Version {
            path: path.to_path_buf(),
            found: found.to_string(),
            version,
        });
    }
    serde_json::from_value(v).map_err(parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::collect::{Collector, RunInfo};
    use crate::model::trace::{ExitInfo, ScopeInfo};

    fn sample() -> Trace {
        Collector::new().finish(RunInfo {
            command: vec!["true".into()],
            exit: ExitInfo {
                code: 0,
                signal: None,
            },
            scope: ScopeInfo {
                mode: "cgroup".into(),
                cgroup: None,
                leftovers_killed: 0,
                image: None,
                root: None,
                container: None,
                bind_mounts: Vec::new(),
            },
            totals: crate::capture::Totals {
                seen: 1,
                ..Default::default()
            },
        })
    }

    #[test]
    fn round_trip_and_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        let t = sample();
        write_atomic(&p, &to_json(&t)).unwrap();
        assert_eq!(read(&p).unwrap(), t);
        // Only the target is left behind: no temporary file.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("t.json")]);
    }

    #[test]
    fn json_has_documented_top_level_keys() {
        let v: serde_json::Value = serde_json::from_slice(&to_json(&sample())).unwrap();
        for key in [
            "format",
            "version",
            "tool",
            "command",
            "exit",
            "scope",
            "complete",
            "lost_events",
            "counters",
            "execs",
            "files",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["version"], 2);
        assert_eq!(v["format"], "trace");
    }

    #[test]
    fn rejects_wrong_version_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        let mut v: serde_json::Value = serde_json::from_slice(&to_json(&sample())).unwrap();
        v["version"] = 99.into();
        fs::write(&p, v.to_string()).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("version 99"), "{e}");
        fs::write(&p, b"{not json").unwrap();
        assert!(matches!(read(&p), Err(TraceFileError::Parse { .. })));
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("t.json");
        assert!(write_atomic(&p, b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
