//! Test fixtures made by other tools than ours, cached between runs: a
//! Debian root filesystem from debootstrap with python3 (plus curl and
//! nginx-light for the container tests), and OCI / docker-archive images
//! of it made by umoci and skopeo.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::cmd::{run, succeeds};

#[path = "fixtures_apps.rs"]
mod apps;

/// Bump to rebuild every cached fixture.
const VERSION: &str = "1";
const SUITE: &str = "bookworm";
const PACKAGES: &[&str] = &["python3", "curl", "nginx-light"];

pub fn cache_dir() -> PathBuf {
    std::env::var_os("TRACE_FIXTURES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/trace-fixtures"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/cache/trace-fixtures"))
        .join(format!("v{VERSION}"))
}

/// The Debian rootfs, made once: `debootstrap --variant=minbase`, then the
/// packages installed in a chroot with services prevented from starting.
pub fn debian_rootfs() -> Result<PathBuf> {
    let dir = cache_dir().join(format!("{SUITE}-rootfs"));
    // The marker sits beside the tree, so it is not part of the image.
    let done = cache_dir().join(format!("{SUITE}-rootfs.complete"));
    if done.exists() && dir.is_dir() {
        return Ok(dir);
    }
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    let tmp = cache_dir().join(format!("{SUITE}-rootfs.partial"));
    if tmp.exists() {
        unmount_all(&tmp);
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp)?;
    run(Command::new("debootstrap")
        .args(["--variant=minbase", SUITE])
        .arg(&tmp))?;
    let policy = tmp.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n")?;
    set_mode(&policy, 0o755)?;
    let proc = tmp.join("proc");
    run(Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(&proc))?;
    let installed = run(Command::new("chroot")
        .arg(&tmp)
        .args(["apt-get", "install", "-y", "-q", "--no-install-recommends"])
        .args(PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    let cleaned = run(Command::new("chroot").arg(&tmp).args(["apt-get", "clean"]));
    unmount_all(&tmp);
    installed?;
    cleaned?;
    fs::remove_file(&policy)?;
    fs::rename(&tmp, &dir)?;
    fs::write(&done, "")?;
    Ok(dir)
}

fn unmount_all(root: &Path) {
    let _ = succeeds(Command::new("umount").arg("-l").arg(root.join("proc")));
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))
}

/// OCI layout (umoci) and docker-archive / oci-archive (skopeo) copies of
/// the rootfs, tagged `full`.
pub fn debian_images() -> Result<(PathBuf, PathBuf, PathBuf)> {
    let rootfs = debian_rootfs()?;
    let base = cache_dir();
    let layout = base.join(format!("{SUITE}-oci"));
    let oci_archive = base.join(format!("{SUITE}-oci.tar"));
    let docker_archive = base.join(format!("{SUITE}-docker.tar"));
    let done = base.join(format!("{SUITE}-images.complete"));
    if done.exists() {
        return Ok((layout, oci_archive, docker_archive));
    }
    for p in [&layout, &oci_archive, &docker_archive] {
        if p.is_dir() {
            fs::remove_dir_all(p)?;
        } else if p.exists() {
            fs::remove_file(p)?;
        }
    }
    let image = format!("{}:full", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    // insert copies the tree with ownership, modes and xattrs as a layer.
    run(Command::new("umoci")
        .args(["insert", "--image", &image])
        .arg(&rootfs)
        .arg("/"))?;
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]))?;
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{image}"))
        .arg(format!("oci-archive:{}:full", oci_archive.display())))?;
    run(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{image}"))
        .arg(format!(
            "docker-archive:{}:trace/full:latest",
            docker_archive.display()
        )))?;
    fs::write(&done, "")?;
    Ok((layout, oci_archive, docker_archive))
}

pub fn ensure_all() -> Result<()> {
    let rootfs = debian_rootfs()?;
    if !rootfs.join("usr/bin/python3").exists() {
        bail!("fixture {} has no python3", rootfs.display());
    }
    debian_images()?;
    apps::apps_rootfs()?;
    Ok(())
}
