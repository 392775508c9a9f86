//! `bench-report`: the Rust side of `cargo xtask bench-compare`.
//!
//! Runs every workload of issue 9 on a current-thread tokio runtime and
//! prints one JSON object per line (`workload`, `median_ms`, `runs`, and
//! workload-specific figures such as `source_calls` or `ratio_to_latency`).
//!
//! ```text
//! bench-report [--runs N] [--only NAME[,NAME..]]   every workload but scale-1m
//! bench-report --isolated [--runs N] [--only ..]   the same, each workload in
//!                                                  a fresh process of its own
//! bench-report --scale                             scale-1m only (own process,
//!                                                  so its peak RSS is its own)
//! ```
//!
//! `--isolated` keeps one workload's heap (and allocator state) from
//! shaping the next one's timings, as each Python script runs on its own.
//!
//! The latency-bound workloads' sources wait on a simulated remote backend;
//! their `-tokio-timer` variants wait on tokio sleeps instead. The `*-floor`
//! workloads time the same waits without the engine (task wake-ups only),
//! so each ratio can be read against what the runtime itself allows.
//!
//! `COALESTRA_SCALE_KEYS` sets the number of keys of `scale-1m` (default
//! 200,000).

use std::process::ExitCode;
use std::time::Duration;

use coalestra_benches::baseline::Baseline;
use coalestra_benches::concurrency::{
    coalesce_floor, latency_floor, Coalesce, Delay, Latency, Timed, COALESCE_LATENCY,
    LATENCY_SOURCE,
};
use coalestra_benches::measure::{sample, Record, Summary};
use coalestra_benches::publish::{Publish, PUBLICATIONS};
use coalestra_benches::read_path::{ColdLocal, HotCache};
use coalestra_benches::session::SessionRevalidate;
use coalestra_benches::{runtime, scale};
use tokio::time::Instant;

/// Default runs per workload (the Python side uses at least ten).
const DEFAULT_RUNS: usize = 21;
/// How long one run of a fast workload lasts (iterations are averaged).
const RUN_TARGET: Duration = Duration::from_millis(20);

/// Every workload `bench-report` knows, in report order.
const WORKLOADS: &[&str] = &[
    "hot-cache-200",
    "hot-cache-200-baseline",
    "cold-local-200",
    "batch-1000",
    "coalesce-1000",
    "coalesce-1000-floor",
    "coalesce-1000-tokio-timer",
    "coalesce-1000-tokio-timer-floor",
    "latency-20",
    "latency-20-floor",
    "latency-20-tokio-timer",
    "latency-20-tokio-timer-floor",
    "publish-distinct-10k",
    "publish-one-key-10k",
    "session-revalidate",
];

struct Options {
    runs: usize,
    only: Vec<String>,
    scale: bool,
    isolated: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        runs: DEFAULT_RUNS,
        only: Vec::new(),
        scale: false,
        isolated: false,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--scale" => options.scale = true,
            "--isolated" => options.isolated = true,
            "--runs" => {
                let value = iter.next().ok_or("--runs needs a number")?;
                options.runs = value
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| format!("bad --runs {value:?}"))?;
            }
            "--only" => {
                let value = iter.next().ok_or("--only needs workload names")?;
                for name in value.split(',').map(str::trim) {
                    if !WORKLOADS.contains(&name) {
                        return Err(format!("unknown workload {name:?}"));
                    }
                    options.only.push(name.to_owned());
                }
            }
            // `cargo bench` passes `--bench`; nothing else is expected.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(reason) => {
            eprintln!("bench-report: {reason}");
            return ExitCode::from(2);
        }
    };
    let rt = runtime();
    if options.scale {
        let report = rt.block_on(scale::run(scale::keys_from_env()));
        println!("{}", report.record().to_line());
        return ExitCode::SUCCESS;
    }
    let wanted = |name: &str| options.only.is_empty() || options.only.iter().any(|n| n == name);
    if options.isolated {
        return run_isolated(&options, WORKLOADS.iter().copied().filter(|n| wanted(n)));
    }
    for name in WORKLOADS.iter().copied().filter(|n| wanted(n)) {
        eprintln!("bench-report: {name}");
        let record = rt.block_on(measure(name, options.runs));
        println!("{}", record.to_line());
    }
    ExitCode::SUCCESS
}

