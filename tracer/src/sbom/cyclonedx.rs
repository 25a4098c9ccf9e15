//! CycloneDX 1.6 JSON: the image as `metadata.component` (type
//! `container`, its source image as pedigree ancestor, its traces as
//! properties), each package a component with its present files nested
//! in it, unowned files at the top level.
use serde_json::{Value, json};

use super::{SbomError, content_id, model::Sbom};

const TOOL: &str = env!("CARGO_PKG_VERSION");

fn prop(name: &str, value: impl Into<String>) -> Value {
    json!({"name": name, "value": value.into()})
}

fn file(f: &super::File) -> Value {
    let path = f.path.display().to_string();
    json!({
        "type": "file",
        "bom-ref": format!("file:{path}"),
        "name": path,
        "hashes": [
            {"alg": "SHA-256", "content": f.sha256},
            {"alg": "SHA-1", "content": f.sha1},
        ],
    })
}

/// A container image purl (`pkg:oci/NAME@sha256%3A…`), when the digest is known.
pub(crate) fn image_purl(s: &super::Subject) -> Option<String> {
    let digest = s.digest.as_deref()?;
    let tag = s.tag.as_deref();
    let repo = tag.map(|t| t.rsplit_once(':').map_or(t, |(r, _)| r));
    let name = repo.map_or("image", |r| r.rsplit('/').next().unwrap_or(r));
    let tag_only = tag.and_then(|t| t.rsplit_once(':').map(|(_, v)| v));
    Some(super::purl::build(
        "oci",
        None,
        name,
        digest,
        &[("tag", tag_only.unwrap_or(""))],
    ))
}

/// UUID-shaped text from a hash (version 5 and RFC 4122 variant bits set,
/// as the schema wants).
fn uuid(hex: &str) -> String {
    let h: Vec<char> = hex.chars().take(32).collect();
    let s = |r: std::ops::Range<usize>| h[r].iter().collect::<String>();
    let variant = match h[16] {
        '0' | '4' | '8' | 'c' => '8',
        '1' | '5' | '9' | 'd' => '9',
        '2' | '6' | 'a' | 'e' => 'a',
        _ => 'b',
    };
    format!(
        "{}-{}-5{}-{variant}{}-{}",
        s(0..8),
        s(8..12),
        s(13..16),
        s(17..20),
        s(20..32)
    )
}

pub fn render(sbom: &Sbom) -> Result<Vec<u8>, SbomError> {
    let s = &sbom.subject;
    let mut props = Vec::new();
    if let Some(d) = &s.digest {
        props.push(prop("trace:image-digest", d));
    }
    if let Some(t) = &s.tag {
        props.push(prop("trace:image-tag", t));
    }
    if let Some(d) = &s.source_digest {
        props.push(prop("trace:source-digest", d));
    }
    for t in &s.traces {
        props.push(prop(
            "trace:trace",
            format!("{} sha256:{}", t.name, t.sha256),
        ));
    }
    let mut subject = json!({
        "type": "container",
        "bom-ref": "image",
        "name": s.name,
    });
    if let Some(d) = &s.digest {
        subject["version"] = json!(d);
    }
    if let Some(p) = image_purl(s) {
        subject["purl"] = json!(p);
    }
    if let Some(sup) = &s.supplier {
        let name = sup
            .strip_prefix("Organization:")
            .or_else(|| sup.strip_prefix("Person:"))
            .unwrap_or(sup)
            .trim();
        subject["supplier"] = json!({"name": name});
    }
    if !props.is_empty() {
        subject["properties"] = json!(props);
    }
    if s.source_digest.is_some() || s.source_name.is_some() {
        let mut anc = json!({
            "type": "container",
            "bom-ref": "source-image",
            "name": s.source_name.clone().unwrap_or_else(|| "source".into()),
        });
        if let Some(d) = &s.source_digest {
            anc["version"] = json!(d);
        }
        subject["pedigree"] = json!({"ancestors": [anc]});
    }
    // bom-refs must be unique: a purl seen twice (one distribution in two
    // site-packages) gets its metadata path appended.
    let mut refs: Vec<String> = Vec::new();
    for p in &sbom.packages {
        let r = if refs.contains(&p.purl) {
            format!("{}#{}", p.purl, p.source.display())
        } else {
            p.purl.clone()
        };
        refs.push(r);
    }
    let mut nested: Vec<Vec<Value>> = vec![Vec::new(); sbom.packages.len()];
    let mut top: Vec<Value> = Vec::new();
    for f in &sbom.files {
        match f.owner {
            Some(i) => nested[i].push(file(f)),
            None => top.push(file(f)),
        }
    }
    let mut components: Vec<Value> = Vec::new();
    for ((p, r), files) in sbom.packages.iter().zip(&refs).zip(nested) {
        let mut props = vec![
            prop("trace:package-type", p.ecosystem.purl_type()),
            prop("trace:metadata", p.source.display().to_string()),
            prop("trace:files-present", p.present.len().to_string()),
            prop("trace:files-absent", p.absent.to_string()),
            prop("trace:kept", if p.partial() { "partial" } else { "whole" }),
        ];
        if let Some(a) = &p.arch {
            props.insert(0, prop("trace:arch", a));
        }
        let mut c = json!({
            "type": "library",
            "bom-ref": r,
            "name": p.name,
            "version": p.version,
            "purl": p.purl,
            "properties": props,
        });
        if let Some(l) = &p.license {
            c["licenses"] = json!([{"expression": l}]);
        }
        if let Some(sup) = &p.supplier {
            c["supplier"] = json!({"name": sup});
        }
        if !files.is_empty() {
            c["components"] = json!(files);
        }
        components.push(c);
    }
    components.extend(top);
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "timestamp": s.created,
            "tools": {"components": [{"type": "application", "name": "trace", "version": TOOL}]},
            "component": subject,
        },
        "components": components,
        "dependencies": [
            {"ref": "image", "dependsOn": refs},
        ],
    });
    for r in &refs {
        if let Some(deps) = doc["dependencies"].as_array_mut() {
            deps.push(json!({"ref": r}));
        }
    }
    let id = content_id(&serde_json::to_vec(&doc)?);
    doc["serialNumber"] = json!(format!("urn:uuid:{}", uuid(&id)));
    Ok(serde_json::to_vec_pretty(&doc)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn serial_numbers_are_uuid_shaped() {
        let u = super::uuid("0123456789abcdef0123456789abcdef0123");
        assert_eq!(u, "01234567-89ab-5def-8123-456789abcdef");
    }
}
