//! The end-to-end tests of the `trace` binary, as one test binary (one
//! link, one process; cargo runs it as `--test it`). Each module holds the
//! tests of one command or concern; `util` the helpers they share: the
//! `TestCommand` builder, the fixtures and the typed trace reader.
//! `engines.rs` is a binary of its own (see its header).
mod util;

mod attach;
mod build;
mod cache;
mod capture;
mod container;
mod derive;
mod granularity;
mod minimize;
mod run;
mod sbom;
mod transports;
