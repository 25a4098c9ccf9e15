//! Closure: from what a trace observed to everything the minimal image
//! must hold (symlinks on the way, parents, shared libraries,
//! interpreters, essentials, the user's rules).
pub mod resolve;
