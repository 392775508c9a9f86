//! Criterion group `publish`: 10,000 publications per iteration through
//! `builder.publisher().publish(..)`, on distinct keys (a fresh builder per
//! iteration, outside the measurement) and on one key with increasing
//! `observed_at`. Throughput is reported per publication.
//!
//! `cargo bench -p coalestra-benches --bench publish`

use std::time::Duration;

use coalestra_benches::publish::{Publish, PUBLICATIONS};
use coalestra_benches::runtime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn publish(c: &mut Criterion) {
    let rt = runtime();
    let publish = Publish::new();
    let mut group = c.benchmark_group("publish");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PUBLICATIONS as u64));
    group.bench_function("distinct-10k", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let publish = &publish;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += publish.distinct().await;
                }
                total
            }
        });
    });
    group.bench_function("one-key-10k", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let publish = &publish;
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += publish.one_key().await;
                }
                total
            }
        });
    });
    group.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
