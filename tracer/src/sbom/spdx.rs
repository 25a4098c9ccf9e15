//! SPDX 2.3 JSON: the image a package (purpose CONTAINER) the document
//! DESCRIBES (its source image and traces in its sourceInfo and comment); every OS and language
//! package a package it CONTAINS; every regular file a file, CONTAINED by
//! each package owning it (or by the image).
use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{SbomError, content_id, model::Sbom};

const NOASSERTION: &str = "NOASSERTION";

/// SPDX "Person: …"/"Organization: …"; a Debian maintainer field is
/// `Name <email>`, turned into `Name (email)`.
fn supplier(s: &Option<String>) -> String {
    match s {
        None => NOASSERTION.into(),
        Some(s) => {
            let s = s.replace('<', "(").replace('>', ")");
            let org = [
                "team",
                "maintainers",
                "developers",
                "project",
                "group",
                "foundation",
            ]
            .iter()
            .any(|w| s.to_ascii_lowercase().contains(w));
            format!("{}: {s}", if org { "Organization" } else { "Person" })
        }
    }
}

/// A supplier named on the command line: `Person: …` or
/// `Organization: …` as given, else taken as an organization.
fn image_supplier(s: &str) -> String {
    if s.starts_with("Person:") || s.starts_with("Organization:") {
        s.to_string()
    } else {
        format!("Organization: {s}")
    }
}

/// The `LicenseRef-…` identifiers an expression uses.
fn refs(expr: &str, out: &mut BTreeSet<String>) {
    for w in expr.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        if w.starts_with("LicenseRef-") {
            out.insert(w.to_string());
        }
    }
}

/// SPDX 2.3 section 7.9: the SHA1 of the package's files' sorted SHA1s.
fn verification_code(
    sbom: &Sbom,
    index: &std::collections::BTreeMap<&std::path::Path, usize>,
    files: &[std::path::PathBuf],
) -> String {
    use sha1::Digest;
    let mut sums: Vec<&str> = files
        .iter()
        .filter_map(|f| index.get(f.as_path()))
        .map(|i| sbom.files[*i].sha1.as_str())
        .collect();
    sums.sort();
    let d = sha1::Sha1::digest(sums.concat().as_bytes());
    crate::source::archive::hex(&d)
}

pub fn render(sbom: &Sbom) -> Result<Vec<u8>, SbomError> {
    let s = &sbom.subject;
    let mut comment = String::from("Written by trace from the image's files.");
    if let Some(src) = &s.source_name {
        comment.push_str(&format!(" Built from {src}"));
        if let Some(d) = &s.source_digest {
            comment.push_str(&format!(" ({d})"));
        }
        comment.push('.');
    }
    for t in &s.traces {
        comment.push_str(&format!(" Trace: {} (sha256:{}).", t.name, t.sha256));
    }
    let mut image = json!({
        "SPDXID": "SPDXRef-Image",
        "name": s.name,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "supplier": s.supplier.as_ref().map_or(NOASSERTION.to_string(), |x| image_supplier(x)),
        "comment": comment,
    });
    if let Some(src) = &s.source_name {
        let d = s.source_digest.as_deref().unwrap_or("no digest");
        image["sourceInfo"] = json!(format!("built by trace from the image {src} ({d})"));
    }
    if let Some(d) = &s.digest {
        image["versionInfo"] = json!(d);
        if let Some(hex) = d.strip_prefix("sha256:") {
            image["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": hex}]);
        }
    }
    if let Some(p) = super::cyclonedx::image_purl(s) {
        image["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p,
        }]);
    }
    // The files no package owns belong to the image itself.
    let unowned: Vec<std::path::PathBuf> = sbom
        .files
        .iter()
        .filter(|f| f.owner.is_none())
        .map(|f| f.path.clone())
        .collect();
    let index: std::collections::BTreeMap<&std::path::Path, usize> = sbom
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.as_path(), i))
        .collect();
    if !unowned.is_empty() {
        image["filesAnalyzed"] = json!(true);
        image["packageVerificationCode"] =
            json!({"packageVerificationCodeValue": verification_code(sbom, &index, &unowned)});
    }
    let mut packages = vec![image];
    let mut rels = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image",
    })];
    let mut licence_refs = BTreeSet::new();
    let file_id = |i: usize| format!("SPDXRef-File-{i}");
    for (i, p) in sbom.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{}-{i}", p.ecosystem.purl_type());
        let declared = p.license.clone().unwrap_or_else(|| NOASSERTION.into());
        refs(&declared, &mut licence_refs);
        let mut c = format!(
            "{} of its files present, {} of its recorded paths absent ({}).",
            p.present.len(),
            p.absent,
            if p.partial() { "partly kept" } else { "whole" }
        );
        c.push_str(&format!(" Metadata: {}.", p.source.display()));
        let mut pkg = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": supplier(&p.supplier),
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": !p.present.is_empty(),
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": declared,
            "copyrightText": NOASSERTION,
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p.purl,
            }],
            "comment": c,
        });
        if !p.present.is_empty() {
            pkg["packageVerificationCode"] = json!({"packageVerificationCodeValue": verification_code(sbom, &index, &p.present)});
        }
        if let Some(a) = &p.arch {
            pkg["summary"] = json!(format!("architecture {a}"));
        }
        packages.push(pkg);
        rels.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
        for f in &p.present {
            if let Some(fi) = index.get(f.as_path()) {
                rels.push(json!({"spdxElementId": id, "relationshipType": "CONTAINS", "relatedSpdxElement": file_id(*fi)}));
            }
        }
    }
    let mut files = Vec::new();
    for (i, f) in sbom.files.iter().enumerate() {
        files.push(json!({
            "SPDXID": file_id(i),
            "fileName": format!(".{}", f.path.display()),
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": f.sha1},
                {"algorithm": "SHA256", "checksumValue": f.sha256},
            ],
        }));
        if f.owner.is_none() {
            rels.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": file_id(i)}));
        }
    }
    let extracted: Vec<Value> = licence_refs
        .iter()
        .map(|r| {
            let name = r.trim_start_matches("LicenseRef-");
            json!({
                "licenseId": r,
                "name": name,
                "extractedText": format!("The licence a package's metadata names `{name}` (no SPDX identifier); see the package's copyright file."),
            })
        })
        .collect();
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("SBOM of {}", s.name),
        "creationInfo": {
            "created": s.created,
            "creators": [format!("Tool: trace-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "files": files,
        "relationships": rels,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = json!(extracted);
    }
    let id = content_id(&serde_json::to_vec(&doc)?);
    doc["documentNamespace"] = json!(format!("https://spdx.org/spdxdocs/trace-{id}"));
    Ok(serde_json::to_vec_pretty(&doc)?)
}
