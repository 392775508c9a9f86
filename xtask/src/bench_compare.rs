//! `bench-compare`: runs the workloads of issue 9 with the Python original
//! and with this library on the same machine, in one run, and writes
//! `docs/performance.md` from what was measured (no number in that file is
//! typed by hand).
//!
//! 1. Creates `target/bench-venv` once (`python3 -m venv`) and installs
//!    `coalestra==0.6.4` from PyPI into it when it is not there yet.
//! 2. Runs every `benches/python/*.py` (files starting with `_` are helpers)
//!    with the venv's interpreter; each prints one JSON object per line.
//! 3. Runs `cargo run --release -p coalestra-benches --bin bench-report
//!    --isolated` (each workload in a fresh process), then once more with
//!    `--scale` in its own process (peak RSS).
//! 4. Counts the instructions of the workloads under callgrind
//!    (`bench_instructions`), numbers a shared machine cannot move; the
//!    latency-bound ones are counted next to tokio's floor.
//! 5. Writes the side-by-side table, the targets of the issue with the
//!    measured values, per-workload details, the instruction counts and the
//!    machine description.
//!
//! The JSON lines are flat objects of strings, numbers, booleans and nulls,
//! read by the small parser at the end of this file (the xtask is std-only),
//! which is all both sides print.

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process;

/// The Python package compared against.
const PYTHON_PACKAGE: &str = "coalestra";
/// Its version.
const PYTHON_VERSION: &str = "0.6.4";

/// Options of `bench-compare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Timed runs per Python workload (`COALESTRA_PY_RUNS`).
    pub python_runs: u32,
    /// Timed runs per Rust workload.
    pub rust_runs: u32,
    /// Keys streamed by the Rust `scale-1m` run (`COALESTRA_SCALE_KEYS`).
    pub scale_keys: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            python_runs: 10,
            rust_runs: 21,
            scale_keys: 1_000_000,
        }
    }
}

/// Parses `--python-runs N`, `--rust-runs N` and `--scale-keys N`.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let value = match inline {
            Some(value) => value,
            None => iter
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a number"))?,
        };
        let number: u64 = value
            .replace('_', "")
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{flag} needs a positive number, got {value:?}"))?;
        let small = || u32::try_from(number).map_err(|_| format!("{flag} is too large"));
        match flag {
            "--python-runs" => options.python_runs = small()?,
            "--rust-runs" => options.rust_runs = small()?,
            "--scale-keys" if number >= 1_000 => options.scale_keys = number,
            "--scale-keys" => return Err("--scale-keys must be at least 1000".into()),
            _ => return Err(format!("unknown bench-compare option {arg:?}")),
        }
    }
    Ok(options)
}

/// Results by workload name.
pub(crate) type Results = BTreeMap<String, Record>;

/// Runs both sides and writes `docs/performance.md`; returns its path.
pub fn run(root: &Path, options: &Options) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let python = ensure_venv(root)?;
    println!("==> Python side ({PYTHON_PACKAGE}=={PYTHON_VERSION})");
    let mut py = Results::new();
    for script in python_scripts(root)? {
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .current_dir(root.join("benches/python"))
            .env("COALESTRA_PY_RUNS", options.python_runs.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1");
        collect(&mut cmd, &mut py)?;
    }
    println!("==> Rust side");
    let mut rs = Results::new();
    let runs = options.rust_runs.to_string();
    // Every workload but scale-1m, each in a fresh process (as each Python
    // script runs on its own), then scale-1m in its own process.
    for args in [&["--isolated", "--runs", runs.as_str()][..], &["--scale"]] {
        let mut cmd = Command::new(&cargo);
        cmd.args(["run", "--release", "--quiet", "-p", "coalestra-benches"])
            .args(["--bin", "bench-report", "--"])
            .args(args)
            .env("COALESTRA_SCALE_KEYS", options.scale_keys.to_string())
            .current_dir(root);
        collect(&mut cmd, &mut rs)?;
    }
    let counts = crate::bench_instructions::measure(root, &cargo);
    let machine = machine(root, &python);
    let text = render(&py, &rs, &machine).replacen(
        "\n## Machine\n",
        &format!(
            "{}\n## Machine\n",
            crate::bench_instructions::render(&counts)
        ),
        1,
    );
    let path = root.join("docs/performance.md");
    fs::write(&path, &text).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    println!("==> wrote {}", path.display());
    Ok(path)
}

