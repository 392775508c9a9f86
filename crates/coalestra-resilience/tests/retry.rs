//! Retry policy validation, back-off arithmetic and deadline-aware execution.

use std::time::Duration;

use coalestra_core::ConfigError;
use coalestra_resilience::{run_with_retry, RetryOn, RetryPolicy};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Transient,
    Permanent,
}

fn is_transient(failure: &Failure) -> bool {
    *failure == Failure::Transient
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A policy without jitter, so delays are exact.
fn exact_policy(max_attempts: u32, initial: Duration, max: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(max_attempts)
        .initial_backoff(initial)
        .max_backoff(max)
        .jitter(0.0)
        .build()
        .expect("valid policy")
}

fn assert_close(actual: Duration, expected: Duration) {
    let gap = actual.abs_diff(expected);
    assert!(
        gap <= Duration::from_micros(1),
        "{actual:?} is not close to {expected:?}"
    );
}

#[test]
fn defaults_match_the_specification() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.max_attempts(), 2);
    assert_eq!(policy.initial_backoff(), ms(50));
    assert_eq!(policy.max_backoff(), Duration::from_secs(1));
    assert!((policy.multiplier() - 2.0).abs() < f64::EPSILON);
    assert!((policy.jitter() - 0.1).abs() < f64::EPSILON);
    assert_eq!(policy.retry_on(), RetryOn::Transient);
    assert_eq!(RetryPolicy::builder().build(), Ok(policy));
}

#[test]
fn none_makes_a_single_attempt() {
    let policy = RetryPolicy::none();
    assert_eq!(policy.max_attempts(), 1);
    assert_eq!(policy.initial_backoff(), ms(50));
}

#[test]
fn new_and_from_secs_build_valid_policies() {
    let policy = RetryPolicy::new(4, ms(10), ms(80)).expect("valid");
    assert_eq!(policy.max_attempts(), 4);
    assert_eq!(policy.initial_backoff(), ms(10));
    assert_eq!(policy.max_backoff(), ms(80));

    let policy = RetryPolicy::from_secs_f64(3, 0.25, 2.0, 0.5).expect("valid");
    assert_eq!(policy.max_attempts(), 3);
    assert_eq!(policy.initial_backoff(), ms(250));
    assert_eq!(policy.max_backoff(), Duration::from_secs(2));
    assert!((policy.jitter() - 0.5).abs() < f64::EPSILON);

    // Boundaries are accepted.
    assert!(RetryPolicy::from_secs_f64(1, 0.0, 0.0, 0.0).is_ok());
    assert!(RetryPolicy::from_secs_f64(1, 1.0, 1.0, 1.0).is_ok());
    assert!(RetryPolicy::builder().multiplier(1.0).build().is_ok());
}

#[test]
fn zero_attempts_are_rejected() {
    let zero = ConfigError::Zero {
        field: "max_attempts",
    };
    assert_eq!(RetryPolicy::new(0, ms(1), ms(2)), Err(zero.clone()));
    assert_eq!(
        RetryPolicy::from_secs_f64(0, 0.1, 1.0, 0.1),
        Err(zero.clone())
    );
    assert_eq!(
        RetryPolicy::default().with_max_attempts(0),
        Err(zero.clone())
    );
    assert_eq!(zero.to_string(), "max_attempts must be at least 1");
    assert_eq!(
        RetryPolicy::default()
            .with_max_attempts(5)
            .map(|p| p.max_attempts()),
        Ok(5)
    );
}

#[test]
fn max_backoff_below_initial_is_rejected() {
    let error = RetryPolicy::new(2, ms(200), ms(100)).unwrap_err();
    assert!(matches!(
        error,
        ConfigError::Invalid {
            field: "max_backoff",
            ..
        }
    ));
    assert!(RetryPolicy::from_secs_f64(2, 0.5, 0.4, 0.0).is_err());
}

