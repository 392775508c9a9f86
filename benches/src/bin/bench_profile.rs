//! `bench-profile`: runs one workload a fixed number of times, untimed, so
//! instruction counts (`valgrind --tool=callgrind`, `perf stat`) compare
//! runs of the same work.
//!
//! ```text
//! bench-profile WORKLOAD [ITERATIONS]
//! ```
//!
//! `WORKLOAD` is one of `hot-cache-200`, `hot-cache-200-baseline`,
//! `cold-local-200`, `batch-1000`, `coalesce-1000`, `latency-20`,
//! `publish-distinct-10k`, `publish-one-key-10k`, `session-revalidate`,
//! the floors `coalesce-1000-floor` and `latency-20-floor`, or any of the
//! four with `-tokio-timer` before `-floor` (their sources wait on tokio
//! sleeps instead of the simulated remote backend); default 100 iterations.

use std::process::ExitCode;

use coalestra_benches::baseline::Baseline;
use coalestra_benches::concurrency::{
    coalesce_floor, latency_floor, Coalesce, Delay, Latency, COALESCE_LATENCY, LATENCY_SOURCE,
};
use coalestra_benches::publish::Publish;
use coalestra_benches::read_path::{ColdLocal, HotCache};
use coalestra_benches::runtime;
use coalestra_benches::session::SessionRevalidate;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(workload) = args.next() else {
        eprintln!("usage: bench-profile WORKLOAD [ITERATIONS]");
        return ExitCode::from(2);
    };
    let iterations: usize = match args.next().map(|n| n.parse()) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("bench-profile: ITERATIONS must be a number");
            return ExitCode::from(2);
        }
    };
    let rt = runtime();
    rt.block_on(async {
        match workload.as_str() {
            "hot-cache-200" => {
                let hot = HotCache::new().await;
                for _ in 0..iterations {
                    drop(hot.run().await);
                }
            }
            "hot-cache-200-baseline" => {
                let baseline = Baseline::new();
                for _ in 0..iterations {
                    drop(baseline.run());
                }
            }
            "cold-local-200" | "batch-1000" => {
                let cold = if workload == "batch-1000" {
                    ColdLocal::batch()
                } else {
                    ColdLocal::single()
                };
                for _ in 0..iterations {
                    drop(cold.run().await);
                }
            }
            "publish-distinct-10k" | "publish-one-key-10k" => {
                let publish = Publish::new();
                for _ in 0..iterations {
                    if workload == "publish-distinct-10k" {
                        publish.distinct().await;
                    } else {
                        publish.one_key().await;
                    }
                }
            }
            "coalesce-1000" | "coalesce-1000-tokio-timer" => {
                let coalesce =
                    Coalesce::with_delay(Delay::for_workload(&workload, COALESCE_LATENCY));
                for _ in 0..iterations {
                    coalesce.run().await;
                }
            }
            "latency-20" | "latency-20-tokio-timer" => {
                let latency = Latency::with_delay(Delay::for_workload(&workload, LATENCY_SOURCE));
                for _ in 0..iterations {
                    latency.run().await;
                }
            }
            "coalesce-1000-floor" | "coalesce-1000-tokio-timer-floor" => {
                let delay = Delay::for_workload(&workload, COALESCE_LATENCY);
                for _ in 0..iterations {
                    coalesce_floor(&delay).await;
                }
            }
            "latency-20-floor" | "latency-20-tokio-timer-floor" => {
                let delay = Delay::for_workload(&workload, LATENCY_SOURCE);
                for _ in 0..iterations {
                    latency_floor(&delay).await;
                }
            }
            "session-revalidate" => {
                let session = SessionRevalidate::new().await;
                for _ in 0..iterations {
                    session.run().await;
                }
            }
            other => {
                eprintln!("bench-profile: unknown workload {other:?}");
                return ExitCode::from(2);
            }
        }
        ExitCode::SUCCESS
    })
}
