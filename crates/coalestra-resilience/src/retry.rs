//! Deadline-aware retry execution driven by a [`RetryPolicy`].

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coalestra_core::RetryPolicy;
use tokio::time::Instant;

/// The result of [`run_with_retry`]: the last attempt's result and how many
/// attempts were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOutcome<T, E> {
    /// The result of the last attempt made.
    pub result: Result<T, E>,
    /// Number of attempts made (at least 1).
    pub attempts: u32,
}

impl<T, E> RetryOutcome<T, E> {
    /// Whether the last attempt succeeded.
    #[must_use]
    pub const fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    /// Discards the attempt count.
    ///
    /// # Errors
    /// Returns the last attempt's error when every attempt failed.
    pub fn into_result(self) -> Result<T, E> {
        self.result
    }
}

/// Tokio's timer rounds a sleep up to the next millisecond tick, so a sleep
/// of `d` ends strictly before `now + d + TIMER_RESOLUTION`.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// Per-process seed sequence: every run draws its own jitter stream.
static JITTER_SEEDS: AtomicU64 = AtomicU64::new(0);

/// A tiny `SplitMix64` generator for back-off jitter (not for cryptography).
#[derive(Debug, Clone)]
struct JitterStream {
    state: u64,
}

impl JitterStream {
    const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    fn from_process_sequence() -> Self {
        let sequence = JITTER_SEEDS.fetch_add(1, Ordering::Relaxed);
        // Spread consecutive sequence numbers far apart in the state space.
        Self {
            state: sequence.wrapping_mul(Self::GOLDEN_GAMMA) ^ 0xD1B5_4A32_D192_ED03,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GOLDEN_GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniformly distributed value in `[0, 1)`.
    fn next_unit(&mut self) -> f64 {
        // 53 random bits fit an f64 mantissa exactly.
        const SCALE: f64 = 1.0 / (1_u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }
}

/// Runs `op` until it succeeds, the policy stops retrying, or the deadline
/// leaves no room for another attempt.
///
/// `op` receives the 1-based attempt number. After a failed attempt the error
/// is retried only when attempts remain and the policy's
/// [`RetryOn`](coalestra_core::resilience::RetryOn) mode accepts it,
/// `is_transient` deciding for the transient mode. The back-off before the
/// next attempt is [`RetryPolicy::backoff`] with fresh jitter, slept with
/// [`tokio::time::sleep`].
///
/// With a `deadline`, no back-off is slept and no further attempt started
/// when the back-off would end at or after the deadline: the last error is
/// returned at once. As tokio's timer rounds sleeps up to whole milliseconds,
/// the back-off must end at least 1 ms before the deadline, which guarantees
/// that every retry starts strictly before it. The first attempt always runs; bounding the duration of
/// an attempt itself is the caller's concern (e.g. [`tokio::time::timeout`]).
pub async fn run_with_retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    deadline: Option<Instant>,
    is_transient: impl Fn(&E) -> bool,
    mut op: F,
) -> RetryOutcome<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut jitter = JitterStream::from_process_sequence();
    let mut attempt: u32 = 1;
    loop {
        let error = match op(attempt).await {
            Ok(value) => {
                return RetryOutcome {
                    result: Ok(value),
                    attempts: attempt,
                }
            }
            Err(error) => error,
        };
        let give_up = attempt >= policy.max_attempts() || !policy.retries(is_transient(&error));
        let delay = policy.backoff(attempt, jitter.next_unit());
        let past_deadline = deadline.is_some_and(|deadline| {
            Instant::now()
                .checked_add(delay)
                .and_then(|wake| wake.checked_add(TIMER_RESOLUTION))
                .is_none_or(|latest_wake| latest_wake > deadline)
        });
        if give_up || past_deadline {
            return RetryOutcome {
                result: Err(error),
                attempts: attempt,
            };
        }
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::JitterStream;

    #[test]
    fn jitter_stream_stays_in_unit_interval_and_varies() {
        let mut stream = JitterStream::from_process_sequence();
        let draws: Vec<f64> = (0..1_000).map(|_| stream.next_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|u| *u < 0.1));
        assert!(draws.iter().any(|u| *u > 0.9));
    }

    #[test]
    fn separate_streams_differ() {
        let mut first = JitterStream::from_process_sequence();
        let mut second = JitterStream::from_process_sequence();
        assert_ne!(first.next_u64(), second.next_u64());
    }
}
