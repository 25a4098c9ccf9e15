//! The runtime spec (`config.json`) of a container, built with the
//! oci-spec types: the process, the root, the bind mounts, the network
//! and the seccomp profile.
use std::{
    fs,
    path::{Path, PathBuf},
};

use oci_spec::runtime::{LinuxNamespaceType, Mount, MountBuilder, Spec, UserBuilder};

use super::{
    ContainerError, Request, io_err,
    process::{self, Process},
};
use crate::runtime::{engine::Network, options::BindMount};

/// The bind mounts, checked to exist; with their destinations.
pub fn binds(req: &Request) -> Result<Vec<(Mount, String)>, ContainerError> {
    req.options
        .mounts
        .iter()
        .map(|m| Ok((bind(m)?, m.dst.clone())))
        .collect()
}

/// The seccomp profile the request names, read and parsed.
pub fn seccomp(req: &Request) -> Result<Option<oci_spec::runtime::LinuxSeccomp>, ContainerError> {
    let Some(profile) = &req.options.seccomp else {
        return Ok(None);
    };
    let text = fs::read(profile).map_err(io_err(profile.display().to_string()))?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| ContainerError::Seccomp(profile.to_path_buf(), e))
}

/// The spec of a container running `process` on the root `rootfs`.
pub fn build(
    req: &Request,
    process: Process,
    rootfs: &Path,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    binds: Vec<Mount>,
) -> Result<Spec, ContainerError> {
    let mut spec = Spec::default();
    if let Some(p) = spec.process_mut() {
        p.set_args(Some(process.argv));
        p.set_env(Some(process.env));
        p.set_cwd(PathBuf::from(process.cwd));
        p.set_terminal(Some(false));
        p.set_user(
            UserBuilder::default()
                .uid(process.uid)
                .gid(process.gid)
                .build()?,
        );
        p.set_capabilities(Some(process::default_capabilities()?));
        // With a profile, runc loads the filter right before exec, so only
        // the program's own syscalls (and a documented few) must be
        // allowed. Without one, setuid and file capabilities work as under
        // docker (runc's template sets noNewPrivileges).
        p.set_no_new_privileges(Some(seccomp.is_some()));
    }
    if let Some(root) = spec.root_mut() {
        root.set_path(rootfs.to_path_buf());
        root.set_readonly(Some(false));
    }
    spec.set_hostname(Some("trace".into()));
    if let Some(linux) = spec.linux_mut() {
        // Share the host's network: a server and its client in the suite
        // talk over loopback, which a new network namespace has down.
        if let Some(ns) = linux.namespaces_mut()
            && req.options.network != Network::None
        {
            ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
        }
        linux.set_cgroups_path(Some(PathBuf::from(&req.cgroup_path)));
        if let Some(seccomp) = seccomp {
            linux.set_seccomp(Some(seccomp));
        }
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.extend(binds);
    spec.set_mounts(Some(mounts));
    Ok(spec)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
