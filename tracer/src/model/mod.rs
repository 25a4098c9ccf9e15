//! The trace model: what a run used, how it is folded from events, and how
//! it is written and read.
pub mod escape;
pub mod merge;
pub mod path;
pub mod seccomp;
pub mod sometimes;
pub mod text;
pub mod trace;
pub mod write;