/// Creates the venv and installs the package when needed; returns the
/// venv's interpreter.
fn ensure_venv(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("target/bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        println!("==> creating {}", venv.display());
        process::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    let query = format!("import importlib.metadata as m; print(m.version({PYTHON_PACKAGE:?}))");
    let installed = capture(Command::new(&python).args(["-c", &query]));
    if installed.as_deref() != Some(PYTHON_VERSION) {
        let spec = format!("{PYTHON_PACKAGE}=={PYTHON_VERSION}");
        process::run(Command::new(&python).args(["-m", "pip", "install", "--quiet", &spec]))?;
    }
    Ok(python)
}

/// `benches/python/*.py` without the `_` helpers, sorted.
fn python_scripts(root: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = root.join("benches/python");
    let entries =
        fs::read_dir(&dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    let mut scripts: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("_");
            name.ends_with(".py") && !name.starts_with('_')
        })
        .collect();
    scripts.sort();
    if scripts.is_empty() {
        return Err(format!("no benchmark scripts in {}", dir.display()));
    }
    Ok(scripts)
}

/// Runs `cmd` and keeps every JSON line it prints, by workload.
fn collect(cmd: &mut Command, into: &mut Results) -> Result<(), String> {
    let mut bad = None;
    process::run_streaming(cmd, |line| {
        let line = line.trim();
        if !line.starts_with('{') {
            return;
        }
        match parse_object(line) {
            Ok(record) => match record.get("workload") {
                Some(Value::Str(name)) => {
                    into.insert(name.clone(), record);
                }
                _ => bad = Some(format!("a result without a workload: {line}")),
            },
            Err(reason) => bad = Some(format!("unreadable result ({reason}): {line}")),
        }
    })?;
    bad.map_or(Ok(()), Err)
}

/// Standard output of a command, trimmed, when it succeeds.
fn capture(cmd: &mut Command) -> Option<String> {
    let output = cmd.output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Facts about the machine and toolchains, as label and value.
fn machine(root: &Path, python: &Path) -> Vec<(&'static str, String)> {
    let run = |program: &OsStr, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(root);
        capture(&mut cmd).unwrap_or_else(|| "unknown".to_owned())
    };
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, model)| model.trim());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let python_version = run(python.as_os_str(), &["--version"]);
    vec![
        ("Date", run("date".as_ref(), &["-u", "+%Y-%m-%d %H:%M UTC"])),
        ("Machine (`uname -a`)", run("uname".as_ref(), &["-a"])),
        ("CPU", format!("{model} ({cpus} logical CPUs)")),
        ("Rust", run(&rustc, &["--version"])),
        (
            "Python",
            format!("{python_version} with {PYTHON_PACKAGE} {PYTHON_VERSION}"),
        ),
        (
            "Commit measured",
            run("git".as_ref(), &["rev-parse", "--short", "HEAD"]),
        ),
    ]
}

/// The workloads of the side-by-side table, in order (`scale-1m` follows).
const SIDE_BY_SIDE: &[&str] = &[
    "hot-cache-200",
    "cold-local-200",
    "batch-1000",
    "coalesce-1000",
    "latency-20",
    "publish-distinct-10k",
    "publish-one-key-10k",
    "session-revalidate",
];

/// The Rust-only reference workloads.
const REFERENCES: &[&str] = &[
    "hot-cache-200-baseline",
    "coalesce-1000-floor",
    "coalesce-1000-tokio-timer",
    "coalesce-1000-tokio-timer-floor",
    "latency-20-floor",
    "latency-20-tokio-timer",
    "latency-20-tokio-timer-floor",
];

/// The introduction of the report.
const INTRO: &str = "\
<!-- Generated by `cargo xtask bench-compare`; do not edit by hand. -->

Every number below was measured by `cargo xtask bench-compare` in one run on
the machine described at the end: the Python original (`benches/python/`)
and this library (`bench-report` in `benches/`, release build, one tokio
current-thread runtime like Python's one event loop, each workload in a fresh
process as each Python script runs on its own) run the same workloads of
issue 9 with the same keys, latencies and policies (see `benches/README.md`):

- `hot-cache-200`: one build of 200 keys, all fresh in the memory cache.
- `cold-local-200` / `batch-1000`: one build of 200 / 1,000 keys from an
  inline sync / batch source, no cache.
