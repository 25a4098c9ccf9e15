//! Fuzz target: see `tracer::fuzzing::docker_archive`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::docker_archive(data));
