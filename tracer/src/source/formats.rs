//! The two image formats: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) and a `docker save` archive (`manifest.json`). Both
//! come down to a config, a digest and an ordered list of layer blobs, each
//! with the sha256 it must have.
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use super::{
    archive::{Store, is_sha256_hex, sha256_hex, verify},
    error::SourceError,
    layered::LayerBlob,
};

/// What the layers are merged from.
pub struct Parts {
    pub config: ImageConfiguration,
    /// `sha256:<hex>` of the manifest (OCI) or of the config (docker).
    pub digest: String,
    pub layers: Vec<LayerBlob>,
}

/// JSON documents (index, manifest, config) larger than this are refused
/// rather than read into memory.
const MAX_JSON: u64 = 16 << 20;
/// Nested indexes followed at most this deep.
const MAX_DEPTH: usize = 4;

/// The GOARCH name of the architecture this program runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, SourceError> {
    serde_json::from_slice(bytes).map_err(|source| SourceError::Json {
        what: what.to_string(),
        source,
    })
}

/// A blob named by a descriptor, checked for presence, size and sha256.
fn blob(store: &Store, desc: &Descriptor) -> Result<super::archive::Region, SourceError> {
    let digest = desc.digest().to_string();
    let hex = sha256_hex(&digest)?;
    let region = store
        .get(&format!("blobs/sha256/{hex}"))?
        .ok_or_else(|| SourceError::MissingBlob(digest.clone()))?;
    if region.len() != desc.size() {
        return Err(SourceError::SizeMismatch {
            name: digest,
            expected: desc.size(),
            actual: region.len(),
        });
    }
    Ok(region)
}

/// A small JSON blob (manifest, index, config), verified, then read.
fn json_blob(store: &Store, desc: &Descriptor) -> Result<Vec<u8>, SourceError> {
    let digest = desc.digest().to_string();
    let region = blob(store, desc)?;
    if region.len() > MAX_JSON {
        return Err(SourceError::Malformed {
            what: digest,
            why: format!("{} bytes, more than the {MAX_JSON} allowed", region.len()),
        });
    }
    verify(&region, &digest, sha256_hex(&digest)?, store.origin())?;
    let len = usize::try_from(region.len()).unwrap_or(usize::MAX);
    region
        .read_exact_at(0, len)
        .map_err(SourceError::io(store.origin()))
}

/// One line per descriptor, for "found several" errors.
fn describe(d: &Descriptor) -> String {
    let mut s = d.digest().to_string();
    if let Some(p) = d.platform() {
        s += &format!(" {}/{}", p.os(), p.architecture());
        if let Some(v) = p.variant() {
            s += &format!("/{v}");
        }
    }
    if let Some(name) = d
        .annotations()
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.ref.name"))
    {
        s += &format!(" ({name})");
    }
    s
}

/// The single manifest an index names: exactly one entry, or else the one
/// entry for linux/<host arch>. A nested index (manifest list) is
/// followed. Returns the manifest's descriptor and its verified bytes.
fn select_manifest(
    store: &Store,
    index: &ImageIndex,
    what: &str,
    depth: usize,
) -> Result<(Descriptor, Vec<u8>), SourceError> {
    let mut found: Vec<&Descriptor> = Vec::new();
    for d in index.manifests() {
        // Several tags for one digest are one image.
        if !found.iter().any(|f| f.digest() == d.digest()) {
            found.push(d);
        }
    }
    let arch = host_arch();
    let chosen = match found.as_slice() {
        [] => return Err(SourceError::NoManifest(what.to_string())),
        [one] => *one,
        many => {
            let matching: Vec<&Descriptor> = many
                .iter()
                .copied()
                .filter(|d| {
                    d.platform().as_ref().is_some_and(|p| {
                        p.os().to_string() == "linux" && p.architecture().to_string() == arch
                    })
                })
                .collect();
            match matching.as_slice() {
                [one] => *one,
                _ => {
                    return Err(SourceError::AmbiguousManifest {
                        what: what.to_string(),
                        arch: arch.to_string(),
                        found: many.iter().map(|d| describe(d)).collect(),
                    });
                }
            }
        }
    };
    let bytes = json_blob(store, chosen)?;
    let digest = chosen.digest().to_string();
    let value: serde_json::Value = json(&bytes, &digest)?;
    if value.get("manifests").is_some() {
        if depth >= MAX_DEPTH {
            return Err(SourceError::Malformed {
                what: digest,
                why: "image indexes nested too deeply".into(),
            });
        }
        let nested: ImageIndex = json(&bytes, &digest)?;
        return select_manifest(store, &nested, &digest, depth + 1);
    }
    Ok((chosen.clone(), bytes))
}

