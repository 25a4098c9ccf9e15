//! Fuzz target: see `tracer::fuzzing::oci_archive`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::oci_archive(data));
