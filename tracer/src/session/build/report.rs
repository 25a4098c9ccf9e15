//! What a build kept, why, and what it left out: the `--report` document
//! and its terminal summary.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::{closure, model::sometimes};

#[derive(Serialize)]
pub struct Size {
    pub bytes: u64,
    pub entries: u64,
}

#[derive(Serialize)]
pub struct Largest {
    pub path: String,
    pub bytes: u64,
}

#[derive(Serialize)]
pub struct Missing {
    pub library: String,
    pub needed_by: String,
}

#[derive(Serialize)]
pub struct RelativeInterpreter {
    pub interpreter: String,
    pub named_by: String,
}

/// `--report`: what was kept, why, and what was left out.
#[derive(Serialize)]
pub struct Report {
    pub source: String,
    pub source_digest: Option<String>,
    pub output: String,
    pub format: String,
    pub manifest_digest: String,
    /// The engine the image was loaded into, its name and the image ID
    /// the engine shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<Loaded>,
    pub before: Size,
    pub after: Size,
    pub largest: Vec<Largest>,
    pub by_reason: BTreeMap<closure::Reason, usize>,
    pub kept: BTreeMap<String, closure::Reason>,
    pub not_in_source: Vec<String>,
    pub missing_libraries: Vec<Missing>,
    /// Interpreters named by a relative path (`#!./x`, a relative
    /// `PT_INTERP`) and the file naming each: the kernel looks them up
    /// from the caller's working directory, which no trace records, so
    /// none is kept for them (`--include` what they name).
    pub relative_interpreters: Vec<RelativeInterpreter>,
    pub excluded: BTreeMap<String, String>,
    /// dpkg packages kept in the trimmed database and dropped from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Packages>,
    /// `--keep`: file, module, package or package+deps.
    pub keep: closure::Level,
    /// The unit (package, module, metadata, listed directory) that pulled
    /// each path a level added.
    pub pulled_by: BTreeMap<String, String>,
    /// Each `#!` interpreter kept and the script that needs it.
    pub interpreters: Vec<closure::InterpreterUse>,
    /// What `--keep-listed` added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed: Option<Size>,
    /// With several runs or traces: paths used in only some of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sometimes: Vec<sometimes::Sometimes>,
    /// The SBOM written beside the image: its path and a summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
}

#[derive(Serialize)]
pub struct Loaded {
    pub engine: String,
    pub name: String,
    pub id: String,
}

#[derive(Serialize)]
pub struct Packages {
    pub kept: Vec<String>,
    pub dropped: Vec<String>,
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn summary(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let ratio = if r.after.bytes > 0 {
        r.before.bytes as f64 / r.after.bytes as f64
    } else {
        0.0
    };
    // For an engine, the digest it shows (`docker image inspect`).
    let digest = r.loaded.as_ref().map_or(&r.manifest_digest, |l| &l.id);
    let _ = writeln!(s, "trace build: {} -> {} ({digest})", r.source, r.output);
    let _ = writeln!(
        s,
        "  before: {:>10}  {:>7} entries",
        human(r.before.bytes),
        r.before.entries
    );
    let _ = writeln!(
        s,
        "  after:  {:>10}  {:>7} entries   ({ratio:.1}x smaller)",
        human(r.after.bytes),
        r.after.entries
    );
    let reasons: Vec<String> = r
        .by_reason
        .iter()
        .map(|(k, v)| {
            format!(
                "{v} {}",
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "  kept by: {}   (--keep {})",
        reasons.join(", "),
        r.keep.name()
    );
    // One line per interpreter: how many scripts need it, the first one.
    let mut by_interp: BTreeMap<&str, Vec<&closure::InterpreterUse>> = BTreeMap::new();
    for i in &r.interpreters {
        by_interp.entry(&i.interpreter).or_default().push(i);
    }
    for (interp, uses) in by_interp {
        let _ = writeln!(
            s,
            "  interpreter {interp}: {} script(s), e.g. {} ({})",
            uses.len(),
            uses[0].script,
            uses[0].why
        );
    }
    if let Some(l) = &r.listed {
        let _ = writeln!(
            s,
            "  --keep-listed added {} entries, {}",
            l.entries,
            human(l.bytes)
        );
    }
    if !r.sometimes.is_empty() {
        let _ = writeln!(
            s,
            "  used in only some runs ({}), most likely needed again:",
            r.sometimes.len()
        );
        for x in r.sometimes.iter().take(20) {
            let _ = writeln!(s, "    {}  (seen in {})", x.path, x.seen_in.join(", "));
        }
    }
    if let Some(sbom) = &r.sbom {
        let _ = writeln!(s, "  sbom: {sbom}");
    }
    if let Some(p) = &r.packages {
        let _ = writeln!(
            s,
            "  dpkg database: {} packages kept, {} dropped",
            p.kept.len(),
            p.dropped.len()
        );
    }
    let _ = writeln!(s, "  largest:");
    for l in &r.largest {
        let _ = writeln!(s, "    {:>10}  {}", human(l.bytes), l.path);
    }
    if !r.missing_libraries.is_empty() {
        let _ = writeln!(s, "  warning: libraries not in the source image:");
        for m in &r.missing_libraries {
            let _ = writeln!(s, "    {} (needed by {})", m.library, m.needed_by);
        }
    }
    if !r.relative_interpreters.is_empty() {
        let _ = writeln!(
            s,
            "  warning: interpreters named by a relative path, looked up from the caller's working directory (not kept; --include them):"
        );
        for m in &r.relative_interpreters {
            let _ = writeln!(s, "    {} (named by {})", m.interpreter, m.named_by);
        }
    }
    if !r.not_in_source.is_empty() {
        let _ = writeln!(
            s,
            "  {} traced paths are not in the source (created by the run or on the host)",
            r.not_in_source.len()
        );
    }
    s
}
