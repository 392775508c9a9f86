//! Repository automation for Coalestra for Rust, run as `cargo xtask <command>`
//! (the alias lives in `.cargo/config.toml`).
//!
//! The xtask is std-only on purpose: it builds in seconds, needs nothing from
//! the registry and never touches the dependency graph of the published
//! crates.
//!
//! # Commands
//!
//! * `release-check` — the release gate. Runs, in order and stopping at the
//!   first failure: `cargo fmt --check`; the public API manifest
//!   (`docs/public-api.txt`); version consistency (root `Cargo.toml`,
//!   `CHANGELOG.md`, member crates, `capabilities()`, MSRV workflows and, in
//!   CI, the release tag); `cargo clippy -D warnings`; `cargo test` with a
//!   floor on the number of passed tests (kept in `xtask/test-count-min.txt`);
//!   `cargo doc` with rustdoc warnings denied; `cargo bench --no-run`; every
//!   example; `cargo package` with two consumer projects built against the
//!   packaged crates; and `cargo deny check licenses bans sources` when
//!   cargo-deny is available. See [`release_check`] for how to add a step.
//! * `public-api [--check | --bless]` — prints, checks or rewrites the public
//!   API manifest. See [`public_api`].
//! * `bench-compare` — runs the benchmark workloads with the Python original
//!   and with this library and writes `docs/performance.md`. See
//!   [`bench_compare`].
//! * `loom` and `fuzz` — the loom models and the bounded fuzzing run of the
//!   reliability suite. See [`reliability`].
//! * `help` — prints usage.
//!
//! A failure is reported as one line on standard error and a non-zero exit
//! status, so `.ci/run` and CI logs show at a glance what broke.

#![forbid(unsafe_code)]

mod api_lexer;
mod api_model;
mod api_parser;
mod api_resolve;
mod bench_compare;
mod bench_instructions;
mod bench_targets;
mod consumer_sources;
mod examples;
mod packaging;
mod process;
mod public_api;
mod release_check;
mod reliability;
mod test_count;
mod versions;

use std::env;
use std::path::PathBuf;
use std::process::ExitCode;

use release_check::{Context, Selection};

/// Usage text printed by `help` and after argument errors.
const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  release-check [--only STEP[,STEP..]] [--skip STEP[,STEP..]] [--list]
        run the release gate (all steps unless --only/--skip are given)
  bench-compare [--python-runs N] [--rust-runs N] [--scale-keys N]
        compare the benches with Python coalestra 0.6.4; writes docs/performance.md
  loom [-- TEST-ARGS]
        run the loom models (crates/coalestra-loom) with --cfg coalestra_loom
  fuzz [--seconds N] [--target NAME]
        run the cargo-fuzz targets for N seconds each (skips without nightly)
  public-api [--check | --bless]
        print the public API list; --check compares it with docs/public-api.txt,
        --bless rewrites that file
  help  print this message

environment:
  GITHUB_REF  when it is refs/tags/v*, the tag must equal v<workspace version>";

/// Exit status for a failed check.
const EXIT_FAILED: u8 = 1;
/// Exit status for a command-line usage error.
const EXIT_USAGE: u8 = 2;

/// A parsed command line.
#[derive(Debug)]
enum Invocation {
    /// `help`, `--help` or `-h`.
    Help,
    /// `release-check --list`.
    ListSteps,
    /// `release-check` with an optional step selection.
    ReleaseCheck(Selection),
    /// `public-api` in the given mode.
    PublicApi(public_api::Mode),
    /// `loom` with its options.
    Loom(reliability::LoomOptions),
    /// `fuzz` with its options.
    Fuzz(reliability::FuzzOptions),
    /// `bench-compare` with its options.
    BenchCompare(bench_compare::Options),
}

/// Reports the result of a reliability command.
fn finish(command: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{command} FAILED: {reason}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let invocation = match parse_args(&args) {
        Ok(invocation) => invocation,
        Err(reason) => {
            eprintln!("xtask: {reason}");
            eprintln!("{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match invocation {
        Invocation::Loom(options) => {
            finish("loom", reliability::run_loom(&workspace_root(), &options))
        }
        Invocation::Fuzz(options) => {
            finish("fuzz", reliability::run_fuzz(&workspace_root(), &options))
        }
        Invocation::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Invocation::ListSteps => {
            release_check::list();
            ExitCode::SUCCESS
        }
        Invocation::PublicApi(mode) => match public_api::run(&workspace_root(), mode) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("public-api FAILED: {reason}");
                ExitCode::from(EXIT_FAILED)
            }
        },
        Invocation::ReleaseCheck(selection) => {
            let mut ctx = Context::new(workspace_root());
            match release_check::run(&mut ctx, &selection) {
                Ok(()) => ExitCode::SUCCESS,
                Err(reason) => {
                    eprintln!("release-check FAILED: {reason}");
                    ExitCode::from(EXIT_FAILED)
                }
            }
        }
        Invocation::BenchCompare(options) => {
            match bench_compare::run(&workspace_root(), &options) {
                Ok(_) => ExitCode::SUCCESS,
                Err(reason) => {
                    eprintln!("bench-compare FAILED: {reason}");
                    ExitCode::from(EXIT_FAILED)
                }
            }
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
///
/// `cargo run` sets `CARGO_MANIFEST_DIR` for the process it starts, which is
/// preferred over the compile-time value so that a binary reused from a
/// copied `target/` directory still checks the checkout it is run from.
fn workspace_root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Parses the arguments that follow `cargo xtask`.
fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("missing command".to_owned());
    };
    match command.as_str() {
        "help" | "--help" | "-h" => Ok(Invocation::Help),
        "release-check" => parse_release_check(rest),
        "public-api" => public_api::parse(rest).map(Invocation::PublicApi),
        "loom" => reliability::parse_loom(rest).map(Invocation::Loom),
        "fuzz" => reliability::parse_fuzz(rest).map(Invocation::Fuzz),
        "bench-compare" => bench_compare::parse(rest).map(Invocation::BenchCompare),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Parses the options of `release-check`.
fn parse_release_check(args: &[String]) -> Result<Invocation, String> {
    let mut selection = Selection::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let target = match flag {
            "--list" if inline.is_none() => return Ok(Invocation::ListSteps),
            "--only" => &mut selection.only,
            "--skip" => &mut selection.skip,
            _ => return Err(format!("unknown release-check option {arg:?}")),
        };
        let value = match inline {
            Some(value) => value,
            None => iter
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a step name"))?,
        };
        target.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
        );
    }
    selection.validate()?;
    Ok(Invocation::ReleaseCheck(selection))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_release_check_selections() {
        let parsed = parse_args(&args(&[
            "release-check",
            "--only",
            "fmt,version",
            "--skip=version",
        ]));
        match parsed {
            Ok(Invocation::ReleaseCheck(selection)) => {
                assert_eq!(selection.only, ["fmt", "version"]);
                assert_eq!(selection.skip, ["version"]);
            }
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_command_lines() {
        assert!(parse_args(&[]).is_err());
        assert!(parse_args(&args(&["release"])).is_err());
        assert!(parse_args(&args(&["release-check", "--only"])).is_err());
        assert!(parse_args(&args(&["release-check", "--only", "lint"])).is_err());
        assert!(parse_args(&args(&["release-check", "--fast"])).is_err());
    }

    #[test]
    fn recognises_help_and_list() {
        assert!(matches!(parse_args(&args(&["help"])), Ok(Invocation::Help)));
        assert!(matches!(
            parse_args(&args(&["release-check", "--list"])),
            Ok(Invocation::ListSteps)
        ));
    }
}
