//! The container's process: its command, environment, working directory
//! and user, resolved against the image and checked before anything is
//! unpacked (runc would refuse them only once started, where its failure
//! would look like the command's own).
use std::path::Path;

use oci_spec::runtime::{Capability, LinuxCapabilitiesBuilder};

use super::{ContainerError, Request};
use crate::{runtime::options::EnvVar, source::rootfs::Rootfs};

/// What the container runs, and as whom.
pub struct Process {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
}

/// The request's process over the image's configuration (its command
/// was checked with [`check_command`] before the image was opened).
pub fn resolve(
    req: &Request,
    fs: &dyn Rootfs,
    config: Option<&oci_spec::image::Config>,
) -> Result<Process, ContainerError> {
    let o = req.options;
    let env = environment(config.and_then(|c| c.env().clone()), &o.envs)?;
    let cwd = workdir(
        o.workdir.as_deref(),
        config.and_then(|c| c.working_dir().as_deref()),
    )?;
    let (uid, gid) = match (o.user.as_deref(), config.and_then(|c| c.user().as_deref())) {
        (Some(u), _) => {
            user(fs, u).map_err(|why| ContainerError::BadUser(format!("--user {u:?}"), why))?
        }
        (None, Some(u)) if !u.is_empty() => user(fs, u)
            .map_err(|why| ContainerError::BadUser(format!("the image's User {u:?}"), why))?,
        (None, _) => (0, 0),
    };
    Ok(Process {
        argv: req.argv.to_vec(),
        env,
        cwd,
        uid,
        gid,
    })
}

/// Why a `uid[:gid]` or `name[:group]` cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("no user {0:?} in the image's /etc/passwd")]
    NoUser(String),
    #[error("no group {0:?} in the image's /etc/group")]
    NoGroup(String),
    #[error("expected uid[:gid] or name[:group]")]
    Syntax,
}

/// `(name, id, primary gid)` lines of the image's passwd or group file.
fn id_file(fs: &dyn Rootfs, file: &str) -> Vec<(String, u32, u32)> {
    let text = fs.read_all(Path::new(file)).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let id = f.get(2)?.parse().ok()?;
            let gid = f.get(3).and_then(|v| v.parse().ok()).unwrap_or(id);
            Some((f.first()?.to_string(), id, gid))
        })
        .collect()
}

/// `uid[:gid]` or `name[:group]` as docker reads it: names looked up in
/// the image; a bare uid takes its passwd entry's group, else 0.
fn user(fs: &dyn Rootfs, spec: &str) -> Result<(u32, u32), UserError> {
    let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
    if u.is_empty() || g.contains(':') || spec.ends_with(':') {
        return Err(UserError::Syntax);
    }
    let passwd = id_file(fs, "/etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, passwd.iter().find(|e| e.1 == n).map_or(0, |e| e.2)),
        Err(_) => passwd
            .iter()
            .find(|e| e.0 == u)
            .map(|e| (e.1, e.2))
            .ok_or_else(|| UserError::NoUser(u.into()))?,
    };
    let gid = match (g, g.parse::<u32>()) {
        ("", _) => primary,
        (_, Ok(n)) => n,
        (name, Err(_)) => id_file(fs, "/etc/group")
            .iter()
            .find(|e| e.0 == name)
            .map(|e| e.1)
            .ok_or_else(|| UserError::NoGroup(name.into()))?,
    };
    Ok((uid, gid))
}

/// The capability set docker and podman give a container by default: a
/// test suite that works under them works here (oci-spec's default keeps
/// only three, and e.g. nginx cannot chown its temp dirs with those).
pub fn default_capabilities() -> Result<oci_spec::runtime::LinuxCapabilities, ContainerError> {
    use Capability::*;
    let set: oci_spec::runtime::Capabilities = [
        Chown,
        DacOverride,
        Fowner,
        Fsetid,
        Kill,
        Setgid,
        Setuid,
        Setpcap,
        NetBindService,
        NetRaw,
        SysChroot,
        Mknod,
        AuditWrite,
        Setfcap,
    ]
    .into_iter()
    .collect();
    // Inheritable and ambient empty, as docker has them: the builder's
    // defaults would hand three capabilities to a non-root user's program
    // through exec, which docker does not.
    Ok(LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()?)
}

