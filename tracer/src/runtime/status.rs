//! Exit statuses, shell style.
use std::process::ExitStatus;

use crate::model::trace::ExitInfo;

/// Command not found, as in sh.
pub const NOT_FOUND: i32 = 127;
/// Found but not executable.
pub const NOT_EXECUTABLE: i32 = 126;
/// `trace` itself failed (as `env`, `timeout` and docker use it).
pub const TRACE_FAILED: i32 = 125;

pub fn from_status(s: ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => ExitInfo { code, signal: None },
        (None, Some(sig)) => ExitInfo {
            code: 128 + sig,
            signal: Some(sig),
        },
        (None, None) => ExitInfo {
            code: TRACE_FAILED,
            signal: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn codes_and_signals() {
        assert_eq!(from_status(ExitStatus::from_raw(3 << 8)).code, 3);
        let killed = from_status(ExitStatus::from_raw(libc::SIGKILL));
        assert_eq!(killed.code, 137);
        assert_eq!(killed.signal, Some(9));
    }
}
