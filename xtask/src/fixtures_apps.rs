//! The "apps" fixture: the Debian rootfs plus git (with its Depends:
//! perl), ca-certificates (a trust store generated at install time) and
//! Pygments from PyPI (a package that imports its submodules lazily),
//! for the granularity tests. A cache key of its own, so the base
//! fixtures stay valid; made in a private directory and renamed into
//! place, so concurrent users never see half of it.
use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result};

use super::{SUITE, cache_dir, debian_rootfs, set_mode, unmount_all};
use crate::cmd::run;

/// Bump to rebuild this fixture alone.
const APPS_KEY: &str = "apps1";
const DEBIAN: &[&str] = &["git", "ca-certificates"];
const PYPI: &str = "pygments==2.21.0";

pub fn apps_rootfs() -> Result<PathBuf> {
    let name = format!("{SUITE}-{APPS_KEY}-rootfs");
    let dir = cache_dir().join(&name);
    let done = cache_dir().join(format!("{name}.complete"));
    if done.exists() && dir.is_dir() {
        return Ok(dir);
    }
    let base = debian_rootfs()?;
    let tmp = cache_dir().join(format!("{name}.partial-{}", std::process::id()));
    run(Command::new("cp").arg("-a").arg(&base).arg(&tmp))?;
    let policy = tmp.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n")?;
    set_mode(&policy, 0o755)?;
    run(Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(tmp.join("proc")))?;
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    let installed = run(Command::new("chroot")
        .arg(&tmp)
        .args(["apt-get", "update", "-q"])
        .envs(env))
    .and_then(|()| {
        run(Command::new("chroot")
            .arg(&tmp)
            .args(["apt-get", "install", "-y", "-q", "--no-install-recommends"])
            .args(DEBIAN)
            .envs(env))
    })
    .and_then(|()| run(Command::new("chroot").arg(&tmp).args(["apt-get", "clean"])));
    unmount_all(&tmp);
    installed?;
    fs::remove_file(&policy)?;
    // pip on the host (its own index set-up), into the image's
    // /usr/local site directory, compiled for the same Python minor.
    run(Command::new("python3")
        .args(["-m", "pip", "install", "-q", "--no-deps", "--target"])
        .arg(tmp.join("usr/local/lib/python3.11/dist-packages"))
        .arg(PYPI))?;
    if dir.exists() {
        // Someone else finished first; theirs is as good.
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    } else {
        fs::rename(&tmp, &dir)?;
    }
    fs::write(&done, "")?;
    Ok(dir)
}
