//! See `prescale::fuzzing::admin_query` for what is fuzzed and what must hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prescale::fuzzing::admin_query(data));
