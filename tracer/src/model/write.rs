//! Writing and reading trace files. Writes are atomic: a temporary file in
//! the same directory, fsync'd, then renamed over the target, so a killed
//! `trace` never leaves a half-written trace.
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::trace::{FORMAT_NAME, FORMAT_VERSION, FileEntry, Trace};

#[derive(Debug, Error)]
pub enum TraceFileError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a trace file")]
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
    #[error("{path}: files[{index}] {entry:?}: {why}")]
    Entry {
        path: PathBuf,
        index: usize,
        entry: String,
        why: super::trace::PathError,
    },
}

/// Test hook: when writing a file (trace, image) of this name, stop for
/// good once its temporary copy is there, so a test can kill `trace`
/// while it writes.
const STALL_WRITE_ENV: &str = "TRACE_DEBUG_STALL_WRITE";

pub fn stall_for_tests(path: &Path) {
    if std::env::var_os(STALL_WRITE_ENV).is_some_and(|v| path.file_name() == Some(&v)) {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// Writes `contents` to `path` atomically.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), TraceFileError> {
    write_atomic_with(path, |w| w.write_all(contents))
}

/// Writes what `fill` writes to `path` atomically: all of it or nothing.
///
/// What is there already decides how. A device, FIFO or terminal
/// (`/dev/null`, `/dev/stdout` on a pipe) is written into: a rename would
/// replace the node itself. A symlink to a regular file keeps the link;
/// the file it names is replaced.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), TraceFileError> {
    let err = |source| TraceFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let target = fs::metadata(path).ok();
    if let Some(meta) = &target
        && !meta.is_file()
        && !meta.is_dir()
    {
        // Written into as it is.
        return fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| filled(f, fill))
            .map(drop)
            .map_err(err);
    }
    let resolved;
    let path = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() && target.is_some() => {
            resolved = fs::canonicalize(path).map_err(err)?;
            resolved.as_path()
        }
        _ => path,
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
        let file = fs::File::create(&tmp)?;
        crate::runtime::leftovers::record_path(&tmp);
        stall_for_tests(path);
        let f = filled(file, fill)?;
        crate::timing::mark("  trace serialized");
        f.sync_all()?;
        crate::timing::mark("  trace synced");
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// What `fill` writes, into `file` through one large buffer; the file
/// back, everything handed to it.
fn filled(
    file: fs::File,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<fs::File> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    fill(&mut w)?;
    w.into_inner().map_err(|e| e.into_error())
}

pub fn to_json(t: &Trace) -> Vec<u8> {
    // Serializing plain owned data with string keys cannot fail.
    let mut v = serde_json::to_vec_pretty(t).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Writes `t` to `path` atomically, exactly as [`to_json`] gives it but
/// serialized straight into the file (a million-file trace is some
/// 200 MB of JSON, not worth holding).
pub fn write_trace(path: &Path, t: &Trace) -> Result<(), TraceFileError> {
    write_atomic_with(path, |w| {
        serde_json::to_writer_pretty(&mut *w, t).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}

/// Writes `t` exactly as [`to_json`] would if its `files` were `files`,
/// one entry at a time: a trace of a million files is never held whole.
/// `t.files` itself must be empty.
pub fn write_json_streamed(
    w: &mut dyn Write,
    t: &Trace,
    files: impl Iterator<Item = std::io::Result<FileEntry>>,
) -> std::io::Result<()> {
    // Top-level keys are the only lines indented by two spaces (strings
    // hold no raw newline), so this marker is the files array.
    const MARKER: &[u8] = b"\n  \"files\": []";
    let head = to_json(t);
    let at = head
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .filter(|_| t.files.is_empty())
        .ok_or_else(|| std::io::Error::other("streamed trace must have no files of its own"))?;
    let files_key = at + MARKER.len() - 2;
    w.write_all(&head[..files_key])?;
    let mut first = true;
    let mut entry = Vec::new();
    for f in files {
        let f = f?;
        w.write_all(if first { b"[\n    " } else { b",\n    " })?;
        first = false;
        // Serialized already at its depth into a buffer kept across
        // entries (a Vec takes serde_json's many small writes inline; the
        // output behind `dyn Write` gets one per entry).
        entry.clear();
        let mut ser = serde_json::Serializer::with_formatter(&mut entry, Nested::at(2));
        serde::Serialize::serialize(&f, &mut ser).map_err(std::io::Error::other)?;
        w.write_all(&entry)?;
    }
    w.write_all(if first { b"[]" } else { b"\n  ]" })?;
    w.write_all(&head[files_key + 2..])
}

/// serde_json's pretty layout (two spaces a level) for a value that sits
/// `depth` levels deep in the document.
struct Nested {
    depth: usize,
    has_value: bool,
}

impl Nested {
    fn at(depth: usize) -> Nested {
        Nested {
            depth,
            has_value: false,
        }
    }

    fn indent<W: ?Sized + Write>(&self, w: &mut W) -> std::io::Result<()> {
        const SPACES: &[u8; 64] = &[b' '; 64];
        let mut n = self.depth * 2;
        while n > 0 {
            let k = n.min(SPACES.len());
            w.write_all(&SPACES[..k])?;
            n -= k;
        }
        Ok(())
    }

    fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            self.indent(w)?;
        }
        w.write_all(bracket)
    }

    fn item<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(w)
    }
}

