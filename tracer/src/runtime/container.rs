//! Running a command inside an image with a real OCI runtime (runc): the
//! image's filesystem under an overlay, so the run's writes never touch
//! the source, and an OCI runtime bundle whose `config.json` is built
//! with the oci-spec types. Everything made here is removed on drop.
use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Command,
};

use oci_spec::runtime::{
    Capability, LinuxCapabilitiesBuilder, LinuxNamespaceType, Mount, MountBuilder, Spec,
    UserBuilder,
};

use super::{
    leftovers,
    options::{BindMount, EnvVar},
    unpack,
};
use crate::source::{self, ImageRef, rootfs::Rootfs, transport::TransportError};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no OCI runtime: neither runc nor crun is on PATH (or pass --runtime)")]
    NoRuntime,
    #[error(
        "crun does not work with this machine's hybrid cgroups (cgroup v2 is not mounted at /sys/fs/cgroup); use runc (--runtime runc)"
    )]
    CrunHybrid,
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("--mount {spec}: {source}")]
    MountSource {
        spec: String,
        #[source]
        source: io::Error,
    },
    #[error("the image's Env entry {0:?} is not K=V with a non-empty name K")]
    ImageEnv(String),
    #[error("--workdir {0:?}: not an absolute path")]
    BadWorkdir(String),
    #[error("the image's WorkingDir {0:?} is not an absolute path")]
    ImageWorkdir(String),
    #[error("{0}: {1}")]
    BadUser(String, UserError),
    #[error("the command to run in the container is empty")]
    EmptyCommand,
    #[error("the runtime spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("seccomp profile {0}: {1}")]
    Seccomp(PathBuf, #[source] serde_json::Error),
    #[error("{0:?} cannot be used in an overlay mount option")]
    OverlayPath(PathBuf),
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

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// What to run, and how.
pub struct Request<'a> {
    pub image: &'a ImageRef,
    pub runtime: Option<&'a Path>,
    pub mounts: &'a [BindMount],
    pub env: &'a [EnvVar],
    pub workdir: Option<&'a str>,
    /// `uid[:gid]` or `name[:group]` over the image's User.
    pub user: Option<&'a str>,
    /// A network namespace of the container's own instead of the host's.
    pub network_none: bool,
    /// A seccomp profile (docker / OCI `linux.seccomp` format) to apply.
    pub seccomp: Option<&'a Path>,
    pub argv: &'a [String],
    /// Cgroup path for the container, relative to the cgroup root (the
    /// trace's scope, so the container's processes are in it).
    pub cgroup_path: String,
}

/// A ready bundle. `command()` starts it; dropping it cleans up.
pub struct Prepared {
    dir: BundleDir,
    merged: PathBuf,
    mounted: bool,
    id: String,
    runtime: PathBuf,
    /// Destinations of `--mount`: host paths, never part of the image.
    pub bind_targets: Vec<String>,
    /// The runtime invocation that runs the container in the foreground.
    pub command_argv: Vec<String>,
}

fn find_runtime(explicit: Option<&Path>) -> Result<PathBuf, ContainerError> {
    let found = match explicit {
        Some(p) if p.components().count() > 1 => Some(p.to_path_buf()),
        Some(name) => which(name.as_os_str()),
        None => which("runc".as_ref()).or_else(|| which("crun".as_ref())),
    }
    .ok_or(ContainerError::NoRuntime)?;
    if found.file_name().is_some_and(|n| n == "crun")
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return Err(ContainerError::CrunHybrid);
    }
    Ok(found)
}

