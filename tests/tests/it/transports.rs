//! Image references for files, in and out: `oci:DIR[:TAG]`,
//! `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:NAME]` name the same
//! images as the plain paths, select by tag, and write tagged images. No
//! engine is needed for any of them (the engines are in engines.rs).

use std::fs;

use crate::util::*;
use serde_json::Value;

fn trace() -> TestCommand {
    TestCommand::trace()
}

fn json(p: &std::path::Path) -> Value {
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

/// The manifest an OCI layout's index names first.
fn first_manifest(layout: &std::path::Path) -> Value {
    let index = json(&layout.join("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    json(&layout.join("blobs/sha256").join(&digest[7..]))
}

#[test]
fn every_file_transport_names_the_same_image() {
    let work = tempdir();
    let t = work.path().join("t.json");
    let o = trace()
        .args(["run", "--root"])
        .arg(fixtures().join("bookworm-rootfs"))
        .arg("-o")
        .arg(&t)
        .args(["--", "/bin/cat", "/etc/debian_version"])
        .run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = fixtures();
    let sources = [
        format!("oci:{}:full", f.join("bookworm-oci").display()),
        format!("oci-archive:{}:full", f.join("bookworm-oci.tar").display()),
        format!("docker-archive:{}", f.join("bookworm-docker.tar").display()),
        // skopeo wrote docker.io/trace/full:latest: a bare name means that,
        // as docker reads it.
        format!(
            "docker-archive:{}:trace/full",
            f.join("bookworm-docker.tar").display()
        ),
    ];
    let mut kept = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let report = work.path().join(format!("r{i}.json"));
        let o = trace()
            .args(["build", "--from", src, "--trace"])
            .arg(&t)
            .arg("-o")
            .arg(work.path().join(format!("o{i}")))
            .arg("--report")
            .arg(&report)
            .run();
        assert!(
            o.status.success(),
            "{src}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        kept.push(json(&report)["kept"].clone());
    }
    assert!(kept[0]["/usr/bin/cat"].is_string());
    for (k, src) in kept.iter().zip(&sources) {
        assert_eq!(k, &kept[0], "{src}");
    }
    // A tag or name the image does not have: one line, exit 125.
    for src in [
        format!("oci:{}:nope", f.join("bookworm-oci").display()),
        format!(
            "docker-archive:{}:other/x:1",
            f.join("bookworm-docker.tar").display()
        ),
        // The wrong form for the transport.
        format!("oci-archive:{}", f.join("bookworm-oci").display()),
        format!("oci:{}", f.join("bookworm-docker.tar").display()),
        format!("docker-archive:{}", f.join("bookworm-oci.tar").display()),
    ] {
        let out = work.path().join("never");
        let o = trace()
            .args(["build", "--from", &src, "--trace"])
            .arg(&t)
            .arg("-o")
            .arg(&out)
            .run();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{src}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(!out.exists());
    }

    // Out: the reference's tag is the image's name.
    let oci = work.path().join("tagged.oci");
    let da = work.path().join("tagged.tar");
    for (target, extra) in [
        (format!("oci:{}:app:1", oci.display()), vec![]),
        (
            format!("docker-archive:{}:app:1", da.display()),
            vec!["--tag", "app:1"],
        ),
    ] {
        let o = trace()
            .args(["build", "--from"])
            .arg(f.join("bookworm-docker.tar"))
            .arg("--trace")
            .arg(&t)
            .args(["-o", &target])
            .args(extra)
            .run();
        assert!(
            o.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let index = json(&oci.join("index.json"));
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "app:1"
    );
    // skopeo finds it by that tag, and reads the docker archive by name.
    for r in [
        format!("oci:{}:app:1", oci.display()),
        format!("docker-archive:{}:app:1", da.display()),
    ] {
        let o = TestCommand::new("skopeo").args(["inspect", &r]).run();
        assert!(
            o.status.success(),
            "{r}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A tag that contradicts --tag, a format that contradicts the transport.
    for (target, extra) in [
        (
            format!("oci:{}:a", work.path().join("x1").display()),
            vec!["--tag", "b"],
        ),
        (
            format!("oci:{}", work.path().join("x2").display()),
            vec!["--format", "docker-archive"],
        ),
    ] {
        let o = trace()
            .args(["build", "--from"])
            .arg(f.join("bookworm-docker.tar"))
            .arg("--trace")
            .arg(&t)
            .args(["-o", &target])
            .args(extra)
            .run();
        assert_eq!(o.status.code(), Some(125));
        assert!(!work.path().join("x1").exists() && !work.path().join("x2").exists());
    }
}

/// Layers compressed with zstd (`skopeo copy --dest-compress-format zstd`,
/// `podman push --compression-format zstd`, a containerd store's `docker
/// save`) are read like gzip ones: the container runs from them and the
/// build keeps the same layer, byte for byte.
#[test]
fn zstd_layers_run_and_build_like_gzip_ones() {
    let work = tempdir();
    let f = fixtures();
    let zstd = work.path().join("zstd");
    let o = TestCommand::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--dest-compress-format",
            "zstd",
        ])
        .arg(format!("oci:{}:full", f.join("bookworm-oci").display()))
        .arg(format!("oci:{}:full", zstd.display()))
        .run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        first_manifest(&zstd)["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // A cache of its own, empty: the layer is decompressed, not found
    // under the diff_id the gzip fixture shares.
    let cache = work.path().join("cache");
    let t = work.path().join("t.json");
    let o = trace()
        .env("TRACE_CACHE_DIR", &cache)
        .args(["run", "-o"])
        .arg(&t)
        .arg("--image")
        .arg(format!("oci:{}:full", zstd.display()))
        .args(["--", "/bin/cat", "/etc/debian_version"])
        .run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        o.stdout,
        fs::read(f.join("bookworm-rootfs/etc/debian_version")).unwrap()
    );
    let mut layers = Vec::new();
    for (i, src) in [
        format!("oci:{}:full", zstd.display()),
        format!("oci:{}:full", f.join("bookworm-oci").display()),
    ]
    .iter()
    .enumerate()
    {
        let out = work.path().join(format!("o{i}"));
        let o = trace()
            .env("TRACE_CACHE_DIR", work.path().join(format!("cache{i}")))
            .args(["build", "--from", src, "--trace"])
            .arg(&t)
            .arg("-o")
            .arg(&out)
            .args(["--format", "oci"])
            .run();
        assert!(
            o.status.success(),
            "{src}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        layers.push(first_manifest(&out)["layers"].clone());
    }
    assert_eq!(layers[0], layers[1]);
}
