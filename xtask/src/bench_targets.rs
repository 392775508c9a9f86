//! The targets of issue 9 in `docs/performance.md`: each goal next to the
//! measured values, with the tokio-timer variants of the latency-bound
//! workloads shown for reference.

use std::fmt::Write as _;

use crate::bench_compare::{
    field, fixed, flag, int, ms, opt_int, ratio, speedup, table, times, Results,
};

/// What the last column of a target row says.
enum Verdict {
    /// Met, missed, or not measured (`None`).
    Judged(Option<bool>),
    /// A row shown for reference, not a target.
    Reference,
}

pub(crate) fn render_targets(w: &mut String, py: &Results, rs: &Results) {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut row = |target: &str, goal: &str, rust: String, python: String, met: Verdict| {
        let result = match met {
            Verdict::Judged(Some(true)) => "met",
            Verdict::Judged(Some(false)) => "**missed**",
            Verdict::Judged(None) => "not measured",
            Verdict::Reference => "—",
        };
        rows.push([target.into(), goal.into(), rust, python, result.into()]);
    };
    let median = |r: &Results, name: &str| field(r, name, "median_ms");
    let (hot, base) = (
        median(rs, "hot-cache-200"),
        median(rs, "hot-cache-200-baseline"),
    );
    let over = ratio(hot, base);
    let (t, ok) = (
        "`hot-cache-200` / hand-written baseline",
        over.map(|x| x <= 1.5),
    );
    let m = format!("{} ({} vs {})", times(over), ms(hot), ms(base));
    row(t, "≤ 1.5×", m, "—".into(), Verdict::Judged(ok));
    for (name, goal) in [
        ("hot-cache-200", 1e3),
        ("cold-local-200", 5e2),
        ("batch-1000", 5e2),
    ] {
        let (p, r) = (median(py, name), median(rs, name));
        let (t, g) = (
            format!("`{name}` faster than Python"),
            format!("≥ {}×", int(goal)),
        );
        let ok = ratio(p, r).map(|x| x >= goal);
        row(&t, &g, speedup(p, r), ms(p), Verdict::Judged(ok));
    }
    let calls = |r: &Results| {
        let get = |name| field(r, "coalesce-1000", name);
        match (get("source_calls_min"), get("source_calls_max")) {
            (Some(lo), Some(hi)) if lo == hi => (int(lo), Some(lo == 1.0)),
            (Some(lo), Some(hi)) => (format!("{}–{}", int(lo), int(hi)), Some(false)),
            _ => ("—".to_owned(), None),
        }
    };
    let ((rc, rc_ok), (pc, _)) = (calls(rs), calls(py));
    let t = "`coalesce-1000` source calls per run";
    row(t, "exactly 1", rc, pc, Verdict::Judged(rc_ok));
    for (name, goal) in [("coalesce-1000", 1.3), ("latency-20", 1.05)] {
        let latency = ms(field(rs, name, "latency_ms"));
        let over = |r: &Results, name: &str| field(r, name, "ratio_to_latency");
        let (p, r) = (over(py, name), over(rs, name));
        let floor = over(rs, &format!("{name}-floor"));
        let m = format!("{} (floor {})", fixed(r), fixed(floor));
        let (t, g) = (format!("`{name}` wall / {latency}"), format!("≤ {goal}"));
        row(&t, &g, m, fixed(p), Verdict::Judged(r.map(|x| x <= goal)));
        // For reference, not a target: the same builds over tokio sleeps.
        let timer = format!("{name}-tokio-timer");
        if rs.contains_key(timer.as_str()) {
            let floor = over(rs, &format!("{timer}-floor"));
            let m = format!("{} (floor {})", fixed(over(rs, &timer)), fixed(floor));
            let t = format!("`{timer}` wall / {latency} (reference)");
            row(&t, "—", m, "—".into(), Verdict::Reference);
        }
    }
    let per = |r: &Results| field(r, "publish-distinct-10k", "us_per_publication");
    let target = "`publish` per distinct-key publication";
    let us = |r: &Results| ms(per(r).map(|us| us / 1e3));
    row(
        target,
        "≤ 1 µs",
        us(rs),
        us(py),
        Verdict::Judged(per(rs).map(|us| us <= 1.0)),
    );
    let scale = |r: &Results, name: &str| field(r, "scale-1m", name);
    let size = |r: &Results| {
        let (max, bound) = (scale(r, "max_cache_size"), scale(r, "bound"));
        format!("largest size {} of {}", opt_int(max), opt_int(bound))
    };
    let ok = flag(rs, "scale-1m", "bound_respected");
    let t = "`scale-1m` cache never exceeds its bound";
    row(t, "size ≤ bound", size(rs), size(py), Verdict::Judged(ok));
    let growth = |r: &Results| {
        let mib = |name: &str| scale(r, name).map_or("—".into(), |v| format!("{v:.1} MiB"));
        let pct = scale(r, "rss_growth_pct").map_or("—".into(), |g| format!("{g:+.1} %"));
        let warm = mib("rss_after_warm_up_mib");
        let (after, peak) = (mib("rss_max_after_warm_up_mib"), mib("peak_rss_mib"));
        format!("{pct} ({warm} after warm-up, at most {after} after, peak {peak})")
    };
    let ok = flag(rs, "scale-1m", "memory_flat");
    let t = "`scale-1m` RSS after warm-up";
    row(
        t,
        "within 10 %",
        growth(rs),
        growth(py),
        Verdict::Judged(ok),
    );
    let _ = writeln!(w, "\n## Targets of issue 9\n");
    let header = ["Target", "Goal", "Measured (Rust)", "Python", "Result"];
    table(w, header, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_compare::{parse_object, render, Value};

    #[test]
    fn renders_targets_from_results() {
        let mut rs = Results::new();
        let line = r#"{"workload":"hot-cache-200","median_ms":0.1}"#;
        rs.insert("hot-cache-200".into(), parse_object(line).unwrap());
        let base = r#"{"workload":"hot-cache-200-baseline","median_ms":0.05}"#;
        rs.insert("hot-cache-200-baseline".into(), parse_object(base).unwrap());
        let text = render(&Results::new(), &rs, &[("Date", "today".into())]);
        assert!(text.contains("| `hot-cache-200` / hand-written baseline | ≤ 1.5× | 2.00×"));
        assert!(text.contains("**missed**"));
        assert!(text.contains("- Date: `today`"));
        // Without tokio-timer results there is no reference row.
        assert!(!text.contains("(reference)"), "{text}");
    }

    #[test]
    fn tokio_timer_rows_are_shown_for_reference_only() {
        let mut rs = Results::new();
        let lines = [
            r#"{"workload":"latency-20","latency_ms":25.0,"ratio_to_latency":1.011}"#,
            r#"{"workload":"latency-20-floor","latency_ms":25.0,"ratio_to_latency":1.009}"#,
            r#"{"workload":"latency-20-tokio-timer","latency_ms":25.0,"ratio_to_latency":1.052}"#,
            r#"{"workload":"latency-20-tokio-timer-floor","latency_ms":25.0,"ratio_to_latency":1.049}"#,
        ];
        for line in lines {
            let record = parse_object(line).unwrap();
            let Some(Value::Str(name)) = record.get("workload").cloned() else {
                panic!("no workload in {line}");
            };
            rs.insert(name, record);
        }
        let text = render(&Results::new(), &rs, &[]);
        assert!(
            text.contains(
                "| `latency-20` wall / 25.0 ms | ≤ 1.05 | 1.011 (floor 1.009) | — | met |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| `latency-20-tokio-timer` wall / 25.0 ms (reference) | — | 1.052 (floor 1.049) | — | — |"),
            "{text}"
        );
    }
}