fn which(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
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

/// A bind mount with an existing source, as the runtime spec says it.
fn bind(b: &BindMount) -> Result<Mount, ContainerError> {
    let (src, dst, ro) = (&b.src, &b.dst, b.read_only);
    if let Err(source) = fs::metadata(src) {
        return Err(ContainerError::MountSource {
            spec: b.to_string(),
            source,
        });
    }
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    options.push(if ro { "ro" } else { "rw" }.to_string());
    let m = MountBuilder::default()
        .destination(dst)
        .source(src)
        .typ("bind")
        .options(options)
        .build()?;
    Ok(m)
}

/// The capability set docker and podman give a container by default: a
/// test suite that works under them works here (oci-spec's default keeps
/// only three, and e.g. nginx cannot chown its temp dirs with those).
fn default_capabilities() -> Result<oci_spec::runtime::LinuxCapabilities, ContainerError> {
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
    Ok(LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
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

/// A bundle directory of this run, removed with all it holds on drop
/// (after the overlay on it is unmounted).
struct BundleDir(PathBuf);

impl BundleDir {
    fn create() -> Result<BundleDir, ContainerError> {
        let path = std::env::temp_dir().join(leftovers::unique_name("trace-bundle-"));
        fs::create_dir(&path).map_err(io_err(format!("creating {}", path.display())))?;
        leftovers::record_path(&path);
        Ok(BundleDir(path))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for BundleDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Opens the image, checks the configuration, lays out the overlay and
/// writes the bundle.
pub fn prepare(req: &Request) -> Result<Prepared, ContainerError> {
    let runtime = find_runtime(req.runtime)?;
    check_command(req.argv)?;
    let image = req.image.open()?;
    // Everything the runtime would refuse is checked before the image is
    // unpacked and long before the runtime starts.
    let fs = image.rootfs.as_ref();
    let config = image.config.as_ref().and_then(|c| c.config().clone());
    let env = environment(config.as_ref().and_then(|c| c.env().clone()), req.env)?;
    let cwd = workdir(
        req.workdir,
        config.as_ref().and_then(|c| c.working_dir().as_deref()),
    )?;
    let (uid, gid) = match (req.user, config.as_ref().and_then(|c| c.user().as_deref())) {
        (Some(u), _) => {
            user(fs, u).map_err(|why| ContainerError::BadUser(format!("--user {u:?}"), why))?
        }
        (None, Some(u)) if !u.is_empty() => user(fs, u)
            .map_err(|why| ContainerError::BadUser(format!("the image's User {u:?}"), why))?,
        (None, _) => (0, 0),
    };
    let mut binds = Vec::new();
    for m in req.mounts {
        binds.push((bind(m)?, m.dst.clone()));
    }
    let seccomp = match req.seccomp {
        Some(profile) => {
            let text = fs::read(profile).map_err(io_err(profile.display().to_string()))?;
            let seccomp: oci_spec::runtime::LinuxSeccomp = serde_json::from_slice(&text)
                .map_err(|e| ContainerError::Seccomp(profile.to_path_buf(), e))?;
            Some(seccomp)
        }
        None => None,
    };

    let dir = BundleDir::create()?;
    let lower = if let (true, Some(dir)) = (req.image.is_rootfs_dir(), req.image.path()) {
        dir.canonicalize()
            .map_err(io_err(dir.display().to_string()))?
    } else {
        let lower = dir.path().join("lower");
        fs::create_dir(&lower).map_err(io_err("creating the lower layer"))?;
        let bar = crate::progress::bytes("unpacking the image", Some(image.total_bytes));
        unpack::unpack(
            &crate::progress::Counted::new(image.rootfs.as_ref(), bar),
            &lower,
        )?;
        lower
    };
    let (upper, work, merged) = (
        dir.path().join("upper"),
        dir.path().join("work"),
        dir.path().join("rootfs"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).map_err(io_err(format!("creating {}", d.display())))?;
    }
    // The bundle's name carries the owner token too: `trace-<token>-<n>`.
    let id = dir
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("trace-bundle-"))
        .map(|rest| format!("trace-{rest}"))
        .ok_or_else(|| ContainerError::OverlayPath(dir.path().to_path_buf()))?;
    leftovers::record_runtime(&runtime);
    let mut prepared = Prepared {
        id,
        dir,
        merged: merged.clone(),
        mounted: false,
        runtime,
        bind_targets: Vec::new(),
        command_argv: Vec::new(),
    };
    for p in [&lower, &upper, &work] {
        if p.as_os_str()
            .as_bytes()
            .iter()
            .any(|b| matches!(b, b',' | b':' | b'\\'))
        {
            return Err(ContainerError::OverlayPath(p.clone()));
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let c = |s: &[u8]| CString::new(s).map_err(|_| ContainerError::OverlayPath(merged.clone()));
    let (src, dst, fstype, data) = (
        c(b"overlay")?,
        c(merged.as_os_str().as_bytes())?,
        c(b"overlay")?,
        c(opts.as_bytes())?,
    );
    // SAFETY: NUL-terminated strings we own.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io_err("mounting the overlay")(io::Error::last_os_error()));
    }
    prepared.mounted = true;

    let mut spec = Spec::default();
    if let Some(p) = spec.process_mut() {
        p.set_args(Some(req.argv.to_vec()));
        p.set_env(Some(env));
        p.set_cwd(PathBuf::from(cwd));
        p.set_terminal(Some(false));
        p.set_user(UserBuilder::default().uid(uid).gid(gid).build()?);
        p.set_capabilities(Some(default_capabilities()?));
    }
    if let Some(root) = spec.root_mut() {
        root.set_path(merged.clone());
        root.set_readonly(Some(false));
    }
    spec.set_hostname(Some("trace".into()));
    if let Some(linux) = spec.linux_mut() {
        // Share the host's network: a server and its client in the suite
        // talk over loopback, which a new network namespace has down.
        if let Some(ns) = linux.namespaces_mut()
            && !req.network_none
        {
            ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
        }
        linux.set_cgroups_path(Some(PathBuf::from(&req.cgroup_path)));
        if let Some(seccomp) = seccomp {
            linux.set_seccomp(Some(seccomp));
        }
    }
    if req.seccomp.is_some()
        && let Some(p) = spec.process_mut()
    {
        // runc then loads the filter right before exec, so only the
        // program's own syscalls (and a documented few) must be allowed.
        p.set_no_new_privileges(Some(true));
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (mount, dst) in binds {
        mounts.push(mount);
        prepared.bind_targets.push(dst);
    }
    spec.set_mounts(Some(mounts));
    spec.save(prepared.dir.path().join("config.json"))?;
    prepared.command_argv = vec![
        prepared.runtime.display().to_string(),
        "--root".into(),
        leftovers::runtime_root().display().to_string(),
        "run".into(),
        "--bundle".into(),
        prepared.dir.path().display().to_string(),
        prepared.id.clone(),
    ];
    Ok(prepared)
}

impl Prepared {
    /// The container's id with the runtime.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let _ = Command::new(&self.runtime)
            .arg("--root")
            .arg(leftovers::runtime_root())
            .args(["delete", "--force", &self.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if self.mounted
            && let Ok(c) = CString::new(self.merged.as_os_str().as_bytes())
        {
            // SAFETY: unmounting the overlay we mounted.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn mount_specs() {
        let b = |s: &str| bind(&s.parse().unwrap());
        let m = b("/tmp:/suite:ro").unwrap();
        assert_eq!(m.destination(), std::path::Path::new("/suite"));
        assert!(m.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(matches!(
            b("/no/such/dir:/x"),
            Err(ContainerError::MountSource { .. })
        ));
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
