//! `trace`: record the files a program uses, with eBPF, so that a minimal
//! container image can be built from them.
//!
//! - [`capture`]: the eBPF side seen from userspace: loading, scope, events.
//! - [`model`]: the trace itself: folding events, the file format.
//! - [`source`]: image input: the source image's root filesystem.
//! - [`closure`]: from observed paths to everything the image must keep.
//! - [`output`]: image output: the minimal image, written out.
//! - [`runtime`]: running the traced command.
//! - [`engine`]: Docker, Podman and containerd, through their clients.
//! - [`progress`]: progress bars for long steps, on a terminal only.
//! - [`session`]: the run, build, verify, minimize and attach sessions, as
//!   plain values ([`session::RunSpec`], [`session::BuildSpec`], ...).
//! - [`cli`]: the command line: parses arguments into sessions' specs.
//! - [`fuzzing`]: the fuzz targets' entry points.
pub mod cache;
pub mod capture;
#[cfg(feature = "cli")]
pub mod cli;
pub mod closure;
pub mod engine;
pub mod fuzzing;
pub mod model;
pub mod output;
pub mod progress;
pub mod runtime;
pub mod sbom;
pub mod session;
pub mod source;
pub mod timing;
