//! Criterion group `session-revalidate`: a session of 200 pinned keys
//! revalidating 10 of them (inline source, no cache, so each revalidation
//! fetches its 10 keys again and commits them transactionally).
//!
//! `cargo bench -p coalestra-benches --bench session`

use coalestra_benches::runtime;
use coalestra_benches::session::SessionRevalidate;
use criterion::{criterion_group, criterion_main, Criterion};

fn session_revalidate(c: &mut Criterion) {
    let rt = runtime();
    let session = rt.block_on(SessionRevalidate::new());
    let mut group = c.benchmark_group("session-revalidate");
    group.bench_function("coalestra", |b| b.to_async(&rt).iter(|| session.run()));
    group.finish();
}

criterion_group!(benches, session_revalidate);
criterion_main!(benches);