#[test]
fn non_finite_seconds_are_rejected_for_each_field() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            RetryPolicy::from_secs_f64(2, bad, 1.0, 0.1),
            Err(ConfigError::NotFinite {
                field: "initial_backoff"
            }),
            "initial_backoff {bad}"
        );
        assert_eq!(
            RetryPolicy::from_secs_f64(2, 0.1, bad, 0.1),
            Err(ConfigError::NotFinite {
                field: "max_backoff"
            }),
            "max_backoff {bad}"
        );
        assert_eq!(
            RetryPolicy::from_secs_f64(2, 0.1, 1.0, bad),
            Err(ConfigError::NotFinite { field: "jitter" }),
            "jitter {bad}"
        );
        assert_eq!(
            RetryPolicy::builder().multiplier(bad).build(),
            Err(ConfigError::NotFinite {
                field: "multiplier"
            }),
            "multiplier {bad}"
        );
    }
    let error = RetryPolicy::from_secs_f64(2, f64::NAN, 1.0, 0.1).unwrap_err();
    assert_eq!(error.to_string(), "initial_backoff must be finite");
}

#[test]
fn negative_seconds_are_rejected() {
    assert_eq!(
        RetryPolicy::from_secs_f64(2, -0.1, 1.0, 0.1),
        Err(ConfigError::Negative {
            field: "initial_backoff"
        })
    );
    assert_eq!(
        RetryPolicy::from_secs_f64(2, 0.1, -1.0, 0.1),
        Err(ConfigError::Negative {
            field: "max_backoff"
        })
    );
    let too_large = RetryPolicy::builder().max_backoff_secs(1e30).build();
    assert!(matches!(
        too_large,
        Err(ConfigError::Invalid {
            field: "max_backoff",
            ..
        })
    ));
}

#[test]
fn the_first_invalid_seconds_value_is_reported() {
    let error = RetryPolicy::builder()
        .initial_backoff_secs(f64::NAN)
        .max_backoff_secs(-1.0)
        .max_attempts(0)
        .build()
        .unwrap_err();
    assert_eq!(
        error,
        ConfigError::NotFinite {
            field: "initial_backoff"
        }
    );
}

#[test]
fn jitter_out_of_range_is_rejected() {
    assert_eq!(
        RetryPolicy::from_secs_f64(2, 0.1, 1.0, -0.01),
        Err(ConfigError::Negative { field: "jitter" })
    );
    assert!(matches!(
        RetryPolicy::from_secs_f64(2, 0.1, 1.0, 1.01),
        Err(ConfigError::Invalid {
            field: "jitter",
            ..
        })
    ));
}

#[test]
fn multiplier_below_one_is_rejected() {
    for bad in [0.0, 0.5, -2.0] {
        assert!(matches!(
            RetryPolicy::builder().multiplier(bad).build(),
            Err(ConfigError::Invalid {
                field: "multiplier",
                ..
            })
        ));
    }
}

#[test]
fn backoff_grows_geometrically_and_is_capped() {
    let policy = exact_policy(10, ms(100), Duration::from_secs(1));
    let expected = [100, 200, 400, 800, 1000, 1000];
    for (attempt, millis) in (1..).zip(expected) {
        assert_close(policy.backoff(attempt, 0.5), ms(millis));
    }
    assert_close(policy.backoff(0, 0.5), ms(100));
    assert_close(policy.backoff(u32::MAX, 0.5), Duration::from_secs(1));

    let flat = RetryPolicy::builder()
        .initial_backoff(ms(30))
        .max_backoff(ms(500))
        .multiplier(1.0)
        .jitter(0.0)
        .build()
        .expect("valid");
    for attempt in 1..20 {
        assert_close(flat.backoff(attempt, 0.9), ms(30));
    }

    let triple = RetryPolicy::builder()
        .initial_backoff(ms(10))
        .max_backoff(ms(100))
        .multiplier(3.0)
        .jitter(0.0)
        .build()
        .expect("valid");
    assert_close(triple.backoff(2, 0.0), ms(30));
    assert_close(triple.backoff(3, 1.0), ms(90));
    assert_close(triple.backoff(4, 0.5), ms(100));
}

