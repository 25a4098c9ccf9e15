//! The library without the command line: run a command under the trace
//! and list what it opened. As root:
//! `cargo run -p tracer --example library_run -- ls /etc`
use tracer::session::{RunSpec, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let command: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    anyhow::ensure!(!command.is_empty(), "usage: library_run CMD [ARGS...]");
    let trace = run::execute(&RunSpec::new(command)).await?;
    for f in &trace.files {
        println!("{}", f.path);
    }
    eprintln!(
        "{} files, exit {}, complete: {}",
        trace.files.len(),
        trace.exit.code,
        trace.complete
    );
    Ok(())
}
