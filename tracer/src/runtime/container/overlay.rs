//! The container's root: the image's filesystem as the read-only lower
//! layer of an overlay, so the run's writes land in `upper` and never
//! touch the source.
use std::{
    ffi::CString,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use rustix::mount::{MountFlags, UnmountFlags};

use super::{ContainerError, io_err};
use crate::{
    runtime::unpack,
    source::{ImageRef, image::Image},
};

/// The overlay's directories, all inside the bundle directory but a
/// root filesystem source, which is used in place.
pub struct Overlay {
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the overlay is mounted: the container's root.
    pub merged: PathBuf,
}

impl Overlay {
    /// Lays the overlay out in `bundle`: the image's tree in the cache
    /// (`cached`) or a directory source is the lower layer as it is; any
    /// other image is unpacked into `bundle/lower`.
    pub fn create(
        bundle: &Path,
        source: &ImageRef,
        image: &Image,
        cached: Option<&Path>,
    ) -> Result<Overlay, ContainerError> {
        let lower = match (cached, source.is_rootfs_dir(), source.path()) {
            (Some(tree), _, _) => tree.to_path_buf(),
            (None, true, Some(dir)) => dir
                .canonicalize()
                .map_err(io_err(dir.display().to_string()))?,
            _ => {
                let lower = bundle.join("lower");
                fs::create_dir(&lower).map_err(io_err("creating the lower layer"))?;
                let bar = crate::progress::bytes("unpacking the image", Some(image.total_bytes));
                unpack::unpack(
                    &crate::progress::Counted::new(image.rootfs.as_ref(), bar),
                    &lower,
                )?;
                lower
            }
        };
        let o = Overlay {
            lower,
            upper: bundle.join("upper"),
            work: bundle.join("work"),
            merged: bundle.join("rootfs"),
        };
        for d in [&o.upper, &o.work, &o.merged] {
            fs::create_dir(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        // The mount options are a comma-separated list; these bytes would
        // split or escape it.
        for p in [&o.lower, &o.upper, &o.work] {
            if p.as_os_str()
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b',' | b':' | b'\\'))
            {
                return Err(ContainerError::OverlayPath(p.clone()));
            }
        }
        Ok(o)
    }

    /// Mounts the overlay on `merged`.
    pub fn mount(&self) -> Result<(), ContainerError> {
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.upper.display(),
            self.work.display()
        );
        let data =
            CString::new(opts).map_err(|_| ContainerError::OverlayPath(self.lower.clone()))?;
        rustix::mount::mount(
            "overlay",
            &self.merged,
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| io_err("mounting the overlay")(e.into()))
    }
}

/// Detaches the overlay mounted on `merged` (best effort: on drop).
pub fn unmount(merged: &Path) {
    let _ = rustix::mount::unmount(merged, UnmountFlags::DETACH);
}
