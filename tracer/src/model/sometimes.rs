//! Files seen in only some of several runs (`trace run --runs N`, or
//! traces of CI shards merged): the ones most likely needed again.
use std::path::Path;

use serde::Serialize;

use super::trace::Trace;
use crate::closure::essentials;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sometimes {
    pub path: String,
    pub seen_in: Vec<String>,
}

/// For a merged trace: the paths used (found) in some of its runs, not
/// all, with the runs that saw them.
pub fn sometimes(t: &Trace) -> Vec<Sometimes> {
    let all = t.merged_from.len();
    if all < 2 {
        return Vec::new();
    }
    let binds: Vec<&Path> = t.scope.bind_mounts.iter().map(Path::new).collect();
    t.files
        .iter()
        .filter(|f| f.used() && !f.seen_in.is_empty() && f.seen_in.len() < all)
        .filter(|f| {
            !essentials::RUNTIME_PREFIXES
                .iter()
                .any(|p| f.path.starts_with(p))
                && !binds.iter().any(|b| Path::new(&f.path).starts_with(b))
        })
        .map(|f| Sometimes {
            path: f.path.clone(),
            seen_in: f.seen_in.clone(),
        })
        .collect()
}
