//! The image configuration: the source image's runtime settings carried
//! over, with the new single layer and a fixed history. Shared by the OCI
//! and docker outputs (a docker config is the same JSON).
use std::collections::HashMap;

use oci_spec::image::{
    Arch, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder, Os, RootFsBuilder,
};
use serde::Serialize;
use serde_json::Value;

use super::{OutputError, Spec};

/// `created` when the source says nothing: a fixed time, never "now", so the
/// same inputs give the same config digest.
pub(super) const EPOCH: &str = "1970-01-01T00:00:00Z";
/// Label and annotation naming the source image's manifest digest.
pub(crate) const SOURCE_DIGEST_KEY: &str = "org.trace.source.digest";
/// `created_by` of the one history entry.
pub(super) const CREATED_BY: &str = "trace build";

/// The new image's configuration for a layer whose uncompressed sha256 is
/// `diff_id` (hex).
pub(super) fn image_config(spec: &Spec, diff_id: &str) -> Result<ImageConfiguration, OutputError> {
    let oci = |what| move |source| OutputError::Spec { what, source };
    let src = spec.config.as_ref();
    let created = src
        .and_then(|c| c.created().clone())
        .unwrap_or_else(|| EPOCH.to_string());
    let architecture = src.map_or_else(Arch::default, |c| c.architecture().clone());
    let os = src.map_or(Os::Linux, |c| c.os().clone());
    let mut history = HistoryBuilder::default()
        .created(created.clone())
        .created_by(CREATED_BY);
    if let Some(d) = &spec.source_digest {
        history = history.comment(format!("minimal image traced from {d}"));
    }
    let mut b = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(architecture)
        .os(os)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![format!("sha256:{diff_id}")])
                .build()
                .map_err(oci("config rootfs"))?,
        )
        // One layer, so one history entry: tools match history entries
        // that are not `empty_layer` to layers.
        .history(vec![history.build().map_err(oci("config history"))?]);
    if let Some(src) = src {
        if let Some(v) = src.os_version() {
            b = b.os_version(v.clone());
        }
        if let Some(v) = src.os_features() {
            b = b.os_features(v.clone());
        }
        if let Some(v) = src.variant() {
            b = b.variant(v.clone());
        }
    }
    let mut runtime = src.and_then(|c| c.config().clone());
    if let Some(d) = &spec.source_digest {
        let r = runtime.get_or_insert_with(Default::default);
        let mut labels: HashMap<String, String> = r.labels().clone().unwrap_or_default();
        labels.insert(SOURCE_DIGEST_KEY.to_string(), d.clone());
        r.set_labels(Some(labels));
    }
    if let Some(r) = runtime {
        b = b.config(r);
    }
    b.build().map_err(oci("config"))
}

/// Compact JSON with every object's keys sorted. oci-spec keeps labels and
/// annotations in `HashMap`s, whose order changes from run to run; sorting
/// keeps digests reproducible.
pub(super) fn canonical_json<T: Serialize>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, OutputError> {
    let err = |source| OutputError::Json { what, source };
    let v = serde_json::to_value(value).map_err(err)?;
    serde_json::to_vec(&sorted(v)).map_err(err)
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}
