//! `trace`: record the files a program uses, with eBPF, so that a minimal
//! container image can be built from them.
//!
//! - [`capture`]: the eBPF side seen from userspace: loading, scope, events.
//! - [`model`]: the trace itself: folding events, the file format.
//! - [`runtime`]: running the traced command.
//! - [`cli`]: the subcommands.
pub mod capture;
pub mod cli;
pub mod model;
pub mod runtime;
