//! `scale-1m` (`harness = false`): distinct keys streamed through a builder
//! whose memory cache is bounded at 100,000 entries; prints throughput, the
//! largest cache size seen and resident memory (`VmRSS`/`VmHWM` from
//! `/proc/self/status`), then the same figures as one JSON line.
//!
//! Streams 200,000 keys by default; `COALESTRA_SCALE_KEYS=1000000 cargo
//! bench -p coalestra-benches --bench scale` runs the full million; run as a
//! test (`cargo test --benches`), it only streams a few thousand keys. Exits
//! with a failure when the cache exceeded its bound or resident memory grew
//! by more than 10 % after the warm-up.

use std::process::ExitCode;

use coalestra_benches::{runtime, scale};

/// Keys of the smoke run made when the binary runs as a test
/// (`cargo test --benches`, which does not pass `--bench`).
const SMOKE_KEYS: usize = 4 * scale::BATCH;

fn main() -> ExitCode {
    let benching = std::env::args().any(|arg| arg == "--bench");
    let keys = if benching {
        scale::keys_from_env()
    } else {
        SMOKE_KEYS
    };
    let report = runtime().block_on(scale::run(keys));
    println!(
        "scale-1m: {} keys (bound {}, warm-up {}) in {:.2?}: {:.0} keys/s",
        report.keys,
        report.bound,
        report.warm_up_keys,
        report.build_time,
        report.keys_per_sec()
    );
    println!(
        "scale-1m: largest cache size {} (bound respected: {})",
        report.max_cache_size,
        report.bound_respected()
    );
    println!(
        "scale-1m: RSS after warm-up {:.1} MiB, max after {:.1} MiB ({:+.1} %), \
         final {:.1} MiB, peak {:.1} MiB",
        report.rss_after_warm_up_kib as f64 / 1024.0,
        report.rss_max_after_warm_up_kib as f64 / 1024.0,
        report.rss_growth() * 100.0,
        report.rss_final_kib as f64 / 1024.0,
        report.peak_rss_kib as f64 / 1024.0
    );
    println!("{}", report.record().to_line());
    // Resident memory of a smoke run says nothing: only the bound counts.
    if report.bound_respected() && (report.memory_flat() || !benching) {
        ExitCode::SUCCESS
    } else {
        eprintln!("scale-1m: TARGET MISSED (cache bound or flat memory after warm-up)");
        ExitCode::FAILURE
    }
}
