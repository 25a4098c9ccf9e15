//! Folding decoded events into a [`Trace`].
use std::collections::{BTreeMap, BTreeSet};

use tracer_common::{Syscall, flags};

use super::{
    path::resolve,
    trace::{
        Access, Counters, Exec, ExitInfo, FORMAT_NAME, FORMAT_VERSION, FileEntry, LostEvents, Op,
        OpenMode, ScopeInfo, Trace, errno_name,
    },
};
use crate::capture::decode::{Event, syscall_is_exec};

const O_ACCMODE: u64 = 0o3;
const O_WRONLY: u64 = 0o1;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;
const O_NOFOLLOW: u64 = 0o400000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;

/// What makes two execs the same: the program and its command line.
type ExecKey = (String, String, Option<String>, Vec<String>);

#[derive(Default)]
struct FileAcc {
    accesses: BTreeSet<Access>,
    truncated: bool,
}

/// Everything userspace learned during a run, before the run's metadata
/// is known.
#[derive(Default)]
pub struct Collector {
    files: BTreeMap<Vec<u8>, FileAcc>,
    execs: BTreeMap<ExecKey, Exec>,
    counters: Counters,
}

/// What the run itself tells, added when the trace is finished.
pub struct RunInfo {
    pub command: Vec<String>,
    pub exit: ExitInfo,
    pub scope: ScopeInfo,
    pub lost: LostEvents,
    pub syscalls_seen: u64,
    pub deduplicated_in_kernel: u64,
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn op_of(s: Syscall) -> Op {
    match s {
        Syscall::Open | Syscall::Openat | Syscall::Openat2 | Syscall::Creat => Op::Open,
        Syscall::Stat | Syscall::Lstat | Syscall::Newfstatat | Syscall::Statx => Op::Stat,
        Syscall::Access | Syscall::Faccessat | Syscall::Faccessat2 => Op::Access,
        Syscall::Readlink | Syscall::Readlinkat => Op::Readlink,
        Syscall::Chdir | Syscall::Fchdir => Op::Chdir,
        Syscall::Execve | Syscall::Execveat => Op::Exec,
    }
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    pub fn malformed_record(&mut self) {
        self.counters.malformed_records += 1;
    }

    pub fn add(&mut self, e: Event) {
        self.counters.records += 1;
        if e.syscall != Syscall::Fchdir && e.raw.is_none() {
            self.counters.unreadable_paths += 1;
            return;
        }
        if e.has(flags::BAD_DIRFD) {
            self.counters.unresolved_paths += 1;
            return;
        }
        let raw = e.raw.clone().unwrap_or_default();
        let path = resolve(&raw, e.base.as_deref());
        let truncated = e.truncated();
        if truncated {
            self.counters.truncated_paths += 1;
        }
        let op = op_of(e.syscall);
        let (result, errno) = if e.ret < 0 {
            let n = (-e.ret) as i32;
            (errno_name(n), Some(n))
        } else {
            ("ok".to_string(), None)
        };
        let f = e.arg_flags;
        let mode = (op == Op::Open).then_some(match f & O_ACCMODE {
            O_WRONLY => OpenMode::Write,
            O_RDWR => OpenMode::ReadWrite,
            _ => OpenMode::Read,
        });
        let nofollow = match op {
            Op::Open => f & O_NOFOLLOW != 0,
            Op::Stat => f & AT_SYMLINK_NOFOLLOW != 0,
            _ => false,
        };
        let access = Access {
            op,
            syscall: e.syscall.name().to_string(),
            mode,
            create: op == Op::Open && f & O_CREAT != 0,
            nofollow,
            exe: false,
            result,
            errno,
            raw: (e.syscall != Syscall::Fchdir).then(|| text(&raw)),
        };
        if syscall_is_exec(e.syscall) && e.ret == 0 {
            self.add_exec(&e, &path, &raw, &access);
        }
        let entry = self.files.entry(path).or_default();
        entry.truncated |= truncated;
        entry.accesses.insert(access);
    }

    fn add_exec(&mut self, e: &Event, path: &[u8], raw: &[u8], access: &Access) {
        let argv = e.argv.clone().unwrap_or_default();
        let exec = Exec {
            path: text(path),
            raw: text(raw),
            exe: e.exe.as_deref().map(text),
            argv: argv.iter().map(|a| text(a)).collect(),
            argv_truncated: e.has(flags::ARGV_TRUNCATED),
            pid: e.pid,
            comm: text(&e.comm),
        };
        // The same command line run again (a loop, a long attach) is one
        // entry, with the first pid that ran it.
        let key = (
            exec.path.clone(),
            exec.raw.clone(),
            exec.exe.clone(),
            exec.argv.clone(),
        );
        self.execs.entry(key).or_insert(exec);
        if let Some(exe) = &e.exe
            && exe.as_slice() != path
        {
            let mut a = access.clone();
            a.exe = true;
            a.raw = None;
            let entry = self.files.entry(exe.clone()).or_default();
            entry.truncated |= e.has(flags::EXE_TRUNCATED);
            entry.accesses.insert(a);
        }
    }

    pub fn finish(self, run: RunInfo) -> Trace {
        let mut counters = self.counters;
        counters.syscalls_seen = run.syscalls_seen;
        counters.deduplicated_in_kernel = run.deduplicated_in_kernel;
        let files: Vec<FileEntry> = self
            .files
            .into_iter()
            .map(|(path, acc)| {
                let path_hex = std::str::from_utf8(&path)
                    .is_err()
                    .then(|| path.iter().map(|b| format!("{b:02x}")).collect());
                FileEntry {
                    path: text(&path),
                    path_hex,
                    truncated: acc.truncated,
                    accesses: acc.accesses.into_iter().collect(),
                    seen_in: Vec::new(),
                }
            })
            .collect();
        let any_truncated = files.iter().any(|f| f.truncated);
        Trace {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            tool: format!("trace {}", env!("CARGO_PKG_VERSION")),
            command: run.command,
            exit: run.exit,
            scope: run.scope,
            complete: run.lost.total == 0 && !any_truncated,
            lost_events: run.lost,
            counters,
            syscalls: None,
            merged_from: Vec::new(),
            execs: self.execs.into_values().collect(),
            files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::decode::tests::{header, record};

    fn ev(s: Syscall, ret: i64, fl: u16, parts: [&[u8]; 4], arg_flags: u64) -> Event {
        let mut h = header(s, ret, fl);
        h.arg_flags = arg_flags;
        Event::decode(&record(h, parts)).unwrap()
    }

    fn run_info() -> RunInfo {
        RunInfo {
            command: vec!["x".into()],
            exit: ExitInfo::default(),
            scope: ScopeInfo::default(),
            lost: LostEvents::default(),
            syscalls_seen: 0,
            deduplicated_in_kernel: 0,
        }
    }

    #[test]
    fn relative_open_is_absolute_and_mode_is_kept() {
        let mut c = Collector::new();
        c.add(ev(
            Syscall::Openat,
            3,
            flags::HAS_BASE,
            [b"../out.txt", b"w\0tmp\0", b"", b""],
            0o1101,
        ));
        let t = c.finish(run_info());
        assert_eq!(t.files.len(), 1);
        let f = &t.files[0];
        assert_eq!(f.path, "/tmp/out.txt");
        assert_eq!(f.accesses[0].mode, Some(OpenMode::Write));
        assert!(f.accesses[0].create);
        assert_eq!(f.accesses[0].raw.as_deref(), Some("../out.txt"));
        assert!(f.written());
        assert!(t.complete);
    }

    #[test]
    fn failed_lookup_and_exec_interpreter() {
        let mut c = Collector::new();
        c.add(ev(Syscall::Stat, -2, 0, [b"/nope", b"", b"", b""], 0));
        c.add(ev(
            Syscall::Execve,
            0,
            flags::HAS_EXE,
            [b"/tmp/s.sh", b"", b"dash\0bin\0usr\0", b"/tmp/s.sh\0a\0"],
            0,
        ));
        let t = c.finish(run_info());
        let nope = t.files.iter().find(|f| f.path == "/nope").unwrap();
        assert!(nope.failed_only());
        assert_eq!(nope.accesses[0].result, "ENOENT");
        assert_eq!(nope.accesses[0].errno, Some(2));
        let dash = t.files.iter().find(|f| f.path == "/usr/bin/dash").unwrap();
        assert!(dash.accesses[0].exe);
        assert_eq!(t.execs[0].argv, vec!["/tmp/s.sh", "a"]);
        assert_eq!(t.execs[0].exe.as_deref(), Some("/usr/bin/dash"));
    }

    #[test]
    fn truncation_makes_trace_incomplete() {
        let mut c = Collector::new();
        c.add(ev(
            Syscall::Open,
            -36,
            flags::RAW_TRUNCATED,
            [b"/very/long", b"", b"", b""],
            0,
        ));
        let t = c.finish(run_info());
        assert!(t.files[0].truncated);
        assert_eq!(t.counters.truncated_paths, 1);
        assert!(!t.complete);
    }

    #[test]
    fn a_command_line_run_twice_is_one_exec() {
        let mut c = Collector::new();
        for pid in [10, 11] {
            let mut h = header(Syscall::Execve, 0, flags::HAS_EXE);
            h.pid = pid;
            c.add(
                Event::decode(&record(h, [b"/bin/cat", b"", b"cat\0bin\0", b"cat\0x\0"])).unwrap(),
            );
        }
        c.add(ev(
            Syscall::Execve,
            0,
            flags::HAS_EXE,
            [b"/bin/cat", b"", b"cat\0bin\0", b"cat\0y\0"],
            0,
        ));
        let t = c.finish(run_info());
        assert_eq!(t.execs.len(), 2);
        assert_eq!(t.execs[0].pid, 10);
    }

    #[test]
    fn same_access_twice_is_one_entry() {
        let mut c = Collector::new();
        for _ in 0..3 {
            c.add(ev(Syscall::Open, 3, 0, [b"/etc/passwd", b"", b"", b""], 0));
        }
        let t = c.finish(run_info());
        assert_eq!(t.files.len(), 1);
        assert_eq!(t.files[0].accesses.len(), 1);
        assert_eq!(t.counters.records, 3);
    }
}
