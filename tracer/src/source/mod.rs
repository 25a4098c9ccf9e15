//! Image input: the source image's root filesystem, from a directory, an
//! OCI image layout (directory or tar) or a `docker save` archive.
pub mod dir;
pub mod rootfs;
