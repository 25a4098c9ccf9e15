//! `trace cache`: where the image cache is, what it holds; `trace cache
//! prune`: removing entries (see `crate::cache`).
use std::time::{Duration, SystemTime};

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cache::{Cache, prune::Policy};
use crate::session::build::report::human;

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Remove cache entries no running trace uses (and builds left by
    /// killed runs). Entries in use are kept and named. `--all` also
    /// unloads the eBPF programs kept loaded for later captures.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PruneArgs {
    /// Remove every entry.
    #[arg(long)]
    pub all: bool,
    /// Remove the least recently used entries until the rest take at
    /// most SIZE (bytes, or with K, M, G, T).
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    pub keep_size: Option<u64>,
    /// Remove the entries not used for DUR (`90s`, `30m`, `12h`, `7d`).
    #[arg(long, value_name = "DUR", value_parser = super::args::parse_duration)]
    pub older_than: Option<Duration>,
}

fn when(t: Option<SystemTime>) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.and_then(|t| time::OffsetDateTime::from(t).format(format).ok())
        .unwrap_or_else(|| "-".into())
}

pub fn run(args: CacheArgs) -> Result<i32> {
    let cache = Cache::open()?;
    match args.action {
        None => {
            println!("cache: {}", cache.root().display());
            let entries = cache.list()?;
            if !entries.is_empty() {
                println!("{:<71}  {:>10}  LAST USED", "CHAIN ID", "SIZE");
            }
            for e in &entries {
                let mut line = format!(
                    "{:<71}  {:>10}  {}",
                    e.chain_id,
                    human(e.disk_bytes),
                    when(e.last_used)
                );
                if let Some(why) = &e.problem {
                    line += &format!("  (unusable: {why})");
                }
                println!("{line}");
            }
            let total: u64 = entries.iter().map(|e| e.disk_bytes).sum();
            let s = if entries.len() == 1 { "y" } else { "ies" };
            println!("{} entr{s}, {}", entries.len(), human(total));
            let (sets, bytes) = crate::capture::kept::usage();
            if sets > 0 {
                println!(
                    "kept eBPF programs: {sets} set(s) in {}, about {} of kernel memory",
                    crate::capture::kept::PIN_ROOT,
                    human(bytes)
                );
            }
        }
        Some(Action::Prune(p)) => {
            let policy = match (p.all, p.keep_size, p.older_than) {
                (_, Some(size), _) => Policy::KeepSize(size),
                (_, _, Some(age)) => Policy::OlderThan(age),
                _ => Policy::All,
            };
            let pruned = cache.prune(policy)?;
            for (id, bytes) in &pruned.removed {
                println!("removed {id} ({})", human(*bytes));
            }
            if pruned.stale_builds > 0 {
                println!(
                    "removed {} unfinished build(s) of killed runs ({})",
                    pruned.stale_builds,
                    human(pruned.stale_bytes)
                );
            }
            for id in &pruned.in_use {
                println!("kept {id}: in use by a running trace");
            }
            println!("freed {}", human(pruned.freed()));
            if p.all {
                let (removed, held) = crate::capture::kept::prune();
                if removed > 0 {
                    println!("unloaded {removed} kept set(s) of eBPF programs");
                }
                if held > 0 {
                    println!("kept {held} set(s) of eBPF programs: in use by a running trace");
                }
            }
        }
    }
    Ok(0)
}