#[test]
fn jitter_stays_within_bounds() {
    let policy = RetryPolicy::builder()
        .initial_backoff(ms(100))
        .max_backoff(ms(400))
        .jitter(0.1)
        .build()
        .expect("valid");
    assert_close(policy.backoff(1, 0.0), ms(90));
    assert_close(policy.backoff(1, 0.5), ms(100));
    assert_close(policy.backoff(1, 1.0), ms(110));
    // Jitter scales the capped delay.
    assert_close(policy.backoff(9, 1.0), ms(440));
    // Out-of-range randomness is clamped, NaN means no jitter.
    assert_close(policy.backoff(1, -3.0), ms(90));
    assert_close(policy.backoff(1, 7.0), ms(110));
    assert_close(policy.backoff(1, f64::NAN), ms(100));

    for step in 0..=100_u32 {
        let unit = f64::from(step) / 100.0;
        for attempt in 1..6 {
            let base = exact_policy(10, ms(100), ms(400)).backoff(attempt, 0.5);
            let delay = policy.backoff(attempt, unit);
            assert!(delay >= base.mul_f64(0.9) - Duration::from_micros(1));
            assert!(delay <= base.mul_f64(1.1) + Duration::from_micros(1));
        }
    }

    let full = RetryPolicy::from_secs_f64(2, 0.1, 1.0, 1.0).expect("valid");
    assert_eq!(full.backoff(1, 0.0), Duration::ZERO);
    assert_close(full.backoff(1, 1.0), ms(200));
}

#[test]
fn retry_on_modes_decide_by_classification() {
    assert!(RetryOn::Transient.retries(true));
    assert!(!RetryOn::Transient.retries(false));
    assert!(RetryOn::All.retries(false));
    assert!(!RetryOn::Never.retries(true));
    assert_eq!(RetryOn::default(), RetryOn::Transient);
    let policy = RetryPolicy::default().with_retry_on(RetryOn::Never);
    assert_eq!(policy.retry_on(), RetryOn::Never);
    assert!(!policy.retries(true));
}

#[tokio::test(start_paused = true)]
async fn succeeds_on_the_third_attempt() {
    let policy = exact_policy(5, ms(50), Duration::from_secs(1));
    let start = Instant::now();
    let mut seen = Vec::new();
    let outcome = run_with_retry(&policy, None, is_transient, |attempt| {
        seen.push((attempt, start.elapsed()));
        async move {
            if attempt < 3 {
                Err(Failure::Transient)
            } else {
                Ok(attempt * 10)
            }
        }
    })
    .await;
    assert_eq!(outcome.attempts, 3);
    assert!(outcome.is_ok());
    assert_eq!(outcome.into_result(), Ok(30));
    let attempts: Vec<u32> = seen.iter().map(|(attempt, _)| *attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    // Back-offs of 50 ms then 100 ms on the paused clock.
    assert_eq!(seen[0].1, Duration::ZERO);
    assert!(seen[1].1 >= ms(50) && seen[1].1 < ms(52), "{:?}", seen[1].1);
    assert!(
        seen[2].1 >= ms(150) && seen[2].1 < ms(153),
        "{:?}",
        seen[2].1
    );
}

#[tokio::test(start_paused = true)]
async fn first_success_needs_no_retry() {
    let outcome = run_with_retry(&RetryPolicy::default(), None, is_transient, |_| async {
        Ok::<_, Failure>("done")
    })
    .await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.result, Ok("done"));
}

#[tokio::test(start_paused = true)]
async fn non_transient_errors_are_not_retried() {
    let policy = exact_policy(5, ms(10), ms(100));
    let outcome = run_with_retry(&policy, None, is_transient, |_| async {
        Err::<(), _>(Failure::Permanent)
    })
    .await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.result, Err(Failure::Permanent));
}

#[tokio::test(start_paused = true)]
async fn attempts_stop_at_the_budget() {
    let policy = exact_policy(4, ms(10), ms(100));
    let outcome = run_with_retry(&policy, None, is_transient, |_| async {
        Err::<(), _>(Failure::Transient)
    })
    .await;
    assert_eq!(outcome.attempts, 4);
    assert_eq!(outcome.result, Err(Failure::Transient));

    let outcome = run_with_retry(&RetryPolicy::none(), None, is_transient, |_| async {
        Err::<(), _>(Failure::Transient)
    })
    .await;
    assert_eq!(outcome.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn retry_on_all_retries_permanent_errors() {
    let policy = exact_policy(3, ms(10), ms(100)).with_retry_on(RetryOn::All);
    let outcome = run_with_retry(&policy, None, is_transient, |attempt| async move {
        if attempt == 3 {
            Ok(attempt)
        } else {
            Err(Failure::Permanent)
        }
    })
    .await;
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.result, Ok(3));
}

#[tokio::test(start_paused = true)]
async fn retry_on_never_stops_after_one_attempt() {
    let policy = exact_policy(5, ms(10), ms(100)).with_retry_on(RetryOn::Never);
    let outcome = run_with_retry(&policy, None, is_transient, |_| async {
        Err::<(), _>(Failure::Transient)
    })
    .await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.result, Err(Failure::Transient));
}

