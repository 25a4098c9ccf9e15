//! tracefs: making sure it is mounted (aya attaches tracepoints through it)
//! and reading event formats, because tracepoint layouts differ between
//! kernels.
use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

use thiserror::Error;

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
    Mount(std::io::Error),
    #[error("tracepoint {0} does not exist on this kernel")]
    NoEvent(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracepoint {event}: field {field} not found in its format")]
    NoField { event: String, field: String },
    #[error("tracepoint {event} has an unexpected layout: {why}")]
    Layout { event: String, why: String },
}

/// One field line of a tracepoint `format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub decl: String,
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// The tracefs root, mounting tracefs at `/sys/kernel/tracing` if no
/// mounted copy is found.
pub fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    for c in CANDIDATES {
        if Path::new(c).join("events").is_dir() {
            return Ok(PathBuf::from(c));
        }
    }
    let target = CANDIDATES[0];
    let (src, dst, fstype) = (
        CString::new("nodev").unwrap_or_default(),
        CString::new(target).unwrap_or_default(),
        CString::new("tracefs").unwrap_or_default(),
    );
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::Mount(std::io::Error::last_os_error()));
    }
    Ok(PathBuf::from(target))
}

pub fn exists(root: &Path, category: &str, name: &str) -> bool {
    root.join("events").join(category).join(name).is_dir()
}

/// Parses `events/<category>/<name>/format`.
pub fn fields(root: &Path, category: &str, name: &str) -> Result<Vec<Field>, TracefsError> {
    let dir = root.join("events").join(category).join(name);
    if !dir.is_dir() {
        return Err(TracefsError::NoEvent(format!("{category}:{name}")));
    }
    let path = dir.join("format");
    let text = fs::read_to_string(&path).map_err(|source| TracefsError::Read { path, source })?;
    Ok(parse_format(&text))
}

pub fn parse_format(text: &str) -> Vec<Field> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("field:")?;
            let mut parts = line.split(';').map(str::trim);
            let decl = parts.next()?.to_string();
            let offset = parts.next()?.strip_prefix("offset:")?.parse().ok()?;
            let size = parts.next()?.strip_prefix("size:")?.parse().ok()?;
            // The name is the last identifier of the declaration, before
            // any array suffix.
            let name = decl
                .split_whitespace()
                .last()?
                .split('[')
                .next()?
                .trim_start_matches('*')
                .to_string();
            Some(Field {
                decl,
                name,
                offset,
                size,
            })
        })
        .collect()
}

pub fn field<'a>(fields: &'a [Field], event: &str, name: &str) -> Result<&'a Field, TracefsError> {
    fields
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| TracefsError::NoField {
            event: event.to_string(),
            field: name.to_string(),
        })
}

/// The eBPF programs read syscall arguments as 8-byte slots from offset 16
/// and the return value at 16; refuse to attach where that is not so.
pub fn check_syscall_layout(fields: &[Field], event: &str, exit: bool) -> Result<(), TracefsError> {
    let layout = |why: String| TracefsError::Layout {
        event: event.to_string(),
        why,
    };
    let nr = field(fields, event, "__syscall_nr")?;
    if nr.offset != 8 {
        return Err(layout(format!("__syscall_nr at {}", nr.offset)));
    }
    let args: Vec<&Field> = fields.iter().filter(|f| f.offset > 8).collect();
    if exit {
        let ret = field(fields, event, "ret")?;
        if ret.offset != 16 || ret.size != 8 {
            return Err(layout(format!("ret at {} size {}", ret.offset, ret.size)));
        }
        return Ok(());
    }
    for (i, f) in args.iter().enumerate() {
        if f.offset != 16 + 8 * i || f.size != 8 {
            return Err(layout(format!(
                "argument {} ({}) at {} size {}",
                i, f.name, f.offset, f.size
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK: &str = "name: sched_process_fork
ID: 366
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;
";

    const OPENAT: &str = "format:
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
";

    #[test]
    fn parses_data_loc_and_pointer_fields() {
        let f = parse_format(FORK);
        assert_eq!(field(&f, "fork", "child_pid").unwrap().offset, 20);
        assert_eq!(field(&f, "fork", "child_comm").unwrap().size, 4);
        assert!(
            field(&f, "fork", "child_comm")
                .unwrap()
                .decl
                .starts_with("__data_loc")
        );
        let o = parse_format(OPENAT);
        assert_eq!(field(&o, "openat", "filename").unwrap().offset, 24);
        check_syscall_layout(&o, "openat", false).unwrap();
    }

    #[test]
    fn rejects_unexpected_layout() {
        let shifted = OPENAT.replace("offset:24", "offset:28");
        let e = check_syscall_layout(&parse_format(&shifted), "openat", false).unwrap_err();
        assert!(e.to_string().contains("filename"), "{e}");
        assert!(field(&parse_format(FORK), "fork", "nope").is_err());
    }

    #[test]
    fn real_tracefs_formats() {
        let root = ensure_mounted().unwrap();
        let exec = fields(&root, "sched", "sched_process_exec").unwrap();
        assert!(
            field(&exec, "exec", "filename")
                .unwrap()
                .decl
                .starts_with("__data_loc")
        );
        let o = fields(&root, "syscalls", "sys_enter_openat").unwrap();
        check_syscall_layout(&o, "openat", false).unwrap();
        let x = fields(&root, "syscalls", "sys_exit_openat").unwrap();
        check_syscall_layout(&x, "openat", true).unwrap();
    }
}