/// The hex of every diff_id in the config, which must list one per layer.
fn diff_ids(
    config: &ImageConfiguration,
    layers: usize,
    what: &str,
) -> Result<Vec<String>, SourceError> {
    let ids = config.rootfs().diff_ids();
    if ids.len() != layers {
        return Err(SourceError::Malformed {
            what: what.to_string(),
            why: format!(
                "the manifest has {layers} layers, the config {} diff_ids",
                ids.len()
            ),
        });
    }
    ids.iter()
        .map(|d| sha256_hex(d).map(str::to_string))
        .collect()
}

/// An OCI image layout, from a directory or an archive; with `tag`, the
/// manifest whose `org.opencontainers.image.ref.name` is `tag`.
pub fn oci(store: &Store, tag: Option<&str>) -> Result<Parts, SourceError> {
    let origin = store.origin().display().to_string();
    let layout_what = format!("{origin}: oci-layout");
    let layout = store
        .read_small("oci-layout", MAX_JSON)?
        .ok_or_else(|| SourceError::MissingBlob(layout_what.clone()))?;
    let layout: serde_json::Value = json(&layout, &layout_what)?;
    if !layout
        .get("imageLayoutVersion")
        .is_some_and(|v| v.is_string())
    {
        return Err(SourceError::Malformed {
            what: layout_what,
            why: "no imageLayoutVersion".into(),
        });
    }
    let index_what = format!("{origin}: index.json");
    let index = store
        .read_small("index.json", MAX_JSON)?
        .ok_or_else(|| SourceError::MissingBlob(index_what.clone()))?;
    let mut index: ImageIndex = json(&index, &index_what)?;
    if let Some(tag) = tag {
        let tagged = |d: &Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.ref.name"))
                .is_some_and(|n| n == tag)
        };
        if !index.manifests().iter().any(tagged) {
            return Err(SourceError::NoSuchTag {
                what: origin,
                tag: tag.to_string(),
                found: index.manifests().iter().map(describe).collect(),
            });
        }
        let kept: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| tagged(d))
            .cloned()
            .collect();
        index.set_manifests(kept);
    }
    let (desc, manifest) = select_manifest(store, &index, &index_what, 0)?;
    let digest = desc.digest().to_string();
    let manifest: ImageManifest = json(&manifest, &format!("manifest {digest}"))?;
    let config_desc = manifest.config();
    let config = json_blob(store, config_desc)?;
    let config: ImageConfiguration = json(&config, &format!("config {}", config_desc.digest()))?;
    let n = manifest.layers().len();
    let diffs = diff_ids(&config, n, &format!("manifest {digest}"))?;
    let mut layers = Vec::with_capacity(n);
    for (i, (d, diff)) in manifest.layers().iter().zip(diffs).enumerate() {
        let region = blob(store, d)?;
        layers.push(LayerBlob {
            label: format!("layer {}/{n} {}", i + 1, d.digest()),
            origin: store.origin().to_path_buf(),
            region,
            blob_sha: Some(sha256_hex(d.digest().as_ref())?.to_string()),
            diff_sha: Some(diff),
        });
    }
    Ok(Parts {
        config,
        digest,
        layers,
    })
}

