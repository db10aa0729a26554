//! See `prescale::fuzzing::request_target` for what is fuzzed and what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prescale::fuzzing::request_target(data));
