//! Files seen in only some of several runs (`trace run --runs N`, or
//! traces of CI shards merged): the ones most likely needed again.

use serde::Serialize;

use super::trace::Trace;

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
    t.files
        .iter()
        .filter(|f| f.used() && !f.seen_in.is_empty() && f.seen_in.len() < all)
        .filter(|f| !t.beyond_image(&f.os_path()))
        .map(|f| Sometimes {
            path: f.path.clone(),
            seen_in: f.seen_in.clone(),
        })
        .collect()
}
