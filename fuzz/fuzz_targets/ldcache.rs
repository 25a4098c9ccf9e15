//! Fuzz target: see `tracer::fuzzing::ldcache`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::ldcache(data));
