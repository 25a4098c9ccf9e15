//! Running the traced command: joining the scope before its first
//! instruction, passing signals through, and turning its end into an exit
//! status the way a shell does.
pub mod child;
pub mod clone3;
pub mod container;
pub mod engine;
pub mod leftovers;
pub mod options;
pub mod priority;
pub mod proc_stat;
pub mod status;
pub mod unpack;
