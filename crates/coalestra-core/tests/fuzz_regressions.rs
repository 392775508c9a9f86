//! Fuzzing regressions on stable Rust (issue 10, "Fuzzing"): the committed
//! corpus of the `cargo fuzz` targets (`fuzz/corpus/<target>/*`) and a
//! seeded random-input loop (a 64-bit LCG, 100,000 inputs per target) go
//! through the very harness the fuzz targets use (`fuzz/src/lib.rs`,
//! included below), so "no panic on any input, only typed errors naming the
//! field" is checked by every `cargo test`, without nightly or cargo-fuzz.
//!
//! Set `COALESTRA_FUZZ_SEED` to replay another random sequence; a failure
//! prints the seed, the input index and the input bytes, which can be saved
//! into the corpus as a regression.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

#[allow(dead_code)]
#[path = "../../../fuzz/src/lib.rs"]
mod harness;

use harness::PolicyInput;

/// Inputs per random loop.
const RANDOM_INPUTS: usize = 100_000;
/// The default seed of the random loops.
const DEFAULT_SEED: u64 = 0x00C0_A1E5_7F0A_2026;
/// 2^64 seconds: from here on a finite `f64` no longer fits a `Duration`.
const DURATION_LIMIT_SECS: f64 = 18_446_744_073_709_551_616.0;

fn seed() -> u64 {
    std::env::var("COALESTRA_FUZZ_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// Knuth's MMIX linear congruential generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 ^ (self.0 >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Mostly edge values (NaN, infinities, signed zeros, subnormals, the
    /// `Duration` limit), sometimes ordinary or raw-bit numbers.
    fn seconds(&mut self) -> f64 {
        const EDGES: [f64; 16] = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            1e-9,
            0.5,
            1.0,
            10.0,
            1.844_674_407_370_955e19,
            DURATION_LIMIT_SECS,
            1e20,
            f64::MAX,
            -1.0,
        ];
        match self.below(4) {
            0 | 1 => EDGES[self.below(EDGES.len())],
            2 => (self.next() % 200_000) as f64 / 1000.0 - 50.0,
            _ => f64::from_bits(self.next()),
        }
    }

    fn count(&mut self) -> u32 {
        match self.below(4) {
            0 => 0,
            1 => u32::MAX,
            _ => (self.next() % 10) as u32,
        }
    }

    fn policy_input(&mut self) -> PolicyInput {
        PolicyInput {
            ttl: self.seconds(),
            max_stale: self.seconds(),
            future_tolerance: self.seconds(),
            max_attempts: self.count(),
            initial_backoff: self.seconds(),
            max_backoff: self.seconds(),
            jitter: self.seconds(),
            scope: self.next() as u8,
            failure_threshold: self.count(),
            recovery_timeout: self.seconds(),
            max_observation_skew: self.seconds(),
            max_age: self.seconds(),
        }
    }

    /// Text made of key delimiters, escapes and awkward characters, or
    /// (one time in eight) raw bytes.
    fn key_bytes(&mut self) -> Vec<u8> {
        const TOKENS: [&str; 30] = [
            "a", "ns", "name", "BTC", ":", ":", "?", "&", "=", "%", "%3A", "%3F", "%25", "%2",
            "%zz", "%E9", "%C3%A9", "+", " ", "\t", "ß", "é", "日", "😀", "\u{0}", "\u{feff}",
            "k=v", "K", "0", "%20",
        ];
        if self.below(8) == 0 {
            return (0..self.below(24)).map(|_| self.next() as u8).collect();
        }
        // Half the inputs start like a real key, so parsing gets past the
        // path and exercises subjects and qualifiers.
        let mut text = String::from(["", "ns:name", "ns:name:", "ns:name?"][self.below(4)]);
        for _ in 0..self.below(14) {
            text.push_str(TOKENS[self.below(TOKENS.len())]);
        }
        text.into_bytes()
    }
}