- `coalesce-1000`: 1,000 concurrent builds of one key; 10 ms source, no cache.
- `latency-20`: one build of 20 keys; 25 ms source, `max_concurrency` 20.
  The Rust sources of these two wait on a simulated remote backend, a thread
  that answers each call after the stated latency with the operating
  system's microsecond timers, as a network response arrives. A tokio sleep
  is not a 25 ms source: tokio rounds each deadline up to its next
  millisecond tick and wakes late by the part of a millisecond at which its
  driver parked, so a 25 ms sleep lasts about 26 ms with no engine at all.
  The `-tokio-timer` rows run the same builds over tokio sleeps, for
  reference. (The Python scripts use `asyncio.sleep`, whose epoll timeout is
  rounded up to a millisecond too.)
- `publish-*`: 10,000 `publish` calls on distinct keys / on one key.
- `session-revalidate`: a session of 200 pinned keys revalidates 10 of them.
- `scale-1m`: distinct keys in builds of 1,000 through a bounded cache.
- Rust only: `hot-cache-200-baseline`, a hand-written moka loop (get,
  freshness check, map insert); `-floor` rows time the same waits without
  the engine (1,000 tasks woken after one 10 ms call; 20 concurrent 25 ms
  calls).
";

/// Appends a markdown table.
pub(crate) fn table<const N: usize>(w: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let _ = writeln!(w, "| {} |\n|{}", header.join(" | "), " --- |".repeat(N));
    for row in rows {
        let _ = writeln!(w, "| {} |", row.join(" | "));
    }
}

pub(crate) fn render(py: &Results, rs: &Results, machine: &[(&str, String)]) -> String {
    let mut w = format!("# Performance\n\n{INTRO}\n## Side by side\n\n");
    let mut rows: Vec<[String; 4]> = SIDE_BY_SIDE
        .iter()
        .map(|name| {
            let (p, r) = (field(py, name, "median_ms"), field(rs, name, "median_ms"));
            [format!("`{name}`"), ms(p), ms(r), speedup(p, r)]
        })
        .collect();
    let scale = |r: &Results, name: &str| field(r, "scale-1m", name);
    let (p, r) = (scale(py, "us_per_key"), scale(rs, "us_per_key"));
    let per_key = |us: Option<f64>, res| {
        let size = match (scale(res, "keys"), scale(res, "bound")) {
            (Some(keys), Some(bound)) => format!("{} keys, bound {}", int(keys), int(bound)),
            _ => "not measured".into(),
        };
        format!("{} per key ({size})", ms(us.map(|us| us / 1e3)))
    };
    let (p_key, r_key) = (per_key(p, py), per_key(r, rs));
    rows.push(["`scale-1m`".into(), p_key, r_key, speedup(p, r)]);
    for name in REFERENCES {
        let r = ms(field(rs, name, "median_ms"));
        rows.push([format!("`{name}`"), "—".into(), r, "—".into()]);
    }
    let header = ["Workload", "Python median", "Rust median", "Python / Rust"];
    table(&mut w, header, &rows);
    crate::bench_targets::render_targets(&mut w, py, rs);
    render_details(&mut w, py, rs);
    let _ = writeln!(w, "\n## Machine\n");
    for (label, value) in machine {
        let _ = writeln!(w, "- {label}: `{value}`");
    }
    w.push_str(
        "\nThe machine is shared (two cores, other builds running), so single figures move by \
         several percent between runs; the ratios within one run are the comparison.\n",
    );
    w
}

fn render_details(w: &mut String, py: &Results, rs: &Results) {
    let mut names: Vec<&String> = py.keys().chain(rs.keys()).collect();
    names.sort();
    names.dedup();
    let mut rows: Vec<[String; 6]> = Vec::new();
    for name in names {
        for (side, results) in [("Python", py), ("Rust", rs)] {
            if results.contains_key(name.as_str()) {
                let get = |f: &str| field(results, name, f);
                let (runs, iters) = (opt_int(get("runs")), opt_int(get("iters_per_run")));
                let runs = format!("{runs} × {iters}");
                let median = ms(get("median_ms"));
                let (min, max) = (ms(get("min_ms")), ms(get("max_ms")));
                rows.push([format!("`{name}`"), side.into(), runs, median, min, max]);
            }
        }
    }
    let _ = writeln!(w, "\n## Details\n");
    table(
        w,
        [
            "Workload",
            "Side",
            "Runs × iterations",
            "Median",
            "Min",
            "Max",
        ],
        &rows,
    );
    w.push_str(
        "\nA Rust run of a fast workload averages the stated number of iterations (about 20 ms \
         per run); every Python run is one iteration. `scale-1m` is one run on each side, timed \
         over its builds only; the Python run is scaled down (sizes in the first table) because \
         the original needs about a millisecond per key.\n",
    );
}

