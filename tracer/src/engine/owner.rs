//! Which `trace` process owns a container or a temporary image in an
//! engine: `<pid>-<start time>` (the start time in clock ticks since boot,
//! from /proc), so a later run can tell a dead owner from a live one even
//! when the pid has been reused.

/// Label put on every container `trace` starts in an engine.
pub const LABEL: &str = "io.github.trace-rs.owner";
/// Repository of the images `trace` loads into an engine for a run only.
pub const TEMP_REPO: &str = "localhost/trace-tmp";

/// The start time of `pid` (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<u64> {
    crate::runtime::proc_stat::read(pid).map(|s| s.start_ticks)
}

/// This process's token.
pub fn token() -> String {
    token_of(std::process::id())
}

/// The token of process `pid`.
pub fn token_of(pid: u32) -> String {
    format!("{pid}-{}", start_time(pid).unwrap_or(0))
}

/// Whether the process a token names is still running.
pub fn alive(token: &str) -> bool {
    let Some((pid, start)) = token.split_once('-') else {
        // Not ours: never touch it.
        return true;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return true;
    };
    start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_token_is_alive_a_dead_one_is_not() {
        assert!(alive(&token()));
        let pid = std::process::id();
        assert!(!alive(&format!("{pid}-1")));
        assert!(alive("not-a-token"));
        assert!(alive("garbage"));
    }
}