/// The files of one corpus directory, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        target,
    ]
    .iter()
    .collect();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read corpus {}: {error}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "corpus {} has only {} entries; was it moved?",
        dir.display(),
        files.len()
    );
    files
}

/// Runs `check` on every corpus file; fails listing every file that panicked.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let failures: Vec<String> = corpus(target)
        .into_iter()
        .filter(|(_, bytes)| catch_unwind(AssertUnwindSafe(|| check(bytes))).is_err())
        .map(|(name, _)| name)
        .collect();
    assert!(
        failures.is_empty(),
        "corpus inputs that panicked: {failures:#?}"
    );
}

/// Runs `check` on `RANDOM_INPUTS` generated inputs; fails on the first
/// panic with everything needed to replay it.
fn random_loop<T: std::fmt::Debug>(
    target: &str,
    mut generate: impl FnMut(&mut Lcg) -> T,
    check: impl Fn(&T),
) {
    let seed = seed();
    let mut rng = Lcg(seed);
    for index in 0..RANDOM_INPUTS {
        let input = generate(&mut rng);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            panic!(
                "{target}: input #{index} of seed {seed} (COALESTRA_FUZZ_SEED={seed}) panicked: {input:?}"
            );
        }
    }
}

#[test]
fn key_parse_corpus_replays_without_panic() {
    replay("key_parse", harness::key_parse);
}

#[test]
fn key_parse_random_inputs_never_panic() {
    random_loop("key_parse", Lcg::key_bytes, |bytes| {
        harness::key_parse(bytes)
    });
}

#[test]
fn policy_corpus_replays_without_panic() {
    replay("policy_f64", harness::policy_f64);
}

#[test]
fn policy_random_inputs_never_panic() {
    random_loop("policy_f64", Lcg::policy_input, |input| {
        let decoded = PolicyInput::decode(&input.encode());
        assert_eq!(decoded.encode(), input.encode(), "the encoding round-trips");
        harness::check_policies(input);
    });
}

#[test]
fn observation_policy_in_range_inputs_never_panic() {
    let in_range = |secs: f64| !(secs.is_finite() && secs >= DURATION_LIMIT_SECS);
    replay("observation_f64", |bytes| {
        let secs = harness::Reader::new(bytes).f64();
        if in_range(secs) {
            harness::check_observation(secs);
        }
    });
    random_loop("observation", Lcg::seconds, |&secs| {
        if in_range(secs) {
            harness::check_observation(secs);
        }
    });
}

#[test]
fn observation_policy_never_panics_on_any_input() {
    replay("observation_f64", harness::observation_f64);
    random_loop("observation", Lcg::seconds, |&secs| {
        harness::check_observation(secs);
    });
}

#[test]
fn the_generators_reach_the_edges() {
    // The loops above are only as good as their inputs: make sure they
    // produce every class the harness distinguishes.
    let mut rng = Lcg(seed());
    let values: Vec<f64> = (0..10_000).map(|_| rng.seconds()).collect();
    assert!(values.iter().any(|v| v.is_nan()));
    assert!(values.iter().any(|v| v.is_infinite() && *v > 0.0));
    assert!(values.iter().any(|v| *v < 0.0));
    assert!(values
        .iter()
        .any(|v| v.is_finite() && *v >= DURATION_LIMIT_SECS));
    assert!(values.iter().any(|v| (0.0..1e6).contains(v)));
    let keys: Vec<Vec<u8>> = (0..10_000).map(|_| rng.key_bytes()).collect();
    let parsed = keys
        .iter()
        .filter(|k| {
            std::str::from_utf8(k).is_ok_and(|t| t.parse::<coalestra_core::ResourceKey>().is_ok())
        })
        .count();
    assert!(parsed > 500, "only {parsed} generated keys parse");
    assert!(
        parsed < 9_500,
        "almost every generated key parses ({parsed})"
    );
}
