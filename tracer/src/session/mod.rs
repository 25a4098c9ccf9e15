//! The sessions `trace` runs, as a library: each is a plain value (a
//! spec) and a function that carries it out and returns what it found.
//! The command line only parses arguments into these specs and prints
//! the results.
//!
//! - [`run`]: run a command under the trace ([`RunSpec`]); [`runs`]
//!   repeats it and unites the traces.
//! - [`attach`]: trace what is already running ([`AttachSpec`]).
//! - [`build`]: a minimal image from a full one and traces ([`BuildSpec`]).
//! - [`verify`]: run a command in an image and explain a failure
//!   ([`VerifySpec`]), with [`hints`] from the full image.
//! - [`minimize`]: run, build and verify in one ([`MinimizeSpec`]).
pub mod attach;
pub mod build;
pub mod hints;
pub mod minimize;
pub mod run;
pub mod runs;
pub mod sbom;
pub mod spec;
pub mod stderr_tee;
pub mod verify;

pub use attach::{AttachSpec, AttachTarget};
pub use build::{BuildSpec, ImageSpec};
pub use minimize::MinimizeSpec;
pub use run::RunSpec;
pub use spec::{CaptureSpec, ContainerSpec, ScopeMode};
pub use verify::VerifySpec;
