//! Loom models of the small concurrent cores of Coalestra.
//!
//! This crate is not published and has no API. Its integration tests are
//! *models*: faithful, line-by-line copies of three critical sections of the
//! real code, written against a tiny synchronization facade
//! (`tests/support/mod.rs`) that is [`loom`](https://docs.rs/loom) under
//! `--cfg coalestra_loom` and `std` otherwise.
//!
//! | model | copied from |
//! | --- | --- |
//! | `tests/loom_flight.rs`: single-flight reservation and hand-off (owner completes, fails or is cancelled while waiters join and leave) | `crates/coalestra-orchestration/src/flight.rs` (`Flight::wait`, `FlightTable::reserve`, `FlightGuard::finish`, `Drop for FlightGuard`) |
//! | `tests/loom_breaker.rs`: the circuit breaker's half-open single probe (two callers race for the probe; the probe is cancelled; late outcomes of earlier permits) | `crates/coalestra-resilience/src/breaker.rs` (`Registry::settle`, `CircuitBreakers::before_call`, `Drop for CircuitPermit`) |
//! | `tests/loom_cache_write.rs`: the cache's conditional write (two writers with different ranks and timestamps; an expiry removal racing a write) | `crates/coalestra-cache/src/memory/write.rs` (`apply_key`) and `crates/coalestra-cache/src/memory/mod.rs` (`remove_if_current`) |
//!
//! Why copies: the real types are built on `std::sync`, `dashmap`, `moka`
//! and `tokio::sync::Notify`, which loom cannot instrument without a
//! cfg-switched synchronization facade inside the library sources. The
//! models keep the exact order of reads, writes, lock scopes and
//! notifications of the originals, and the cache model calls the real
//! decision rule ([`coalestra_core::WriteOutcome::decide`]). When one of the
//! originals changes, its model must be updated with it (each model names
//! the lines it copies).
//!
//! Run the exhaustive models with `cargo xtask loom`, which is
//! `RUSTFLAGS="--cfg coalestra_loom" cargo test -p coalestra-loom --release`
//! in a separate target directory. A plain `cargo test` runs every scenario
//! a few hundred times on real threads, so the models always compile and
//! their assertions stay exercised.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