/// The image's Env with `--env` over it; every entry `K=V` with a
/// non-empty K and no NUL (runc fails on anything else, after starting).
fn environment(image: Option<Vec<String>>, over: &[EnvVar]) -> Result<Vec<String>, ContainerError> {
    let good = EnvVar::is_valid;
    let mut env = image.unwrap_or_else(|| {
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
    });
    if let Some(bad) = env.iter().find(|kv| !good(kv)) {
        return Err(ContainerError::ImageEnv(bad.clone()));
    }
    for kv in over {
        env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(kv.key()));
        env.push(kv.to_string());
    }
    Ok(env)
}

/// `--workdir`, else the image's WorkingDir, else `/`: absolute.
fn workdir(over: Option<&str>, image: Option<&str>) -> Result<String, ContainerError> {
    let relative = |w: &str| !w.starts_with('/') || w.contains('\0');
    match (over, image.filter(|w| !w.is_empty())) {
        (Some(w), _) if relative(w) => Err(ContainerError::BadWorkdir(w.into())),
        (Some(w), _) => Ok(w.into()),
        (None, Some(w)) if relative(w) => Err(ContainerError::ImageWorkdir(w.into())),
        (None, Some(w)) => Ok(w.into()),
        (None, None) => Ok("/".into()),
    }
}

/// Checks what the runtime would only refuse once started, where its
/// failure would look like the command's own.
pub fn check_command(argv: &[String]) -> Result<(), ContainerError> {
    match argv.first() {
        Some(p) if !p.is_empty() && !argv.iter().any(|a| a.contains('\0')) => Ok(()),
        _ => Err(ContainerError::EmptyCommand),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::source::dir::DirRootfs;

    #[test]
    fn image_user_by_name_or_number() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/false\n",
        )
        .unwrap();
        fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\napp:x:1001:\n",
        )
        .unwrap();
        let fs = DirRootfs::open(d.path()).unwrap();
        assert_eq!(user(&fs, "app").unwrap(), (1000, 1001));
        assert_eq!(user(&fs, "app:staff").unwrap(), (1000, 50));
        assert_eq!(user(&fs, "1000").unwrap(), (1000, 1001));
        assert_eq!(user(&fs, "4242:7").unwrap(), (4242, 7));
        assert_eq!(user(&fs, "4242").unwrap(), (4242, 0));
        assert_eq!(
            user(&fs, "nobody-here"),
            Err(UserError::NoUser("nobody-here".into()))
        );
        assert_eq!(
            user(&fs, "app:wheel"),
            Err(UserError::NoGroup("wheel".into()))
        );
        for bad in ["", ":0", "app:", "1:2:3"] {
            assert_eq!(user(&fs, bad), Err(UserError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn environment_and_workdir_are_checked() {
        let img = Some(vec!["PATH=/bin".to_string(), "A=1".to_string()]);
        let over = ["A=2".parse().unwrap(), "B=".parse().unwrap()];
        let env = environment(img.clone(), &over).unwrap();
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B="]);
        for bad in ["=x", "NOVALUE", "A\0B=1"] {
            assert!(matches!(
                environment(Some(vec![bad.into()]), &[]),
                Err(ContainerError::ImageEnv(_))
            ));
        }
        assert_eq!(workdir(None, None).unwrap(), "/");
        assert_eq!(workdir(None, Some("")).unwrap(), "/");
        assert_eq!(workdir(Some("/w"), Some("rel")).unwrap(), "/w");
        assert!(matches!(
            workdir(None, Some("rel")),
            Err(ContainerError::ImageWorkdir(_))
        ));
        assert!(matches!(
            workdir(Some("rel"), None),
            Err(ContainerError::BadWorkdir(_))
        ));
        assert!(check_command(&["".into()]).is_err());
        assert!(check_command(&[]).is_err());
        assert!(check_command(&["sh".into()]).is_ok());
    }
}
