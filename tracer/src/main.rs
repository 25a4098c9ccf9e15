//! The `trace` binary: parse arguments, run a subcommand, turn any error
//! into one line on stderr and exit status 125.
use clap::Parser;
use tracer::{
    cli::{Cli, Command},
    runtime::status::TRACE_FAILED,
};

fn main() {
    let cli = Cli::parse();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => tracer::cli::run::run(args).await,
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("trace: error: {e:#}");
            std::process::exit(TRACE_FAILED);
        }
    }
}
