//! Fuzz target: see `tracer::fuzzing::layer_tar`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::layer_tar(data));
