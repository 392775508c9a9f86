//! Timing helpers of the `bench-report` binary: medians over repeated runs
//! and the JSON lines `cargo xtask bench-compare` reads.
//!
//! Criterion is the right tool to study one workload; the report needs one
//! robust number per workload, measured the same way as on the Python side
//! (the median of at least ten runs), so it times runs itself.

use std::future::Future;
use std::time::Duration;

use serde_json::{Map, Number, Value};

/// The median, minimum and maximum of a set of timed runs.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median time of one iteration.
    pub median: Duration,
    /// Fastest run (per iteration).
    pub min: Duration,
    /// Slowest run (per iteration).
    pub max: Duration,
    /// Runs measured.
    pub runs: usize,
    /// Iterations averaged inside each run.
    pub iters_per_run: u32,
}

impl Summary {
    /// Summarizes per-iteration times.
    ///
    /// # Panics
    ///
    /// When `samples` is empty.
    pub fn of(mut samples: Vec<Duration>, iters_per_run: u32) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2
        };
        Self {
            median,
            min: samples[0],
            max: samples[n - 1],
            runs: n,
            iters_per_run,
        }
    }
}

/// Times `runs` runs of `once`, each run averaging enough iterations to
/// last about `target` (at least one), after a short warm-up.
///
/// `once` performs one iteration and returns the time it measured, so it
/// can leave its own setup out of the measurement.
pub async fn sample<F, Fut>(runs: usize, target: Duration, mut once: F) -> Summary
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Duration>,
{
    let mut warm = Duration::ZERO;
    let mut warm_iters = 0u32;
    while warm_iters < 3 || (warm < target && warm_iters < 10_000) {
        warm += once().await;
        warm_iters += 1;
    }
    let per_iter = warm / warm_iters;
    let iters = if per_iter.is_zero() {
        1_000
    } else {
        (target.as_nanos() / per_iter.as_nanos()).clamp(1, 100_000) as u32
    };
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += once().await;
        }
        samples.push(total / iters);
    }
    Summary::of(samples, iters)
}

/// One JSON line of the report: `{"workload": .., "median_ms": .., ..}`.
#[derive(Debug, Clone)]
pub struct Record(Map<String, Value>);

impl Record {
    /// A record of `workload` from a timing summary.
    pub fn timed(workload: &str, summary: &Summary) -> Self {
        Self::new(workload)
            .ms("median_ms", summary.median)
            .ms("min_ms", summary.min)
            .ms("max_ms", summary.max)
            .int("runs", summary.runs as u64)
            .int("iters_per_run", u64::from(summary.iters_per_run))
    }

    /// An empty record of `workload`.
    pub fn new(workload: &str) -> Self {
        let mut map = Map::new();
        map.insert("workload".into(), Value::String(workload.into()));
        map.insert("implementation".into(), Value::String("rust".into()));
        Self(map)
    }

    /// Adds a duration in milliseconds.
    #[must_use]
    pub fn ms(self, name: &str, duration: Duration) -> Self {
        self.num(name, duration.as_secs_f64() * 1e3)
    }

    /// Adds a number (non-finite numbers become `null`).
    #[must_use]
    pub fn num(mut self, name: &str, value: f64) -> Self {
        let value = Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(name.into(), value);
        self
    }

    /// Adds an integer.
    #[must_use]
    pub fn int(mut self, name: &str, value: u64) -> Self {
        self.0.insert(name.into(), Value::Number(value.into()));
        self
    }

    /// Adds a flag.
    #[must_use]
    pub fn flag(mut self, name: &str, value: bool) -> Self {
        self.0.insert(name.into(), Value::Bool(value));
        self
    }

    /// The record as one line of JSON.
    pub fn to_line(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(Summary::of(vec![ms(3), ms(1), ms(2)], 1).median, ms(2));
        let even = Summary::of(vec![ms(4), ms(1), ms(2), ms(3)], 1);
        assert_eq!(even.median, Duration::from_micros(2_500));
        assert_eq!((even.min, even.max, even.runs), (ms(1), ms(4), 4));
    }

    #[test]
    fn records_are_flat_json() {
        let line = Record::new("w").num("x", 1.5).int("n", 2).flag("ok", true);
        let line = line.num("nan", f64::NAN).to_line();
        assert!(line.contains("\"workload\":\"w\""));
        assert!(line.contains("\"x\":1.5"));
        assert!(line.contains("\"nan\":null"));
    }
}
