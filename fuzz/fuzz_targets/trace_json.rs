//! Fuzz target: see `tracer::fuzzing::trace_json`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::trace_json(data));
