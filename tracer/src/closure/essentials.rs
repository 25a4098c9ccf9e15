//! What every minimal image gets whether or not the trace saw it: name
//! resolution files and the mount points a runtime fills in. Only entries
//! present in the source are kept; directories are kept without contents.
pub const FILES: &[&str] = &["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"];
/// Kept as empty directories with the source's mode (`/tmp` is 1777 in
/// Debian): a runtime mounts over them.
pub const DIRS: &[&str] = &["/tmp", "/proc", "/sys", "/dev"];
pub use crate::model::trace::RUNTIME_PREFIXES;
