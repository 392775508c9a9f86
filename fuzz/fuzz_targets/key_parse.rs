//! `ResourceKey::parse` on arbitrary input: a key that renders and parses
//! back to itself, or a typed `KeyError`; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| coalestra_fuzz::key_parse(data));
