//! Profiling hook: with `TRACE_DEBUG_TIMING=1`, each phase of a run says
//! how long it took since the process started, on stderr.
use std::{sync::OnceLock, time::Instant};

fn start() -> &'static Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now)
}

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TRACE_DEBUG_TIMING").is_some())
}

/// Starts the clock (call first thing in main).
pub fn init() {
    let _ = start();
    let _ = enabled();
}

/// Notes that `phase` just ended.
pub fn mark(phase: &str) {
    if enabled() {
        eprintln!(
            "trace: timing: {:>8.2} ms  {phase}",
            start().elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Like `mark`, for a phase whose name is only worth building when timing.
pub fn mark_with(phase: impl FnOnce() -> String) {
    if enabled() {
        mark(&phase());
    }
}
