//! Fuzz target: see `tracer::fuzzing::btf`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::btf(data));
