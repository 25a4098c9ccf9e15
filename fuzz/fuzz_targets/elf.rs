//! Fuzz target: see `tracer::fuzzing::elf`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::elf(data));
