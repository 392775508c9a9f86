//! `cargo xtask loom` and `cargo xtask fuzz`: the reliability checks that do
//! not fit in a plain `cargo test` (issue 10).
//!
//! * `loom` runs the loom models of `crates/coalestra-loom` (single-flight
//!   hand-off, half-open probe, conditional cache write) with
//!   `RUSTFLAGS="--cfg coalestra_loom"`, in release mode and in a separate
//!   target directory (`target/loom`) so that the changed flags never
//!   invalidate the normal build. `LOOM_MAX_PREEMPTIONS` defaults to 3.
//! * `fuzz --seconds N` runs every `cargo fuzz` target of `fuzz/` for `N`
//!   seconds each, growing the committed corpus in `fuzz/corpus/<target>/`.
//!   cargo-fuzz needs a nightly toolchain; when it or nightly is missing the
//!   command prints a skip note and succeeds, because the committed corpus
//!   is replayed on stable by `crates/coalestra-core/tests/fuzz_regressions.rs`
//!   in every `cargo test`.

use std::env;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use crate::process;

/// The `cargo fuzz` targets of `fuzz/`.
pub const FUZZ_TARGETS: &[&str] = &["key_parse", "policy_f64", "observation_f64"];

/// Default fuzzing time per target.
const DEFAULT_FUZZ_SECONDS: u64 = 60;

/// Options of `cargo xtask loom`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoomOptions {
    /// Extra arguments for `cargo test` (after `--`), e.g. a test filter.
    pub test_args: Vec<String>,
}

/// Options of `cargo xtask fuzz`.
#[derive(Debug, PartialEq, Eq)]
pub struct FuzzOptions {
    /// Seconds per target.
    pub seconds: u64,
    /// Only this target (all when `None`).
    pub target: Option<String>,
}

/// Parses the arguments of `loom`: `[-- <cargo test args>]`.
pub fn parse_loom(args: &[String]) -> Result<LoomOptions, String> {
    match args.split_first() {
        None => Ok(LoomOptions::default()),
        Some((first, rest)) if first == "--" => Ok(LoomOptions {
            test_args: rest.to_vec(),
        }),
        Some((first, _)) => Err(format!("unknown loom option {first:?}")),
    }
}

/// Parses the arguments of `fuzz`: `[--seconds N] [--target NAME]`.
pub fn parse_fuzz(args: &[String]) -> Result<FuzzOptions, String> {
    let mut options = FuzzOptions {
        seconds: DEFAULT_FUZZ_SECONDS,
        target: None,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--seconds" => {
                let text = value()?;
                options.seconds = match text.parse::<u64>() {
                    Ok(0) | Err(_) => {
                        return Err(format!("--seconds needs a positive integer, not {text:?}"))
                    }
                    Ok(seconds) => seconds,
                };
            }
            "--target" => {
                let name = value()?;
                if !FUZZ_TARGETS.contains(&name.as_str()) {
                    return Err(format!(
                        "unknown fuzz target {name:?} (known targets: {})",
                        FUZZ_TARGETS.join(", ")
                    ));
                }
                options.target = Some(name);
            }
            _ => return Err(format!("unknown fuzz option {arg:?}")),
        }
    }
    Ok(options)
}

/// The cargo binary that runs this xtask.
fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// Runs the loom models.
pub fn run_loom(root: &Path, options: &LoomOptions) -> Result<(), String> {
    let mut rustflags = env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.split_whitespace().any(|f| f == "coalestra_loom") {
        if !rustflags.is_empty() {
            rustflags.push(' ');
        }
        rustflags.push_str("--cfg coalestra_loom");
    }
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .env("RUSTFLAGS", rustflags)
        .env("CARGO_TARGET_DIR", root.join("target").join("loom"))
        .args(["test", "-p", "coalestra-loom", "--release"]);
    if env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        cmd.env("LOOM_MAX_PREEMPTIONS", "3");
    }
    if !options.test_args.is_empty() {
        cmd.arg("--").args(&options.test_args);
    }
    process::run(&mut cmd)
}

/// Why fuzzing cannot run here, if it cannot.
fn fuzz_unavailable(root: &Path) -> Option<String> {
    let nightly = process::probe(
        Command::new("rustup")
            .args(["run", "nightly", "rustc", "--version"])
            .current_dir(root),
    );
    if !nightly {
        return Some("no nightly toolchain (`rustup run nightly rustc --version` failed)".into());
    }
    let cargo_fuzz = process::probe(
        Command::new(cargo())
            .args(["fuzz", "--version"])
            .current_dir(root),
    );
    if !cargo_fuzz {
        return Some("cargo-fuzz is not installed (`cargo install cargo-fuzz`)".into());
    }
    None
}

/// Runs the fuzz targets for a bounded time, or explains why it cannot.
pub fn run_fuzz(root: &Path, options: &FuzzOptions) -> Result<(), String> {
    if let Some(reason) = fuzz_unavailable(root) {
        println!("fuzz: skipped: {reason}.");
        println!(
            "fuzz: the committed corpus (fuzz/corpus/<target>/) and a seeded random-input loop \
             still run on stable in `cargo test -p coalestra-core --test fuzz_regressions`."
        );
        return Ok(());
    }
    let targets: Vec<&str> = match &options.target {
        Some(target) => vec![target.as_str()],
        None => FUZZ_TARGETS.to_vec(),
    };
    let mut crashed = Vec::new();
    for target in targets {
        let corpus = Path::new("fuzz").join("corpus").join(target);
        let mut cmd = Command::new("rustup");
        cmd.current_dir(root)
            .args(["run", "nightly", "cargo", "fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={}", options.seconds));
        // Keep fuzzing the other targets after a crash; report all at the end.
        if let Err(reason) = process::run(&mut cmd) {
            eprintln!("fuzz: {target}: {reason}; the input is in fuzz/artifacts/{target}/");
            crashed.push(target);
        }
    }
    if !crashed.is_empty() {
        return Err(format!(
            "fuzz targets failed: {} (crashing inputs in fuzz/artifacts/<target>/)",
            crashed.join(", ")
        ));
    }
    println!(
        "fuzz: done; new corpus entries in fuzz/corpus/ are replayed by \
         crates/coalestra-core/tests/fuzz_regressions.rs once committed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_fuzz_options() {
        assert_eq!(
            parse_fuzz(&args(&[])),
            Ok(FuzzOptions {
                seconds: DEFAULT_FUZZ_SECONDS,
                target: None
            })
        );
        assert_eq!(
            parse_fuzz(&args(&["--seconds", "5", "--target=key_parse"])),
            Ok(FuzzOptions {
                seconds: 5,
                target: Some("key_parse".to_owned())
            })
        );
        assert!(parse_fuzz(&args(&["--seconds", "0"])).is_err());
        assert!(parse_fuzz(&args(&["--seconds", "soon"])).is_err());
        assert!(parse_fuzz(&args(&["--seconds"])).is_err());
        assert!(parse_fuzz(&args(&["--target", "nope"])).is_err());
        assert!(parse_fuzz(&args(&["--fast"])).is_err());
    }

    #[test]
    fn parses_loom_options() {
        assert_eq!(parse_loom(&args(&[])), Ok(LoomOptions::default()));
        assert_eq!(
            parse_loom(&args(&["--", "flight"])),
            Ok(LoomOptions {
                test_args: args(&["flight"])
            })
        );
        assert!(parse_loom(&args(&["flight"])).is_err());
    }
}
