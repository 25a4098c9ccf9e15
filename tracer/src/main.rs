//! The `trace` binary: parse arguments, run a subcommand, turn any error
//! into one line on stderr and exit status 125.
use clap::Parser;
use tracer::{
    cli::Cli,
    runtime::{leftovers, status::TRACE_FAILED},
};

fn main() {
    tracer::timing::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => bad_arguments(e),
    };
    tracer::source::decompress::set_limits(cli.limits.limits());
    tracer::cache::set_enabled(!cli.no_cache);
    // Every command that may make cgroups, containers or temporary files
    // records its own (and a supervisor removes them if this process is
    // killed), and removes what killed runs left while it works. Before
    // any thread exists: the supervisor is forked.
    if cli.command.makes_leftovers() {
        if let Err(e) = leftovers::init(true) {
            eprintln!("trace: error: {}", with_causes(&e));
            std::process::exit(TRACE_FAILED);
        }
        leftovers::sweep_stale_in_background();
        tracer::timing::mark("supervisor started, stale state being swept");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trace: error: cannot start the async runtime: {e}");
            std::process::exit(TRACE_FAILED);
        }
    };
    let result = runtime.block_on(cli.command.run());
    leftovers::finish();
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // Each error says its own context; `{:#}` adds its causes.
            eprintln!("trace: error: {}", one_line(&format!("{e:#}")));
            std::process::exit(TRACE_FAILED);
        }
    }
}

/// Usage errors exit 2 as clap does; a malformed image reference, bind
/// mount or environment entry is one line and exit 125, like an image
/// that cannot be opened (the run cannot be set up; the arguments parse).
fn bad_arguments(e: clap::Error) -> ! {
    use std::error::Error as _;
    let source = e.source();
    let ours = source
        .and_then(|s| s.downcast_ref::<tracer::source::transport::TransportError>())
        .map(|e| with_causes(e))
        .or_else(|| {
            source
                .and_then(|s| s.downcast_ref::<tracer::runtime::options::OptionError>())
                .map(|e| with_causes(e))
        });
    if let Some(line) = ours {
        eprintln!("trace: error: {line}");
        std::process::exit(TRACE_FAILED);
    }
    e.exit()
}

/// An error and its causes, as `{:#}` shows an `anyhow::Error`.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Errors are one line. The kernel verifier's log, which can run to
/// thousands of lines, is shown only with TRACE_VERBOSE=1.
/// Control characters (a hostile file name in the message) never reach
/// the terminal raw.
fn one_line(msg: &str) -> String {
    let safe = |l: &str| tracer::model::escape::text(l);
    let mut lines = msg.lines();
    let first = safe(lines.next().unwrap_or_default());
    let rest = lines.count();
    if rest == 0 {
        return first;
    }
    if std::env::var_os("TRACE_VERBOSE").is_some() {
        return msg.lines().map(safe).collect::<Vec<_>>().join("\n");
    }
    format!("{first} [{rest} more lines: set TRACE_VERBOSE=1 to see them]")
}
