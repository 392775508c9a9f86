//! Criterion groups of the latency-bound workloads: `coalesce-1000` (1,000
//! concurrent builds of one key against a 10 ms source; every iteration
//! asserts exactly one source call) and `latency-20` (20 keys from a 25 ms
//! source with `max_concurrency` 20), both over a simulated remote backend
//! answering after the stated latency. Both print their wall time as a ratio
//! of the source latency after the group.
//!
//! `cargo bench -p coalestra-benches --bench concurrency`

use std::cell::RefCell;
use std::time::Duration;

use coalestra_benches::concurrency::{Coalesce, Latency, Timed, COALESCE_LATENCY, LATENCY_SOURCE};
use coalestra_benches::runtime;
use criterion::{criterion_group, criterion_main, Criterion};

/// Prints the best and worst wall-time ratios an iteration reached.
fn print_ratios(group: &str, latency: Duration, seen: &[Timed]) {
    let ratios = seen.iter().map(|t| t.ratio_to(latency));
    let (min, max) = ratios.fold((f64::MAX, 0.0_f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let calls = seen.iter().map(|t| t.calls).max().unwrap_or(0);
    println!(
        "{group}: wall / {latency:?} between {min:.3} and {max:.3} over {} runs, \
         at most {calls} source calls per run",
        seen.len()
    );
}

fn coalesce(c: &mut Criterion) {
    let rt = runtime();
    let coalesce = Coalesce::new();
    let seen = RefCell::new(Vec::new());
    let mut group = c.benchmark_group("coalesce-1000");
    group.sample_size(10);
    group.bench_function("coalestra", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let coalesce = &coalesce;
            let seen = &seen;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let timed = coalesce.run().await;
                    assert_eq!(
                        timed.calls, 1,
                        "1,000 concurrent builds must share one call"
                    );
                    total += timed.wall;
                    seen.borrow_mut().push(timed);
                }
                total
            }
        });
    });
    group.finish();
    print_ratios("coalesce-1000", COALESCE_LATENCY, &seen.borrow());
}

fn latency(c: &mut Criterion) {
    let rt = runtime();
    let latency = Latency::new();
    let seen = RefCell::new(Vec::new());
    let mut group = c.benchmark_group("latency-20");
    group.sample_size(10);
    group.bench_function("coalestra", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let latency = &latency;
            let seen = &seen;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let timed = latency.run().await;
                    total += timed.wall;
                    seen.borrow_mut().push(timed);
                }
                total
            }
        });
    });
    group.finish();
    print_ratios("latency-20", LATENCY_SOURCE, &seen.borrow());
}

criterion_group!(benches, coalesce, latency);
criterion_main!(benches);