impl serde_json::ser::Formatter for Nested {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Just the fields that say which format a file is.
#[derive(serde::Deserialize)]
struct Header {
    #[serde(default)]
    format: String,
    #[serde(default)]
    version: u64,
}

/// Reads a trace file, rejecting other formats and versions with a clear
/// error, and any entry whose path is not a canonical absolute path (a
/// trace is input: `..` or a NUL in it would name a file it never used).
/// The file is parsed straight from a buffered reader into the typed trace:
/// neither the bytes nor a JSON tree of a million-file trace are held.
pub fn read(path: &Path) -> Result<Trace, TraceFileError> {
    read_with(path, || {
        fs::File::open(path)
            .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(|source| TraceFileError::Read {
                path: path.to_path_buf(),
                source,
            })
    })
}

/// [`read`] of a trace held in memory, checked the same way; errors name
/// it `<bytes>`. For the fuzz targets, which have no file.
pub fn from_slice(bytes: &[u8]) -> Result<Trace, TraceFileError> {
    read_with(Path::new("<bytes>"), || Ok(bytes))
}

/// The reader behind [`read`] and [`from_slice`]: `open` gives a fresh
/// reader from the start each time (a failed parse reads the header again).
fn read_with<R: std::io::Read>(
    path: &Path,
    open: impl Fn() -> Result<R, TraceFileError>,
) -> Result<Trace, TraceFileError> {
    let parse = |source: serde_json::Error| {
        if source.is_io() {
            TraceFileError::Read {
                path: path.to_path_buf(),
                source: source.into(),
            }
        } else {
            TraceFileError::Parse {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let version_error = |found: &str, version: u64| {
        // Version 1 is a subset of 2 (the fields 2 added are optional).
        (found != FORMAT_NAME || !(1..=u64::from(FORMAT_VERSION)).contains(&version)).then(|| {
            TraceFileError::Version {
                path: path.to_path_buf(),
                found: found.to_string(),
                version,
            }
        })
    };
    let trace: Trace = match serde_json::from_reader(open()?) {
        Ok(t) => t,
        // Another format or version need not parse as this one: say which
        // it is rather than what failed to parse.
        Err(e) => {
            let h: Header = serde_json::from_reader(open()?).map_err(parse)?;
            return Err(version_error(&h.format, h.version).unwrap_or_else(|| parse(e)));
        }
    };
    if let Some(e) = version_error(&trace.format, u64::from(trace.version)) {
        return Err(e);
    }
    for (index, f) in trace.files.iter().enumerate() {
        f.check().map_err(|why| TraceFileError::Entry {
            path: path.to_path_buf(),
            index,
            entry: f.path.clone(),
            why,
        })?;
    }
    Ok(trace)
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
        let q = dir.path().join("u.json");
        write_trace(&q, &t).unwrap();
        assert_eq!(fs::read(&q).unwrap(), to_json(&t));
        fs::remove_file(&q).unwrap();
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
    fn refuses_entries_with_bad_paths() {
        use crate::model::trace::{Access, Op};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        let bad = |path: &str, hex: Option<&str>, requested: Option<(&str, Option<&str>)>| {
            let mut t = sample();
            t.files = vec![
                FileEntry {
                    path: "/ok".into(),
                    path_hex: None,
                    truncated: false,
                    accesses: vec![Access::new(Op::Stat, "stat")],
                    seen_in: Vec::new(),
                },
                FileEntry {
                    path: path.into(),
                    path_hex: hex.map(Into::into),
                    truncated: false,
                    accesses: vec![Access {
                        requested: requested.map(|r| r.0.into()),
                        requested_hex: requested.and_then(|r| r.1).map(Into::into),
                        ..Access::new(Op::Stat, "stat")
                    }],
                    seen_in: Vec::new(),
                },
            ];
            write_atomic(&p, &to_json(&t)).unwrap();
            read(&p).map(|_| ()).map_err(|e| {
                e.to_string()
                    .strip_prefix(&format!("{}: ", p.display()))
                    .unwrap()
                    .to_string()
            })
        };
        let u = "/a/\u{fffd}";
        for (path, hex, req, want) in [
            (
                "/etc/../shadow",
                None,
                None,
                r#"files[1] "/etc/../shadow": path has a ".." component"#,
            ),
            (
                "etc/passwd",
                None,
                None,
                r#"files[1] "etc/passwd": path is not absolute"#,
            ),
            (
                "/etc//passwd",
                None,
                None,
                r#"files[1] "/etc//passwd": path has an empty component"#,
            ),
            (
                "/etc/",
                None,
                None,
                r#"files[1] "/etc/": path has an empty component"#,
            ),
            (
                "/etc/./x",
                None,
                None,
                r#"files[1] "/etc/./x": path has a "." component"#,
            ),
            (
                "/a\0b",
                None,
                None,
                r#"files[1] "/a\0b": path has a NUL byte"#,
            ),
            (
                u,
                Some("2f612fzz"),
                None,
                "files[1] \"/a/\u{fffd}\": path_hex \"2f612fzz\" is not hex",
            ),
            (
                u,
                Some("2f612fff0"),
                None,
                "files[1] \"/a/\u{fffd}\": path_hex \"2f612fff0\" has an odd length",
            ),
            (
                u,
                Some("2f612f00ff"),
                None,
                "files[1] \"/a/\u{fffd}\": path_hex has a NUL byte",
            ),
            (
                u,
                Some("2f612e2e2fff"),
                None,
                "files[1] \"/a/\u{fffd}\": path_hex is not the bytes of path",
            ),
            (
                "/a/../\u{fffd}",
                Some("2f612f2e2e2fff"),
                None,
                "files[1] \"/a/../\u{fffd}\": path_hex has a \"..\" component",
            ),
            (
                u,
                Some("2f622fff"),
                None,
                "files[1] \"/a/\u{fffd}\": path_hex is not the bytes of path",
            ),
            (
                "/x",
                None,
                Some(("x/../y", None)),
                r#"files[1] "/x": requested path is not absolute"#,
            ),
            (
                "/x",
                None,
                Some(("/x", Some("2f7"))),
                r#"files[1] "/x": requested_hex "2f7" has an odd length"#,
            ),
        ] {
            assert_eq!(bad(path, hex, req), Err(want.to_string()), "{path}");
        }
        // Valid non-UTF-8 names and requests with `..` are kept.
        assert_eq!(bad(u, Some("2f612fff"), Some(("/b/../x", None))), Ok(()));
        assert_eq!(bad("/", None, None), Ok(()));
    }

    #[test]
    fn streamed_json_is_byte_for_byte_the_whole_json() {
        use crate::model::trace::{Access, Op};
        let entry = |p: &str, n: usize| FileEntry {
            path: p.into(),
            path_hex: None,
            truncated: n == 2,
            accesses: (0..n)
                .map(|i| Access {
                    raw: Some(format!("a\nb\"{i}").into()),
                    ..Access::new(Op::Stat, "stat")
                })
                .collect(),
            seen_in: if n == 2 {
                vec!["a.json".into(), "b.json".into()]
            } else {
                Vec::new()
            },
        };
        for files in [
            vec![],
            vec![entry("/a", 1)],
            vec![entry("/a", 1), entry("/b\n  \"files\": []", 2)],
        ] {
            let mut whole = sample();
            whole.files = files.clone();
            let mut streamed = Vec::new();
            write_json_streamed(&mut streamed, &sample(), files.into_iter().map(Ok)).unwrap();
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(to_json(&whole)).unwrap()
            );
        }
        let mut with_files = sample();
        with_files.files = vec![entry("/a", 1)];
        assert!(write_json_streamed(&mut Vec::new(), &with_files, std::iter::empty()).is_err());
    }

    #[test]
    fn a_failing_stream_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        let t = sample();
        let files = std::iter::once(Err(std::io::Error::other("spill gone")));
        let e = write_atomic_with(&p, |w| write_json_streamed(w, &t, files)).unwrap_err();
        let e = format!("{:#}", anyhow::Error::from(e));
        assert!(e.contains("spill gone"), "{e}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_fifo_is_written_into_and_stays_a_fifo() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RWXU).unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(&fifo).unwrap())
        };
        write_atomic(&fifo, b"through the pipe").unwrap();
        // Checked first: had it been renamed over, the reader would wait on.
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        // Nothing was left beside it.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_is_kept_and_the_file_it_names_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("t.json");
        assert!(write_atomic(&p, b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
