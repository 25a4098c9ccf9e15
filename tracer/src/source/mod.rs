//! Image input: the source image's root filesystem, from a directory, an
//! OCI image layout (directory or tar) or a `docker save` archive, named
//! by a path or a transport reference (`docker-daemon:`, `oci:`, ...).
pub mod dir;
pub mod rootfs;

pub mod archive;
pub mod decompress;
pub mod error;
pub mod formats;
pub mod image;
pub mod layered;
pub mod transport;

pub use error::SourceError;
pub use image::{Image, open};
pub use transport::ImageRef;
