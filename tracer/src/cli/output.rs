//! `-o FILE` and `--format`: where the trace of a run or an attach goes,
//! and how it is written.
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::{
    capture::collect::Files,
    model::{text, trace::Trace, write},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Text,
}

#[derive(Clone, Debug, Default, Args)]
pub struct TraceOutput {
    /// Write the trace here (atomically). Without it, a summary goes to stderr.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// json (default with -o) or text (default without -o).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

impl TraceOutput {
    pub fn format(&self) -> Format {
        self.format.unwrap_or(match self.output {
            Some(_) => Format::Json,
            None => Format::Text,
        })
    }

    /// [`write`](Self::write) for a trace whose files are still in the
    /// collector: JSON to a file is written as the files are read, never
    /// held whole. Returns the trace without its files.
    pub fn write_streamed(&self, trace: Trace, files: Files) -> Result<Trace> {
        report_streamed(trace, files, self.output.as_deref(), self.format())
    }

    pub fn write(&self, trace: &Trace) -> Result<()> {
        report(trace, self.output.as_deref(), self.format())
    }
}

/// [`report`] for a trace whose files are still in the collector: JSON to
/// a file is written as the files are read, never held whole. Returns the
/// trace without its files.
fn report_streamed(
    mut trace: Trace,
    files: Files,
    output: Option<&Path>,
    format: Format,
) -> Result<Trace> {
    match (output, format) {
        (Some(path), Format::Json) => {
            write::write_atomic_with(path, |w| write::write_json_streamed(w, &trace, files))?;
            warn_incomplete(&trace);
        }
        _ => {
            files.collect_into(&mut trace);
            report(&trace, output, format)?;
        }
    }
    Ok(trace)
}

fn warn_incomplete(trace: &Trace) {
    if !trace.complete {
        eprintln!(
            "trace: warning: the trace is incomplete: {}",
            trace.incomplete_reasons.join("; ")
        );
    }
}

pub fn report(trace: &Trace, output: Option<&Path>, format: Format) -> Result<()> {
    let rendered = match format {
        Format::Json => write::to_json(trace),
        Format::Text => text::render(trace).into_bytes(),
    };
    match output {
        Some(path) => write::write_atomic(path, &rendered)?,
        None => {
            use std::io::Write;
            std::io::stderr().write_all(&rendered)?;
        }
    }
    warn_incomplete(trace);
    Ok(())
}
