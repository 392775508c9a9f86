//! Criterion groups of the read path: `hot-cache-200` (with its
//! hand-written moka baseline in the same group, so the report reads as a
//! ratio), `cold-local-200` and `batch-1000`.
//!
//! `cargo bench -p coalestra-benches --bench read_path`

use coalestra_benches::baseline::Baseline;
use coalestra_benches::read_path::{ColdLocal, HotCache, BATCH_KEYS, READ_KEYS};
use coalestra_benches::runtime;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn hot_cache(c: &mut Criterion) {
    let rt = runtime();
    let hot = rt.block_on(HotCache::new());
    let baseline = Baseline::new();
    let mut group = c.benchmark_group("hot-cache-200");
    group.throughput(Throughput::Elements(READ_KEYS as u64));
    group.bench_function("coalestra", |b| b.to_async(&rt).iter(|| hot.run()));
    group.bench_function("baseline-moka", |b| b.iter(|| baseline.run()));
    group.finish();
}

fn cold_local(c: &mut Criterion) {
    let rt = runtime();
    let cold = ColdLocal::single();
    let mut group = c.benchmark_group("cold-local-200");
    group.throughput(Throughput::Elements(READ_KEYS as u64));
    group.bench_function("coalestra", |b| b.to_async(&rt).iter(|| cold.run()));
    group.finish();
}

fn batch(c: &mut Criterion) {
    let rt = runtime();
    let batch = ColdLocal::batch();
    let mut group = c.benchmark_group("batch-1000");
    group.throughput(Throughput::Elements(BATCH_KEYS as u64));
    group.bench_function("coalestra", |b| b.to_async(&rt).iter(|| batch.run()));
    group.finish();
}

criterion_group!(benches, hot_cache, cold_local, batch);
criterion_main!(benches);
