//! The policy constructors from `f64` seconds (freshness, retry, circuit
//! breaker, consistency, acceptance) on arbitrary numbers: a consistent
//! policy or a typed `ConfigError` naming the field; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| coalestra_fuzz::policy_f64(data));