/// Runs each workload in a fresh process of this binary and prints its
/// lines.
fn run_isolated<'a>(options: &Options, names: impl Iterator<Item = &'a str>) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("bench-report: cannot find this binary: {err}");
            return ExitCode::FAILURE;
        }
    };
    for name in names {
        let output = std::process::Command::new(&exe)
            .args(["--runs", &options.runs.to_string(), "--only", name])
            .stderr(std::process::Stdio::inherit())
            .output();
        match output {
            Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
            Ok(out) => {
                eprintln!("bench-report: {name} failed ({})", out.status);
                return ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!("bench-report: cannot run {name}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Times `f` once.
async fn timed<F: std::future::Future>(f: F) -> Duration {
    let started = Instant::now();
    let out = f.await;
    let elapsed = started.elapsed();
    drop(out);
    elapsed
}

async fn measure(name: &str, runs: usize) -> Record {
    match name {
        "hot-cache-200" => {
            let hot = HotCache::new().await;
            let summary = sample(runs, RUN_TARGET, || timed(hot.run())).await;
            Record::timed(name, &summary)
        }
        "hot-cache-200-baseline" => {
            let baseline = Baseline::new();
            let summary = sample(runs, RUN_TARGET, || async {
                let started = Instant::now();
                let map = baseline.run();
                let elapsed = started.elapsed();
                drop(map);
                elapsed
            })
            .await;
            Record::timed(name, &summary)
        }
        "cold-local-200" => {
            let cold = ColdLocal::single();
            Record::timed(name, &sample(runs, RUN_TARGET, || timed(cold.run())).await)
        }
        "batch-1000" => {
            let batch = ColdLocal::batch();
            Record::timed(name, &sample(runs, RUN_TARGET, || timed(batch.run())).await)
        }
        "coalesce-1000" | "coalesce-1000-tokio-timer" => {
            let coalesce = Coalesce::with_delay(Delay::for_workload(name, COALESCE_LATENCY));
            latency_bound(name, runs, COALESCE_LATENCY, || coalesce.run()).await
        }
        "latency-20" | "latency-20-tokio-timer" => {
            let latency = Latency::with_delay(Delay::for_workload(name, LATENCY_SOURCE));
            latency_bound(name, runs, LATENCY_SOURCE, || latency.run()).await
        }
        "coalesce-1000-floor" | "coalesce-1000-tokio-timer-floor" => {
            let delay = Delay::for_workload(name, COALESCE_LATENCY);
            latency_bound(name, runs, COALESCE_LATENCY, || async {
                Timed {
                    wall: coalesce_floor(&delay).await,
                    calls: 1,
                }
            })
            .await
        }
        "latency-20-floor" | "latency-20-tokio-timer-floor" => {
            let delay = Delay::for_workload(name, LATENCY_SOURCE);
            latency_bound(name, runs, LATENCY_SOURCE, || async {
                Timed {
                    wall: latency_floor(&delay).await,
                    calls: 20,
                }
            })
            .await
        }
        "publish-distinct-10k" | "publish-one-key-10k" => {
            let publish = Publish::new();
            let distinct = name == "publish-distinct-10k";
            let mut samples = Vec::with_capacity(runs);
            // One warm-up run, then `runs` timed runs of 10,000 publications.
            for run in 0..=runs {
                let elapsed = if distinct {
                    publish.distinct().await
                } else {
                    publish.one_key().await
                };
                if run > 0 {
                    samples.push(elapsed);
                }
            }
            let summary = Summary::of(samples, 1);
            let per_op = summary.median / PUBLICATIONS as u32;
            Record::timed(name, &summary)
                .int("publications", PUBLICATIONS as u64)
                .num("us_per_publication", per_op.as_secs_f64() * 1e6)
        }
        "session-revalidate" => {
            let session = SessionRevalidate::new().await;
            Record::timed(
                name,
                &sample(runs, RUN_TARGET, || timed(session.run())).await,
            )
        }
        other => unreachable!("unknown workload {other}"),
    }
}

/// Runs a latency-bound workload once to warm up, then `runs` times, and
/// reports the median wall time, its ratio to the source latency and the
/// source calls per run.
async fn latency_bound<F, Fut>(name: &str, runs: usize, latency: Duration, mut run: F) -> Record
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Timed>,
{
    run().await;
    let mut walls = Vec::with_capacity(runs);
    let mut calls = Vec::with_capacity(runs);
    for _ in 0..runs {
        let timed = run().await;
        walls.push(timed.wall);
        calls.push(timed.calls);
    }
    let summary = Summary::of(walls, 1);
    let ratio = summary.median.as_secs_f64() / latency.as_secs_f64();
    Record::timed(name, &summary)
        .ms("latency_ms", latency)
        .num("ratio_to_latency", ratio)
        .int("source_calls_min", calls.iter().copied().min().unwrap_or(0))
        .int("source_calls_max", calls.iter().copied().max().unwrap_or(0))
}
