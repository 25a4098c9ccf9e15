//! `trace merge`: one trace from several (shards, suites, sessions).
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::model::{
    merge::{Input, merge_parts},
    write,
};

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Trace files to unite (merged traces are fine too).
    #[arg(required = true, value_name = "TRACE.json")]
    pub traces: Vec<PathBuf>,
    /// Where to write the merged trace (atomically).
    #[arg(short, long, value_name = "ALL.json")]
    pub output: PathBuf,
}

pub fn run(args: MergeArgs) -> Result<i32> {
    // Read one at a time as the merge takes them: only the trace being
    // merged and the union are held, not every input at once.
    let mut failed = None;
    let inputs = args.traces.iter().map_while(|p| match write::read(p) {
        Ok(trace) => Some(Input {
            label: p.display().to_string(),
            trace,
        }),
        Err(e) => {
            failed = Some(e);
            None
        }
    });
    let merged = merge_parts(inputs);
    if let Some(e) = failed {
        return Err(e.into());
    }
    let paths = merged.len();
    // Entries are finished as they are written, never all held at once.
    let (merged, files) = merged.files();
    write::write_atomic_with(&args.output, |w| {
        write::write_json_streamed(w, &merged, files.map(Ok))
    })?;
    eprintln!(
        "trace merge: {} traces, {} paths, {} execs{} -> {}",
        merged.merged_from.len(),
        paths,
        merged.execs.len(),
        if merged.complete {
            ""
        } else {
            " (INCOMPLETE: an input lost events)"
        },
        args.output.display()
    );
    Ok(0)
}