/// `name` as docker compares references: `:latest` when it has no tag,
/// without the implied `docker.io/` and `library/`.
fn with_latest(name: &str) -> String {
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    let name = name.strip_prefix("library/").unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_compare_as_docker_reads_them() {
        use super::with_latest as n;
        assert_eq!(n("trace/full"), n("docker.io/trace/full:latest"));
        assert_eq!(n("busybox"), n("docker.io/library/busybox:latest"));
        assert_ne!(n("app:1"), n("app:2"));
        assert_eq!(n("localhost:5000/app"), "localhost:5000/app:latest");
    }
}

/// One image in a `docker save` manifest.json.
#[derive(serde::Deserialize)]
struct DockerImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// A `docker save` archive. The config is named by its sha256
/// (`<hex>.json`); layers are checked against the config's diff_ids. With
/// `reference`, the image whose RepoTags hold it (`name:tag`, `:latest`
/// assumed for a bare name).
pub fn docker(store: &Store, reference: Option<&str>) -> Result<Parts, SourceError> {
    let origin = store.origin().display().to_string();
    let what = format!("{origin}: manifest.json");
    let manifest = store
        .read_small("manifest.json", MAX_JSON)?
        .ok_or_else(|| SourceError::MissingBlob(what.clone()))?;
    let mut images: Vec<DockerImage> = json(&manifest, &what)?;
    if let Some(r) = reference {
        let want = with_latest(r);
        let found: Vec<String> = images
            .iter()
            .flat_map(|i| i.repo_tags.clone().unwrap_or_default())
            .collect();
        images.retain(|i| {
            i.repo_tags
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|t| with_latest(t) == want)
        });
        if images.is_empty() {
            return Err(SourceError::NoSuchTag {
                what: origin,
                tag: r.to_string(),
                found,
            });
        }
    }
    let image = match images.as_slice() {
        [] => return Err(SourceError::NoManifest(what)),
        [one] => one,
        many => {
            return Err(SourceError::AmbiguousManifest {
                what,
                arch: host_arch().to_string(),
                found: many
                    .iter()
                    .map(|i| {
                        format!(
                            "{} ({})",
                            i.config,
                            i.repo_tags.as_deref().unwrap_or_default().join(", ")
                        )
                    })
                    .collect(),
            });
        }
    };
    let file = image.config.rsplit('/').next().unwrap_or_default();
    let hex = file.strip_suffix(".json").unwrap_or(file);
    if !is_sha256_hex(hex) {
        return Err(SourceError::Malformed {
            what,
            why: format!("config {} is not named by its sha256", image.config),
        });
    }
    let region = store
        .get(&image.config)?
        .ok_or_else(|| SourceError::MissingBlob(image.config.clone()))?;
    if region.len() > MAX_JSON {
        return Err(SourceError::Malformed {
            what: image.config.clone(),
            why: format!("{} bytes, more than the {MAX_JSON} allowed", region.len()),
        });
    }
    verify(&region, &image.config, hex, store.origin())?;
    let len = usize::try_from(region.len()).unwrap_or(usize::MAX);
    let config = region
        .read_exact_at(0, len)
        .map_err(SourceError::io(store.origin()))?;
    let config: ImageConfiguration = json(&config, &format!("config {}", image.config))?;
    let n = image.layers.len();
    let diffs = diff_ids(&config, n, &what)?;
    let mut layers = Vec::with_capacity(n);
    for (i, (name, diff)) in image.layers.iter().zip(diffs).enumerate() {
        let region = store
            .get(name)?
            .ok_or_else(|| SourceError::MissingBlob(name.clone()))?;
        layers.push(LayerBlob {
            label: format!("layer {}/{n} {name}", i + 1),
            origin: store.origin().to_path_buf(),
            region,
            blob_sha: None,
            diff_sha: Some(diff),
        });
    }
    Ok(Parts {
        config,
        digest: format!("sha256:{hex}"),
        layers,
    })
}