pub(crate) fn field(results: &Results, workload: &str, name: &str) -> Option<f64> {
    match results.get(workload)?.get(name)? {
        Value::Num(n) => Some(*n),
        _ => None,
    }
}

pub(crate) fn flag(results: &Results, workload: &str, name: &str) -> Option<bool> {
    match results.get(workload)?.get(name)? {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

pub(crate) fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Some(n / d),
        _ => None,
    }
}

/// A duration given in milliseconds, with a unit suited to its size.
pub(crate) fn ms(value: Option<f64>) -> String {
    let Some(v) = value else { return "—".into() };
    let units = [(1e3, "s"), (1.0, "ms"), (1e-3, "µs")];
    let (scale, unit) = units
        .into_iter()
        .find(|(scale, _)| v >= *scale)
        .unwrap_or((1e-6, "ns"));
    format!("{} {unit}", sig3(v / scale))
}

/// Three significant digits.
fn sig3(v: f64) -> String {
    let decimals = usize::from(v < 100.0) + usize::from(v < 10.0);
    format!("{v:.decimals$}")
}

pub(crate) fn speedup(python: Option<f64>, rust: Option<f64>) -> String {
    times(ratio(python, rust))
}

pub(crate) fn times(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 1_000.0 => format!("{}×", int(v)),
        Some(v) => format!("{}×", sig3(v)),
        None => "—".into(),
    }
}

pub(crate) fn fixed(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:.3}"))
}

pub(crate) fn opt_int(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), int)
}

/// A non-negative integer with thousands separators.
pub(crate) fn int(value: f64) -> String {
    let digits = format!("{:.0}", value.round().abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A JSON scalar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// One result line.
pub(crate) type Record = BTreeMap<String, Value>;

/// Parses one result line: a flat JSON object of scalars whose strings
/// (workload names) hold no commas, quotes or escapes, as both sides print.
pub(crate) fn parse_object(text: &str) -> Result<Record, String> {
    let body = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("not a JSON object")?;
    let mut record = Record::new();
    for member in body.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (key, value) = member
            .split_once(':')
            .ok_or_else(|| format!("bad member {member:?}"))?;
        let key = unquote(key.trim()).ok_or_else(|| format!("bad key {key:?}"))?;
        let value = match value.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" | "NaN" | "Infinity" | "-Infinity" => Value::Null,
            other => match unquote(other) {
                Some(text) => Value::Str(text),
                None => Value::Num(other.parse().map_err(|_| format!("bad value {other:?}"))?),
            },
        };
        record.insert(key, value);
    }
    Ok(record)
}

/// The contents of a plain JSON string literal.
fn unquote(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\'])).then(|| inner.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_options_and_json_lines() {
        let options = parse(&args(&["--python-runs", "12", "--scale-keys=200_000"])).unwrap();
        assert_eq!((options.python_runs, options.scale_keys), (12, 200_000));
        assert!(parse(&args(&["--python-runs", "0"])).is_err());
        assert!(parse(&args(&["--scale-keys", "10"])).is_err());
        assert!(parse(&args(&["--fast", "1"])).is_err());
        let line = r#"{"workload": "hot-cache-200", "median_ms": 1.5e2, "ok": true, "n": null}"#;
        let record = parse_object(line).unwrap();
        assert_eq!(record["workload"], Value::Str("hot-cache-200".into()));
        assert_eq!(record["median_ms"], Value::Num(150.0));
        assert_eq!(
            (&record["ok"], &record["n"]),
            (&Value::Bool(true), &Value::Null)
        );
        assert!(parse_object("{\"a\": }").is_err() && parse_object("[1]").is_err());
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(ms(Some(104.25)), "104 ms");
        assert_eq!(ms(Some(0.1009)), "101 µs");
        assert_eq!(ms(Some(0.0285)), "28.5 µs");
        assert_eq!(ms(Some(12_345.0)), "12.3 s");
        assert_eq!(ms(None), "—");
        assert_eq!(int(1_234_567.0), "1,234,567");
        assert_eq!(times(Some(1_031.4)), "1,031×");
        assert_eq!(times(Some(3.534)), "3.53×");
    }
}
