//! Builds `tracer-ebpf` for the bpf target with aya-build (nightly,
//! `-Z build-std=core`, bpf-linker) and leaves the object in OUT_DIR,
//! where `capture` embeds it.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "tracer-ebpf")
        .ok_or_else(|| anyhow!("tracer-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("tracer-ebpf manifest has no parent"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tracer-ebpf",
            root_dir: root.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )?;
    // A digest of the object, so that programs kept loaded by one build
    // of `trace` are never reused by another (`capture::kept`).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?);
    let object = std::fs::read(out.join("tracer")).context("reading the built eBPF object")?;
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&object, &mut h);
    println!(
        "cargo:rustc-env=TRACER_EBPF_DIGEST={:016x}",
        std::hash::Hasher::finish(&h)
    );
    Ok(())
}
