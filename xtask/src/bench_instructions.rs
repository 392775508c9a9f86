//! Instruction counts of the workloads, for `bench-compare`.
//!
//! Wall-clock medians move by several percent on a shared machine; the
//! number of instructions a build executes does not. Each workload runs
//! under `valgrind --tool=callgrind` twice with different iteration counts
//! (`bench-profile WORKLOAD N`), and the difference divided by the extra
//! iterations is the cost of one iteration, setup excluded. The table shows
//! how much work the engine does per key next to the hand-written moka
//! baseline, and for the latency-bound workloads next to their floors (the
//! same waits without the engine), independent of what else the machine is
//! doing.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::bench_compare::int;
use crate::process;

/// Workload, keys per iteration, and the two iteration counts compared.
const WORKLOADS: &[(&str, u64, u32, u32)] = &[
    ("hot-cache-200", 200, 10, 60),
    ("hot-cache-200-baseline", 200, 10, 60),
    ("cold-local-200", 200, 5, 25),
    ("batch-1000", 1_000, 2, 8),
    ("session-revalidate", 10, 10, 60),
    ("publish-distinct-10k", 10_000, 1, 3),
    ("coalesce-1000", 1_000, 2, 6),
    ("coalesce-1000-floor", 1_000, 2, 6),
    ("latency-20", 20, 10, 30),
    ("latency-20-floor", 20, 10, 30),
];

/// One workload's cost per iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    /// The workload's name.
    pub workload: &'static str,
    /// Keys (or publications) per iteration.
    pub keys: u64,
    /// Instructions per iteration.
    pub per_iteration: f64,
}

/// Counts every workload; an error when valgrind or the build is missing.
pub fn measure(root: &Path, cargo: &OsStr) -> Result<Vec<Count>, String> {
    let valgrind = Command::new("valgrind").arg("--version").output();
    if !valgrind.is_ok_and(|out| out.status.success()) {
        return Err("valgrind is not installed".to_owned());
    }
    let mut build = Command::new(cargo);
    build
        .args(["build", "--release", "--quiet", "-p", "coalestra-benches"])
        .args(["--bin", "bench-profile"])
        .current_dir(root);
    process::run(&mut build)?;
    let exe = root.join("target/release/bench-profile");
    let mut counts = Vec::new();
    for &(workload, keys, small, large) in WORKLOADS {
        let at = |iterations: u32| -> Result<u64, String> {
            let output = Command::new("valgrind")
                .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
                .arg(&exe)
                .args([workload, &iterations.to_string()])
                .current_dir(root)
                .output()
                .map_err(|err| format!("cannot run valgrind: {err}"))?;
            if !output.status.success() {
                return Err(format!("bench-profile {workload} failed under valgrind"));
            }
            collected(&String::from_utf8_lossy(&output.stderr))
                .ok_or_else(|| format!("no instruction count for {workload}"))
        };
        println!("==> instructions: {workload}");
        let (low, high) = (at(small)?, at(large)?);
        let extra = f64::from(large - small);
        counts.push(Count {
            workload,
            keys,
            per_iteration: high.saturating_sub(low) as f64 / extra,
        });
    }
    Ok(counts)
}

/// The total of callgrind's `Collected : N` line.
fn collected(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|line| {
        let (_, count) = line.split_once("Collected :")?;
        count.trim().parse().ok()
    })
}

/// The Markdown section for `docs/performance.md`.
pub fn render(counts: &Result<Vec<Count>, String>) -> String {
    let mut w = String::from("\n## Instruction counts\n\n");
    let counts = match counts {
        Ok(counts) => counts,
        Err(reason) => {
            let _ = writeln!(w, "Not measured in this run: {reason}.");
            return w;
        }
    };
    w.push_str(
        "Instructions executed per iteration (`valgrind --tool=callgrind` on \
         `bench-profile`, the difference of two runs with different iteration \
         counts, so setup is excluded). Unlike the medians above, these \
         numbers do not depend on the load of the machine.\n\n",
    );
    w.push_str("| Workload | Instructions per iteration | Per key |\n| --- | --- | --- |\n");
    for count in counts {
        let _ = writeln!(
            w,
            "| `{}` | {} | {} |",
            count.workload,
            int(count.per_iteration),
            int(count.per_iteration / count.keys as f64)
        );
    }
    let of = |name: &str| {
        counts
            .iter()
            .find(|c| c.workload == name)
            .map(|c| c.per_iteration)
    };
    if let (Some(hot), Some(base)) = (of("hot-cache-200"), of("hot-cache-200-baseline")) {
        if base > 0.0 {
            let _ = writeln!(
                w,
                "\n`hot-cache-200` executes {:.2}× the instructions of its hand-written baseline.",
                hot / base
            );
        }
    }
    for (name, unit) in [("coalesce-1000", "build"), ("latency-20", "key")] {
        let floor = format!("{name}-floor");
        let found = counts.iter().find(|c| c.workload == name);
        if let (Some(count), Some(floor_count)) = (found, of(&floor)) {
            let extra = count.per_iteration - floor_count;
            let _ = writeln!(
                w,
                "\n`{name}` executes {} instructions per iteration beyond its floor \
                 (`{floor}`, the same waits without the engine), {} per {unit}.",
                int(extra),
                int(extra / count.keys as f64)
            );
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_callgrinds_total() {
        let stderr = "==1== Callgrind\n==1== Collected : 12345678\n==1==\n";
        assert_eq!(collected(stderr), Some(12_345_678));
        assert_eq!(collected("nothing"), None);
    }

    #[test]
    fn renders_counts_and_the_baseline_ratio() {
        let counts = Ok(vec![
            Count {
                workload: "hot-cache-200",
                keys: 200,
                per_iteration: 300_000.0,
            },
            Count {
                workload: "hot-cache-200-baseline",
                keys: 200,
                per_iteration: 200_000.0,
            },
        ]);
        let text = render(&counts);
        assert!(
            text.contains("| `hot-cache-200` | 300,000 | 1,500 |"),
            "{text}"
        );
        assert!(text.contains("1.50× the instructions"), "{text}");
        assert!(!text.contains("beyond its floor"), "{text}");
        let missing = render(&Err("valgrind is not installed".to_owned()));
        assert!(missing.contains("Not measured in this run: valgrind is not installed."));
    }

    #[test]
    fn renders_the_engine_share_beyond_tokios_floor() {
        let count = |workload, keys, per_iteration| Count {
            workload,
            keys,
            per_iteration,
        };
        let counts = Ok(vec![
            count("latency-20", 20, 200_000.0),
            count("latency-20-floor", 20, 80_000.0),
            count("coalesce-1000", 1_000, 13_000_000.0),
        ]);
        let text = render(&counts);
        assert!(
            text.contains("`latency-20` executes 120,000 instructions per iteration beyond its floor (`latency-20-floor`, the same waits without the engine), 6,000 per key."),
            "{text}"
        );
        // No floor was counted for coalesce-1000: no comparison is made up.
        assert!(!text.contains("`coalesce-1000` executes"), "{text}");
    }
}
