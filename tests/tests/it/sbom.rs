//! SBOMs of minimal and full images, checked against the image itself
//! (unpacked by umoci), its trimmed dpkg database, the official schemas
//! (cyclonedx-python-lib, spdx-tools), the NTIA minimum elements
//! (ntia-conformance-checker) and an independent scanner (cdxgen, which
//! reads image archives offline with trivy).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use crate::util::*;
use serde_json::Value;

fn tool(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} not set: run the tests with `cargo xtask test`"))
}

const PY: &str = "import json, decimal\nprint(json.dumps({'d': str(decimal.Decimal('1.1') + 1)}))";

fn ok(cmd: &mut TestCommand) -> std::process::Output {
    cmd.expect_success()
}

/// Traces `argv` chrooted into `root`; the trace is `dir/trace.json`.
fn trace_in(dir: &Path, root: &Path, argv: &[&str]) -> PathBuf {
    let r = run_in(dir, &["--root", root.to_str().unwrap()], argv);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout(), r.stderr());
    dir.join("trace.json")
}

fn build(cwd: &Path, args: &[&str]) -> String {
    let out = ok(TestCommand::trace()
        .current_dir(cwd)
        .arg("build")
        .args(args));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// Unpacks `layout:tag` with umoci; returns the root filesystem.
fn unpack(work: &Path, layout: &Path, tag: &str) -> PathBuf {
    let bundle = work.join(format!("bundle-{tag}"));
    ok(TestCommand::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&bundle));
    bundle.join("rootfs")
}

fn validate(kind: &str, doc: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/validate_sbom.py");
    ok(TestCommand::new(tool("TRACE_SBOM_PYTHON"))
        .arg(script)
        .arg(kind)
        .arg(doc));
}

fn ntia(doc: &Path) {
    let bin = tool("TRACE_SBOM_PYTHON").with_file_name("sbomcheck");
    let out = ok(TestCommand::new(bin)
        .args(["-c", "ntia", "-r", "json"])
        .arg(doc));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["isNtiaConformant"], true, "{r}");
}

fn prop<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["value"]
        .as_str()
}

/// Every file component, nested or not: path -> sha256.
fn cdx_files(doc: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(cs: &Value, out: &mut BTreeMap<String, String>) {
        for c in cs.as_array().into_iter().flatten() {
            if c["type"] == "file" {
                let h = c["hashes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|h| h["alg"] == "SHA-256")
                    .unwrap();
                out.insert(
                    c["name"].as_str().unwrap().to_string(),
                    h["content"].as_str().unwrap().to_string(),
                );
            }
            walk(&c["components"], out);
        }
    }
    walk(&doc["components"], &mut out);
    out
}

fn cdx_packages<'a>(doc: &'a Value, ty: &str) -> Vec<&'a Value> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("pkg:{ty}/")))
        })
        .collect()
}

/// (name, version, arch) of each installed package in a dpkg status file.
fn dpkg_status(root: &Path) -> BTreeSet<(String, String, String)> {
    let text = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    text.split("\n\n")
        .filter(|p| p.contains("Status: install ok installed"))
        .map(|p| {
            let f = |k: &str| {
                p.lines()
                    .find_map(|l| l.strip_prefix(k)?.strip_prefix(": "))
                    .unwrap_or("")
                    .to_string()
            };
            (f("Package"), f("Version"), f("Architecture"))
        })
        .collect()
}

/// Every regular file under `root`, as image paths.
fn regular_files(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                out.insert(format!("/{}", p.strip_prefix(root).unwrap().display()));
            }
        }
    }
    out
}

/// sha256sum (coreutils) of each image path.
fn sha256sums(root: &Path, paths: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let list: Vec<&String> = paths.iter().collect();
    for chunk in list.chunks(500) {
        let o = ok(TestCommand::new("sha256sum").args(chunk.iter().map(|p| root.join(&p[1..]))));
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let (h, p) = line.split_once("  ").unwrap();
            let p = Path::new(p).strip_prefix(root).unwrap();
            out.insert(format!("/{}", p.display()), h.to_string());
        }
    }
    out
}

