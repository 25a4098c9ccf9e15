//! `docker save` archive: `manifest.json`, the config as `<hex>.json` and
//! the uncompressed layer as `<diff_id hex>/layer.tar`, which `docker load`,
//! `podman load` and `skopeo` (`docker-archive:`) read.
use std::path::Path;

use serde_json::json;

use super::{
    OutputError, Spec, Written,
    archive::{self, Data, Item},
    config::{canonical_json, image_config},
    layer::{self, hex},
};

/// `docker load` insists on `name:tag`; a bare name gets `:latest`, as
/// docker itself would assume.
fn repo_tag(tag: &str) -> String {
    let last = tag.rsplit('/').next().unwrap_or(tag);
    if last.contains(':') || last.contains('@') {
        tag.to_string()
    } else {
        format!("{tag}:latest")
    }
}

/// Writes the archive to the new file `file`, using `scratch` for the
/// layer while it is being built.
pub(super) fn write_archive(
    file: &Path,
    scratch: &Path,
    spec: &Spec,
) -> Result<Written, OutputError> {
    let layer_file = scratch.join("layer.tar");
    let layer = layer::write_layer(spec.rootfs, spec.paths, &layer_file, false)?;
    let config = image_config(spec, &layer.diff_id)?;
    let config_json = canonical_json(&config, "image config")?;
    let config_hex = {
        use sha2::{Digest as _, Sha256};
        hex(&Sha256::digest(&config_json))
    };
    let config_name = format!("{config_hex}.json");
    let layer_name = format!("{}/layer.tar", layer.diff_id);
    let tags: Vec<String> = spec.tag.iter().map(|t| repo_tag(t)).collect();
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": tags,
        "Layers": [layer_name],
    }]);
    let mut manifest_json = canonical_json(&manifest, "manifest.json")?;
    manifest_json.push(b'\n');
    let manifest_hex = {
        use sha2::{Digest as _, Sha256};
        hex(&Sha256::digest(&manifest_json))
    };
    archive::write(
        file,
        &[
            Item {
                name: format!("{}/", layer.diff_id),
                data: Data::Dir,
            },
            Item {
                name: layer_name,
                data: Data::File(layer_file),
            },
            Item {
                name: config_name,
                data: Data::Bytes(config_json),
            },
            Item {
                name: "manifest.json".into(),
                data: Data::Bytes(manifest_json),
            },
        ],
    )?;
    Ok(Written {
        // There is no registry manifest in this format: this is the digest
        // of `manifest.json`, stable for the same inputs.
        manifest_digest: format!("sha256:{manifest_hex}"),
        config_digest: format!("sha256:{config_hex}"),
        layer_digest: format!("sha256:{}", layer.digest),
        layer_bytes: layer.size,
        entries: layer.entries,
    })
}

#[cfg(test)]
mod tests {
    use super::repo_tag;

    #[test]
    fn bare_names_get_latest() {
        assert_eq!(repo_tag("app"), "app:latest");
        assert_eq!(repo_tag("app:1"), "app:1");
        assert_eq!(repo_tag("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(repo_tag("localhost:5000/app:2"), "localhost:5000/app:2");
    }
}
