//! OCI image layout (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md>):
//! `oci-layout`, `index.json` and content-addressed blobs, as a directory
//! or as a tar of that directory (`oci-archive`).
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    str::FromStr,
};

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, Digest, ImageConfiguration, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, PlatformBuilder, Sha256Digest,
};

use super::{
    OutputError, Spec, Written,
    archive::{self, Data, Item},
    config::{SOURCE_DIGEST_KEY, canonical_json, image_config},
    layer::{self, LayerInfo},
};

/// The image-layout version this writer follows.
const LAYOUT_VERSION: &str = "1.0.0";

/// A descriptor for a sha256 blob.
fn descriptor(media_type: MediaType, size: u64, hex: &str) -> Result<Descriptor, OutputError> {
    let d = Sha256Digest::from_str(hex).map_err(|source| OutputError::Spec {
        what: "digest",
        source,
    })?;
    Ok(Descriptor::new(media_type, size, Digest::from(d)))
}

/// Writes `bytes` to a new file (never over an existing one), fsync'd.
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    use std::io::Write;
    let werr = |source| OutputError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)
}

fn mkdir(path: &Path) -> Result<(), OutputError> {
    fs::create_dir(path).map_err(|source| OutputError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the layout in the new directory `dir`, inside the scratch
/// directory `scratch`; returns the digests.
pub(super) fn write_layout(
    dir: &Path,
    scratch: &Path,
    spec: &Spec,
) -> Result<(Written, Vec<(String, u64)>), OutputError> {
    let blobs = dir.join("blobs").join("sha256");
    mkdir(dir)?;
    mkdir(&dir.join("blobs"))?;
    mkdir(&blobs)?;

    // The layer goes to a scratch name first: its name is its digest,
    // known only once it is written.
    let partial = scratch.join("layer.partial");
    let layer = layer::write_layer(spec.rootfs, spec.paths, &partial, true)?;
    let layer_path = blobs.join(&layer.digest);
    fs::rename(&partial, &layer_path).map_err(|source| OutputError::Write {
        path: layer_path.clone(),
        source,
    })?;

    let config = image_config(spec, &layer.diff_id)?;
    let config_json = canonical_json(&config, "image config")?;
    let config_hex = layer::hex(&sha2_of(&config_json));
    write_new(&blobs.join(&config_hex), &config_json)?;

    let manifest_json = manifest(spec, &layer, &config_hex, config_json.len() as u64)?;
    let manifest_hex = layer::hex(&sha2_of(&manifest_json));
    write_new(&blobs.join(&manifest_hex), &manifest_json)?;

    let index_json = index(spec, &config, &manifest_hex, manifest_json.len() as u64)?;
    write_new(&dir.join("index.json"), &index_json)?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version(LAYOUT_VERSION)
        .build()
        .map_err(|source| OutputError::Spec {
            what: "oci-layout",
            source,
        })?;
    write_new(
        &dir.join("oci-layout"),
        &canonical_json(&layout, "oci-layout")?,
    )?;

    let mut blob_list = vec![
        (layer.digest.clone(), layer.size),
        (config_hex.clone(), config_json.len() as u64),
        (manifest_hex.clone(), manifest_json.len() as u64),
    ];
    blob_list.sort();
    Ok((
        Written {
            manifest_digest: format!("sha256:{manifest_hex}"),
            config_digest: format!("sha256:{config_hex}"),
            layer_digest: format!("sha256:{}", layer.digest),
            layer_bytes: layer.size,
            entries: layer.entries,
        },
        blob_list,
    ))
}

/// Tars the layout `dir` into the new file `file`, entries in a fixed
/// order. `blobs` are the blob names (hex digests) in `blobs/sha256/`.
pub(super) fn write_archive(
    dir: &Path,
    file: &Path,
    blobs: &[(String, u64)],
) -> Result<(), OutputError> {
    let read = |name: &str| -> Result<Vec<u8>, OutputError> {
        let p = dir.join(name);
        fs::read(&p).map_err(|source| OutputError::Write { path: p, source })
    };
    let mut items = vec![
        Item {
            name: "oci-layout".into(),
            data: Data::Bytes(read("oci-layout")?),
        },
        Item {
            name: "index.json".into(),
            data: Data::Bytes(read("index.json")?),
        },
        Item {
            name: "blobs/".into(),
            data: Data::Dir,
        },
        Item {
            name: "blobs/sha256/".into(),
            data: Data::Dir,
        },
    ];
    for (hex, _) in blobs {
        items.push(Item {
            name: format!("blobs/sha256/{hex}"),
            data: Data::File(dir.join("blobs").join("sha256").join(hex)),
        });
    }
    archive::write(file, &items)
}

fn sha2_of(bytes: &[u8]) -> Vec<u8> {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(bytes).to_vec()
}

/// The image manifest: the config and the one gzip layer, annotated with
/// the source digest when there is one.
fn manifest(
    spec: &Spec,
    layer: &LayerInfo,
    config_hex: &str,
    config_size: u64,
) -> Result<Vec<u8>, OutputError> {
    let mut b = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(MediaType::ImageConfig, config_size, config_hex)?)
        .layers(vec![descriptor(
            MediaType::ImageLayerGzip,
            layer.size,
            &layer.digest,
        )?]);
    if let Some(d) = &spec.source_digest {
        b = b.annotations(HashMap::from([(SOURCE_DIGEST_KEY.to_string(), d.clone())]));
    }
    let m = b.build().map_err(|source| OutputError::Spec {
        what: "manifest",
        source,
    })?;
    canonical_json(&m, "manifest")
}

/// `index.json`: the one manifest, with its platform and, when tagged, the
/// `org.opencontainers.image.ref.name` that `oci:DIR:TAG` and umoci look up.
fn index(
    spec: &Spec,
    config: &ImageConfiguration,
    manifest_hex: &str,
    manifest_size: u64,
) -> Result<Vec<u8>, OutputError> {
    let err = |what| move |source| OutputError::Spec { what, source };
    let mut platform = PlatformBuilder::default()
        .architecture(config.architecture().clone())
        .os(config.os().clone());
    if let Some(v) = config.variant() {
        platform = platform.variant(v.clone());
    }
    let mut desc = descriptor(MediaType::ImageManifest, manifest_size, manifest_hex)?;
    desc.set_platform(Some(platform.build().map_err(err("platform"))?));
    if let Some(tag) = &spec.tag {
        desc.set_annotations(Some(HashMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            tag.clone(),
        )])));
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![desc])
        .build()
        .map_err(err("index"))?;
    canonical_json(&index, "index.json")
}

/// Where the layout of an `oci-archive` is assembled before being tarred.
pub(super) fn staging(scratch: &Path) -> PathBuf {
    scratch.join("layout")
}
