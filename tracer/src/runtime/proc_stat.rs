//! `/proc/PID/stat`, read as bytes: the command name in it is whatever the
//! process set (`prctl(PR_SET_NAME)`, its file name), any bytes at all,
//! spaces and parentheses included. Read as text, a name that is not UTF-8
//! hid the process: `trace attach` did not follow it, and a pid's owner
//! could not be told from a reused pid.
use std::fs;

/// The fields of a process's stat line that `trace` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub ppid: u32,
    /// Clock ticks since boot (field 22).
    pub start_ticks: u64,
}

/// The stat line of `pid`, if it is still there.
pub fn read(pid: u32) -> Option<ProcStat> {
    parse(&fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// Fields resume after the last ')': the name ends there.
pub fn parse(line: &[u8]) -> Option<ProcStat> {
    let end = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(line.get(end + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3), ppid (4), ... starttime (22).
    let ppid = fields.nth(1)?.parse().ok()?;
    let start_ticks = fields.nth(17)?.parse().ok()?;
    Some(ProcStat { ppid, start_ticks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_any_bytes() {
        let tail = b" S 41 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 ...\n";
        for name in [&b"(cat)"[..], b"(a) b (c))", b"(\xff\xfe x)", b"()"] {
            let mut line = b"4242 ".to_vec();
            line.extend_from_slice(name);
            line.extend_from_slice(tail);
            assert_eq!(
                parse(&line),
                Some(ProcStat {
                    ppid: 41,
                    start_ticks: 123456
                }),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
        assert_eq!(parse(b"4242 (cat) S 41"), None);
        assert_eq!(parse(b"garbage"), None);
        let own = read(std::process::id()).unwrap();
        assert_eq!(own.ppid, std::os::unix::process::parent_id());
        assert!(own.start_ticks > 0);
    }
}
