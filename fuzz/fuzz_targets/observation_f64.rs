//! `ObservationPolicy::from_secs_f64` on arbitrary numbers: a policy or a
//! typed `ConfigError` naming `future_tolerance`; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| coalestra_fuzz::observation_f64(data));
