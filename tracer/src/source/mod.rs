//! Image input: the source image's root filesystem, from a directory, an
//! OCI image layout (directory or tar) or a `docker save` archive.
pub mod dir;
pub mod rootfs;

pub mod archive;
pub mod error;
pub mod formats;
pub mod image;
pub mod layered;

pub use error::SourceError;
pub use image::{Image, open};