/// What a dpkg file list finds in an unpacked image: the regular files
/// (through symlinked directories such as /bin -> usr/bin) and how many
/// entries are not there at all.
fn listed_files(root: &Path, list: &str) -> (BTreeSet<String>, usize) {
    let (mut files, mut absent) = (BTreeSet::new(), 0);
    for entry in list.lines().filter(|l| *l != "/." && !l.is_empty()) {
        // Through symlinked directories (/lib -> usr/lib) to the real path.
        let p = root.join(&entry[1..]);
        let found = p
            .parent()
            .and_then(|d| fs::canonicalize(d).ok())
            .filter(|d| d.starts_with(root))
            .map(|d| d.join(p.file_name().unwrap()))
            .and_then(|q| fs::symlink_metadata(&q).ok().map(|m| (q, m)));
        match found {
            None => absent += 1,
            Some((q, m)) if m.is_file() => {
                files.insert(format!("/{}", q.strip_prefix(root).unwrap().display()));
            }
            Some(_) => {}
        }
    }
    (files, absent)
}

/// The minimal image, its trimmed dpkg database and its SBOM (both
/// formats) say the same; the documents pass the independent validators.
#[test]
fn minimal_image_sbom_agrees_with_its_dpkg_database_and_files() {
    let dir = tempdir();
    let work = dir.path();
    let rootfs = fixtures().join("bookworm-rootfs");
    let trace = trace_in(work, &rootfs, &["/usr/bin/python3", "-c", PY]);
    let out = work.join("min.oci");
    let summary = build(
        work,
        &[
            "--from",
            rootfs.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--tag",
            "py",
        ],
    );
    let cdx_path = work.join("min.oci.cdx.json");
    assert!(
        summary.contains(&format!("sbom: {}", cdx_path.display())),
        "{summary}"
    );
    let cdx = json(&cdx_path);
    assert_eq!(cdx["specVersion"], "1.6");
    let root = unpack(work, &out, "py");

    // Packages: the SBOM's deb components are the trimmed status.
    let status = dpkg_status(&root);
    let debs = cdx_packages(&cdx, "deb");
    let sbom_debs: BTreeSet<(String, String, String)> = debs
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["version"].as_str().unwrap().to_string(),
                prop(c, "trace:arch").unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        status.iter().any(|p| p.0 == "libpython3.11-stdlib"),
        "{status:?}"
    );
    assert_eq!(sbom_debs, status);

    // Files: every regular file of the image, with its sha256, and no other.
    let files = cdx_files(&cdx);
    let on_disk = regular_files(&root);
    assert_eq!(files.keys().cloned().collect::<BTreeSet<_>>(), on_disk);
    assert_eq!(files, sha256sums(&root, &on_disk));

    // Each package's files are exactly what its list finds in the image;
    // partly kept packages say so, with the count of absent entries.
    let mut partial = 0;
    for c in &debs {
        let (name, arch) = (c["name"].as_str().unwrap(), prop(c, "trace:arch").unwrap());
        let info = root.join("var/lib/dpkg/info");
        let list = fs::read_to_string(info.join(format!("{name}:{arch}.list")))
            .or_else(|_| fs::read_to_string(info.join(format!("{name}.list"))))
            .unwrap_or_else(|_| panic!("no file list for {name}"));
        let (want, absent) = listed_files(&root, &list);
        let nested: BTreeSet<String> = c["components"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(nested, want, "{name}");
        assert_eq!(
            prop(c, "trace:files-absent"),
            Some(absent.to_string().as_str()),
            "{name}"
        );
        assert_eq!(
            prop(c, "trace:kept"),
            Some(if absent > 0 { "partial" } else { "whole" }),
            "{name}"
        );
        partial += usize::from(absent > 0);
        let purl = c["purl"].as_str().unwrap();
        assert!(
            purl.starts_with(&format!("pkg:deb/debian/{name}@")),
            "{purl}"
        );
        assert!(purl.contains("distro=debian-12"), "{purl}");
        assert!(!purl[purl.find('@').unwrap()..].contains('+'), "{purl}");
    }
    assert!(partial > 0);
    // The subject: the image's digest, its source, its trace.
    let subject = &cdx["metadata"]["component"];
    assert_eq!(subject["type"], "container");
    let index = json(&out.join("index.json"));
    assert_eq!(subject["version"], index["manifests"][0]["digest"]);
    assert!(
        prop(subject, "trace:trace")
            .unwrap()
            .starts_with(trace.to_str().unwrap())
    );
    validate("cyclonedx", &cdx_path);

    // SPDX from the same build inputs: same packages and files, valid,
    // NTIA-conformant once a supplier is named.
    let out2 = work.join("min2.oci");
    let spdx_path = work.join("min2.spdx.json");
    build(
        work,
        &[
            "--from",
            rootfs.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "-o",
            out2.to_str().unwrap(),
            "--tag",
            "py",
            "--sbom-format",
            "spdx-json",
            "--sbom",
            spdx_path.to_str().unwrap(),
            "--sbom-supplier",
            "Organization: trace tests",
        ],
    );
    let spdx = json(&spdx_path);
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
    let spdx_debs: BTreeSet<String> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().into_iter().flatten())
        .filter_map(|r| r["referenceLocator"].as_str())
        .filter(|l| l.starts_with("pkg:deb/"))
        .map(str::to_string)
        .collect();
    let cdx_purls: BTreeSet<String> = debs
        .iter()
        .map(|c| c["purl"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(spdx_debs, cdx_purls);
    let spdx_files: BTreeMap<String, String> = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let h = f["checksums"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["algorithm"] == "SHA256")
                .unwrap();
            (
                f["fileName"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('.')
                    .to_string(),
                h["checksumValue"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(spdx_files, files);
    validate("spdx", &spdx_path);
    ntia(&spdx_path);
}

/// The same inputs give the same bytes; `trace sbom` of the minimal image
/// lists what the build's SBOM lists.
#[test]
fn sbom_bytes_are_deterministic_and_trace_sbom_agrees() {
    let dir = tempdir();
    let work = dir.path();
    let rootfs = fixtures().join("bookworm-rootfs");
    let trace = trace_in(work, &rootfs, &["/usr/bin/python3", "-c", PY]);
    let mut docs = Vec::new();
    for n in ["a", "b"] {
        let d = work.join(n);
        fs::create_dir(&d).unwrap();
        fs::copy(&trace, d.join("t.json")).unwrap();
        for fmt in ["cyclonedx-json", "spdx-json"] {
            let name = format!("min-{fmt}.oci");
            build(
                &d,
                &[
                    "--from",
                    rootfs.to_str().unwrap(),
                    "--trace",
                    "t.json",
                    "-o",
                    &name,
                    "--tag",
                    "t",
                    "--sbom-format",
                    fmt,
                ],
            );
            let suffix = if fmt == "spdx-json" { "spdx" } else { "cdx" };
            docs.push(fs::read(d.join(format!("{name}.{suffix}.json"))).unwrap());
        }
    }
    assert_eq!(
        docs[0], docs[2],
        "CycloneDX differs between identical builds"
    );
    assert_eq!(docs[1], docs[3], "SPDX differs between identical builds");
    assert_ne!(docs[0], docs[1]);

    let min = work.join("a/min-cyclonedx-json.oci");
    let from = |p: &Path| {
        let out = ok(TestCommand::trace()
            .args(["sbom", "--from"])
            .arg(format!("oci:{}:t", p.display())));
        out.stdout
    };
    let (x, y) = (from(&min), from(&min));
    assert_eq!(x, y);
    let built: Value = serde_json::from_slice(&docs[0]).unwrap();
    let read: Value = serde_json::from_slice(&x).unwrap();
    let purls = |d: &Value| -> BTreeSet<String> {
        d["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["purl"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(purls(&read), purls(&built));
    assert_eq!(cdx_files(&read), cdx_files(&built));
    // The image trace built names its source; the digest is its own.
    assert_eq!(
        read["metadata"]["component"]["version"],
        built["metadata"]["component"]["version"]
    );
}

/// A distribution installed from PyPI appears as pkg:pypi while its
/// metadata is kept, and is gone when its files are excluded.
#[test]
fn pypi_distribution_appears_and_disappears_with_its_files() {
    let dir = tempdir();
    let work = dir.path();
    let rootfs = fixtures().join("bookworm-apps1-rootfs");
    let script = "import importlib.metadata, pygments\nassert importlib.metadata.version('pygments') == '2.21.0'";
    let trace = trace_in(work, &rootfs, &["/usr/bin/python3", "-c", script]);
    let site = "/usr/local/lib/python3.11/dist-packages";
    let sbom_of = |name: &str, extra: &[&str]| {
        let out = work.join(name);
        let mut args = vec![
            "--from",
            rootfs.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        build(work, &args);
        json(&work.join(format!("{name}.cdx.json")))
    };
    let kept = sbom_of("kept.oci", &[]);
    let pypi = cdx_packages(&kept, "pypi");
    assert_eq!(pypi.len(), 1, "{pypi:?}");
    assert_eq!(pypi[0]["purl"], "pkg:pypi/pygments@2.21.0", "{}", pypi[0]);
    let nested: Vec<&str> = pypi[0]["components"]
        .as_array()
        .unwrap_or_else(|| panic!("no files: {}", pypi[0]))
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        nested.contains(&format!("{site}/pygments/__init__.py").as_str()),
        "{nested:?}"
    );
    assert!(nested.contains(&format!("{site}/pygments-2.21.0.dist-info/METADATA").as_str()));
    // Only the modules the run imported are there: the rest is absent.
    assert_eq!(prop(pypi[0], "trace:kept"), Some("partial"));
    validate("cyclonedx", &work.join("kept.oci.cdx.json"));

    let gone = sbom_of(
        "excluded.oci",
        &[
            "--exclude",
            &format!("{site}/pygments/**"),
            "--exclude",
            &format!("{site}/pygments-*.dist-info/**"),
        ],
    );
    assert!(cdx_packages(&gone, "pypi").is_empty());
    assert!(!cdx_files(&gone).keys().any(|p| p.contains("/pygments")));
    // The OS packages are still listed.
    assert!(!cdx_packages(&gone, "deb").is_empty());
}

/// (name, version, arch) of the binary deb packages cdxgen's scan lists.
fn cdxgen_debs(image: &Path, out: &Path) -> BTreeSet<(String, String, String)> {
    ok(TestCommand::new(tool("TRACE_NODE"))
        .arg(fs::canonicalize(tool("TRACE_CDXGEN")).unwrap())
        .args(["-t", "docker", "--no-install-deps", "-o"])
        .arg(out)
        .arg(image)
        .env("CDXGEN_TEMP_DIR", out.parent().unwrap())
        .env("FETCH_LICENSE", "false"));
    let doc = json(out);
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        // trivy marks installed (binary) packages with a PkgID; the source
        // packages it adds have none.
        .filter(|c| {
            c["purl"]
                .as_str()
                .is_some_and(|p| p.starts_with("pkg:deb/"))
                && prop(c, "aquasecurity:trivy:PkgID").is_some()
        })
        .map(|c| {
            let purl = c["purl"].as_str().unwrap();
            let arch = purl
                .split(['?', '&'])
                .find_map(|q| q.strip_prefix("arch="))
                .unwrap_or("")
                .to_string();
            (
                c["name"].as_str().unwrap().to_string(),
                c["version"].as_str().unwrap().to_string(),
                arch,
            )
        })
        .collect()
}

fn our_debs(doc: &Value) -> BTreeSet<(String, String, String)> {
    cdx_packages(doc, "deb")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["version"].as_str().unwrap().to_string(),
                prop(c, "trace:arch").unwrap().to_string(),
            )
        })
        .collect()
}

/// An independent scanner reading the image archives finds the same OS
/// packages as our SBOM, for the full image and for the minimal one.
#[test]
fn cdxgen_finds_the_same_os_packages() {
    let dir = tempdir();
    let work = dir.path();
    let full = fixtures().join("bookworm-docker.tar");
    let ours_full = work.join("full.cdx.json");
    ok(TestCommand::trace()
        .args(["sbom", "--from"])
        .arg(&full)
        .arg("-o")
        .arg(&ours_full));
    let ours_full = our_debs(&json(&ours_full));
    assert!(ours_full.len() > 100);
    assert_eq!(
        cdxgen_debs(&full, &work.join("cdxgen-full.json")),
        ours_full
    );

    let rootfs = fixtures().join("bookworm-rootfs");
    let trace = trace_in(work, &rootfs, &["/usr/bin/python3", "-c", PY]);
    let min = work.join("min.tar");
    build(
        work,
        &[
            "--from",
            full.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "-o",
            min.to_str().unwrap(),
            "--format",
            "docker-archive",
            "--tag",
            "min:1",
        ],
    );
    let ours_min = our_debs(&json(&work.join("min.tar.cdx.json")));
    assert!(ours_min.len() < ours_full.len() && !ours_min.is_empty());
    assert_eq!(cdxgen_debs(&min, &work.join("cdxgen-min.json")), ours_min);
}

#[test]
fn bad_sbom_requests_fail_cleanly() {
    let dir = tempdir();
    let work = dir.path();
    let out = TestCommand::trace()
        .args(["sbom", "--from"])
        .arg(work.join("nothing"))
        .expect_code(125);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("trace: error: "), "{err}");

    // A --sbom in a missing directory is refused before the image is made.
    let rootfs = fixtures().join("bookworm-rootfs");
    let trace = trace_in(work, &rootfs, &["/usr/bin/true"]);
    let img = work.join("img.oci");
    let out = TestCommand::trace()
        .arg("build")
        .args([
            "--from",
            rootfs.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "-o",
            img.to_str().unwrap(),
        ])
        .arg("--sbom")
        .arg(work.join("no/such/dir/x.json"))
        .expect_code(125);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!img.exists());

    TestCommand::trace()
        .args([
            "build",
            "--from",
            "x",
            "--trace",
            "t",
            "-o",
            "y",
            "--sbom",
            "s.json",
            "--no-sbom",
        ])
        .expect_code(2);
}