#[tokio::test(start_paused = true)]
async fn classification_is_asked_for_every_failure() {
    let policy = exact_policy(5, ms(10), ms(100));
    let outcome = run_with_retry(&policy, None, is_transient, |attempt| async move {
        Err::<(), _>(if attempt < 3 {
            Failure::Transient
        } else {
            Failure::Permanent
        })
    })
    .await;
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.result, Err(Failure::Permanent));
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_whose_backoff_ends_past_the_deadline() {
    // Back-offs: 100, 200, 400 ms. Attempts start at 0, 100 and 300 ms; the
    // next back-off would end at 700 ms, past the 500 ms deadline.
    let policy = exact_policy(10, ms(100), Duration::from_secs(10));
    let start = Instant::now();
    let deadline = start + ms(500);
    let mut starts = Vec::new();
    let outcome = run_with_retry(&policy, Some(deadline), is_transient, |_| {
        starts.push(start.elapsed());
        async { Err::<(), _>(Failure::Transient) }
    })
    .await;
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.result, Err(Failure::Transient));
    assert!(starts.iter().all(|at| *at < ms(500)), "{starts:?}");
    // The run gave up at once instead of sleeping towards the deadline.
    assert!(start.elapsed() < ms(310), "{:?}", start.elapsed());
    assert!(Instant::now() <= deadline);
}

#[tokio::test(start_paused = true)]
async fn a_backoff_ending_exactly_at_the_deadline_is_not_slept() {
    let policy = exact_policy(10, ms(100), Duration::from_secs(10));
    let start = Instant::now();
    // Attempt 2 starts at 100 ms; its back-off of 200 ms would end at 300 ms.
    let outcome = run_with_retry(&policy, Some(start + ms(300)), is_transient, |_| async {
        Err::<(), _>(Failure::Transient)
    })
    .await;
    assert_eq!(outcome.attempts, 2);
    assert!(start.elapsed() < ms(300));
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_still_runs_the_first_attempt_only() {
    let policy = exact_policy(10, Duration::ZERO, ms(10));
    let deadline = Instant::now();
    tokio::time::advance(ms(5)).await;
    let outcome = run_with_retry(&policy, Some(deadline), is_transient, |_| async {
        Err::<(), _>(Failure::Transient)
    })
    .await;
    assert_eq!(outcome.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn success_before_the_deadline_is_returned() {
    let policy = exact_policy(10, ms(100), Duration::from_secs(10));
    let start = Instant::now();
    let outcome = run_with_retry(
        &policy,
        Some(start + ms(1000)),
        is_transient,
        |attempt| async move {
            if attempt == 4 {
                Ok(attempt)
            } else {
                Err(Failure::Transient)
            }
        },
    )
    .await;
    assert_eq!(outcome.attempts, 4);
    assert_eq!(outcome.result, Ok(4));
    assert!(start.elapsed() <= ms(1000));
}

#[tokio::test(start_paused = true)]
async fn jittered_runs_never_pass_the_deadline() {
    let policy = RetryPolicy::builder()
        .max_attempts(50)
        .initial_backoff(ms(20))
        .max_backoff(ms(200))
        .multiplier(1.5)
        .jitter(1.0)
        .build()
        .expect("valid");
    for budget in [0_u64, 1, 15, 40, 99, 250, 777] {
        let start = Instant::now();
        let deadline = start + ms(budget);
        let mut late_starts = 0;
        let outcome = run_with_retry(&policy, Some(deadline), is_transient, |attempt| {
            if attempt > 1 && Instant::now() >= deadline {
                late_starts += 1;
            }
            async { Err::<(), _>(Failure::Transient) }
        })
        .await;
        assert_eq!(late_starts, 0, "budget {budget} ms");
        assert!(outcome.attempts >= 1);
        if budget >= 250 {
            // Even the longest jittered back-offs (40 ms, then 60 ms) fit.
            assert!(outcome.attempts >= 3, "budget {budget} ms");
        }
        assert!(start.elapsed() <= ms(budget), "budget {budget} ms");
    }
}
