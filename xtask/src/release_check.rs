//! `cargo xtask release-check`: the release gate.
//!
//! The gate is an ordered list of [`Step`]s ([`STEPS`]). Steps run one after
//! another and the gate stops at the first failure, reporting a one-line
//! reason. Adding a check means writing a `fn(&mut Context) -> StepResult`
//! and appending it to [`STEPS`]; the runner, `--only`/`--skip` selection and
//! `--list` pick it up automatically.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::process;
use crate::test_count::{self, TestTotals};
use crate::versions::{self, CrateVersion};
use crate::{examples, packaging, public_api};

/// The file defining `capabilities()`, whose reported package version is
/// checked by the `version` step.
const CAPABILITIES_SOURCE: &str = "crates/coalestra-orchestration/src/capabilities.rs";
/// The manifest of the crate defining `capabilities()`.
const CAPABILITIES_MANIFEST: &str = "crates/coalestra-orchestration/Cargo.toml";

/// Workflows that must build on the declared MSRV (when they exist).
const MSRV_WORKFLOWS: &[&str] = &[".github/workflows/ci.yml", ".github/workflows/release.yml"];

/// Workspace-relative path of the file holding the minimum passed-test count.
pub const TEST_COUNT_MIN_FILE: &str = "xtask/test-count-min.txt";

/// How a step that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The check ran and passed.
    Passed,
    /// The check could not run (e.g. a missing optional tool); the step has
    /// already recorded a note saying why.
    Skipped,
}

/// What a step returns: an [`Outcome`], or the one-line failure reason.
pub type StepResult = Result<Outcome, String>;

/// One named check of the release gate.
pub struct Step {
    /// Short name, used in the `==> name` header and by `--only`/`--skip`.
    pub name: &'static str,
    /// One-line description shown by `--list`.
    pub about: &'static str,
    /// The check itself; an `Err` carries the one-line failure reason.
    pub run: fn(&mut Context) -> StepResult,
}

/// The release gate, in execution order: instant static checks first, then
/// the checks that share one debug build (clippy, test, doc, examples),
/// then the release-profile bench build, packaging and cargo-deny.
pub const STEPS: &[Step] = &[
    Step {
        name: "fmt",
        about: "cargo fmt --all --check",
        run: fmt,
    },
    Step {
        name: "public-api",
        about: "the public API of coalestra and coalestra-core equals docs/public-api.txt",
        run: public_api_step,
    },
    Step {
        name: "version",
        about: "Cargo.toml, CHANGELOG.md, member crates, capabilities() and release tag agree on the version",
        run: version,
    },
    Step {
        name: "clippy",
        about: "cargo clippy --workspace --all-targets --all-features -- -D warnings",
        run: clippy,
    },
    Step {
        name: "test",
        about: "cargo test --workspace --all-features, with a floor on passed tests",
        run: test,
    },
    Step {
        name: "loom",
        about: "the loom models of single-flight, the half-open probe and the conditional write (RUSTFLAGS=--cfg coalestra_loom)",
        run: loom,
    },
    Step {
        name: "doc",
        about: "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps",
        run: doc,
    },
    Step {
        name: "bench",
        about: "cargo bench --workspace --bench '*' --no-run (skipped with a note without benches)",
        run: bench,
    },
    Step {
        name: "examples",
        about: "every crates/*/examples program runs to completion (120 s timeout each)",
        run: examples::step,
    },
    Step {
        name: "package",
        about: "cargo package --workspace, then consumer projects build and run against the .crate files",
        run: packaging::step,
    },
    Step {
        name: "deny",
        about: "cargo deny check licenses bans sources (skipped with a note if unavailable)",
        run: deny,
    },
];

/// State shared by the steps of one gate run.
pub struct Context {
    /// Workspace root; every command runs from here.
    root: PathBuf,
    /// The `cargo` binary to invoke: the one running us when known.
    cargo: OsString,
    /// Test totals, once the `test` step has run.
    tests: Option<TestTotals>,
    /// Notes to repeat in the final summary (e.g. skipped tools).
    notes: Vec<String>,
}

impl Context {
    /// Creates a context for the workspace at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            cargo: env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            tests: None,
            notes: Vec::new(),
        }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A `cargo` command with the given arguments, run from the workspace root.
    pub fn cargo<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(&self.cargo);
        cmd.args(args).current_dir(&self.root);
        cmd
    }

    /// Reads a workspace-relative file, naming it in the error.
    fn read(&self, relative: &str) -> Result<String, String> {
        fs::read_to_string(self.root.join(relative))
            .map_err(|err| format!("cannot read {relative}: {err}"))
    }

    /// Records a note, printing it now and again in the final summary.
    pub fn note(&mut self, note: String) {
        println!("    note: {note}");
        self.notes.push(note);
    }
}

/// Which steps a run should execute.
#[derive(Debug, Default)]
pub struct Selection {
    /// If non-empty, run only these steps (still in gate order).
    pub only: Vec<String>,
    /// Steps to leave out.
    pub skip: Vec<String>,
}

impl Selection {
    /// Rejects step names that do not exist, so typos cannot weaken the gate.
    pub fn validate(&self) -> Result<(), String> {
        for name in self.only.iter().chain(&self.skip) {
            if !STEPS.iter().any(|step| step.name == name) {
                let known: Vec<&str> = STEPS.iter().map(|step| step.name).collect();
                return Err(format!(
                    "unknown step {name:?} (known steps: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Whether `step` is part of this run.
    fn includes(&self, step: &Step) -> bool {
        let wanted = self.only.is_empty() || self.only.iter().any(|n| n == step.name);
        wanted && !self.skip.iter().any(|n| n == step.name)
    }
}

/// Prints the steps of the gate with their descriptions.
pub fn list() {
    for step in STEPS {
        println!("{:<10} {}", step.name, step.about);
    }
}

/// Runs the selected steps in order, stopping at the first failure.
///
/// On failure the returned reason is a single line naming the step.
pub fn run(ctx: &mut Context, selection: &Selection) -> Result<(), String> {
    let started = Instant::now();
    let steps: Vec<&Step> = STEPS.iter().filter(|s| selection.includes(s)).collect();
    if steps.is_empty() {
        return Err("no steps selected".to_owned());
    }
    for step in &steps {
        println!("==> {}", step.name);
        let step_started = Instant::now();
        let outcome =
            (step.run)(ctx).map_err(|reason| format!("step '{}' failed: {reason}", step.name))?;
        let verdict = match outcome {
            Outcome::Passed => "ok",
            Outcome::Skipped => "skipped",
        };
        println!(
            "    {} {verdict} ({:.1}s)",
            step.name,
            step_started.elapsed().as_secs_f64()
        );
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
    println!(
        "release-check passed: {} in {:.1}s",
        names.join(", "),
        started.elapsed().as_secs_f64()
    );
    for note in &ctx.notes {
        println!("note: {note}");
    }
    if let Some(totals) = ctx.tests {
        // Plain closing line in the format CI log readers recognise.
        println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    }
    Ok(())
}

/// `cargo fmt --all --check`.
fn fmt(ctx: &mut Context) -> StepResult {
    process::run(&mut ctx.cargo(["fmt", "--all", "--check"]))?;
    Ok(Outcome::Passed)
}

/// The public API manifest is up to date (see [`public_api`]).
fn public_api_step(ctx: &mut Context) -> StepResult {
    let count = public_api::check(&ctx.root)?;
    println!("    {count} public items match {}", public_api::MANIFEST);
    Ok(Outcome::Passed)
}

/// `cargo bench --no-run`: the benches compile (in the bench profile).
fn bench(ctx: &mut Context) -> StepResult {
    let has_benches = ctx.root.join("benches").join("Cargo.toml").is_file()
        || fs::read_dir(ctx.root.join("crates"))
            .map(|dirs| dirs.flatten().any(|d| d.path().join("benches").is_dir()))
            .unwrap_or(false);
    if !has_benches {
        ctx.note("bench: no benches crate or crates/*/benches; nothing to compile".to_owned());
        return Ok(Outcome::Skipped);
    }
    // `--bench '*'` selects the bench targets only; `--benches` would also
    // build every library's unit tests in the bench profile.
    process::run(&mut ctx.cargo(["bench", "--workspace", "--bench", "*", "--no-run"]))?;
    Ok(Outcome::Passed)
}

/// `cargo clippy` over every target and feature with warnings denied.
fn clippy(ctx: &mut Context) -> StepResult {
    process::run(&mut ctx.cargo([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    Ok(Outcome::Passed)
}

/// `cargo test` (unit, integration and doc tests), then the passed-test
/// floor from [`TEST_COUNT_MIN_FILE`].
fn test(ctx: &mut Context) -> StepResult {
    let minimum = test_count::parse_minimum(&ctx.read(TEST_COUNT_MIN_FILE)?)
        .map_err(|err| format!("{TEST_COUNT_MIN_FILE}: {err}"))?;
    let mut totals = TestTotals::default();
    let mut cmd = ctx.cargo(["test", "--workspace", "--all-features"]);
    process::run_streaming(&mut cmd, |line| totals.observe(line))?;
    ctx.tests = Some(totals);
    println!(
        "    passed tests: {} across {} test runs (minimum {minimum})",
        totals.passed, totals.suites
    );
    if totals.passed < minimum {
        return Err(format!(
            "only {} tests passed, below the minimum of {minimum} in {TEST_COUNT_MIN_FILE}",
            totals.passed
        ));
    }
    Ok(Outcome::Passed)
}

/// `cargo doc` with rustdoc warnings denied.
fn loom(ctx: &mut Context) -> StepResult {
    crate::reliability::run_loom(ctx.root(), &crate::reliability::LoomOptions::default())?;
    Ok(Outcome::Passed)
}

fn doc(ctx: &mut Context) -> StepResult {
    let mut cmd = ctx.cargo(["doc", "--workspace", "--no-deps"]);
    cmd.env("RUSTDOCFLAGS", "-D warnings");
    process::run(&mut cmd)?;
    Ok(Outcome::Passed)
}

/// Version agreement between the root manifest, the changelog, the member
/// crates and (in CI) the release tag.
fn version(ctx: &mut Context) -> StepResult {
    let version = versions::workspace_version(&ctx.read("Cargo.toml")?)?;
    let released = versions::changelog_version(&ctx.read("CHANGELOG.md")?)?;
    if released != version {
        return Err(format!(
            "CHANGELOG.md's newest release is [{released}] but [workspace.package] version is {version}"
        ));
    }
    let members = member_manifests(&ctx.root)?;
    for (name, manifest) in &members {
        let text = fs::read_to_string(manifest)
            .map_err(|err| format!("cannot read {}: {err}", manifest.display()))?;
        match versions::crate_version(&text) {
            CrateVersion::Workspace => {}
            CrateVersion::Literal(v) if v == version => {}
            CrateVersion::Literal(v) => {
                return Err(format!(
                    "crates/{name} has version {v}, expected {version} or version.workspace = true"
                ))
            }
            CrateVersion::Missing => {
                return Err(format!(
                    "crates/{name}/Cargo.toml declares no version (use version.workspace = true)"
                ))
            }
        }
    }
    let root_manifest = ctx.read("Cargo.toml")?;
    for (name, required) in versions::path_dependency_versions(&root_manifest) {
        if required != version && required != format!("={version}") {
            return Err(format!(
                "[workspace.dependencies] {name} requires version {required}, expected {version}"
            ));
        }
    }
    let capabilities = match (
        ctx.read(CAPABILITIES_SOURCE),
        ctx.read(CAPABILITIES_MANIFEST),
    ) {
        (Ok(source), Ok(manifest)) => {
            versions::check_capabilities(&source, &manifest, &version)
                .map_err(|err| format!("{CAPABILITIES_SOURCE}: {err}"))?;
            ", capabilities()"
        }
        _ => {
            ctx.note(format!(
                "version: {CAPABILITIES_SOURCE} not found; capabilities() version not checked"
            ));
            ""
        }
    };
    if let Some(msrv) = versions::workspace_rust_version(&root_manifest) {
        for workflow in MSRV_WORKFLOWS {
            if let Ok(text) = ctx.read(workflow) {
                versions::check_msrv_workflow(&text, &msrv)
                    .map_err(|err| format!("{workflow} {err}"))?;
            }
        }
    }
    let github_ref = env::var("GITHUB_REF").ok();
    let tag = versions::check_tag(github_ref.as_deref(), &version)?;
    println!(
        "    version {version}: Cargo.toml, CHANGELOG.md{capabilities} and {} crates agree, MSRV workflows match{}",
        members.len(),
        tag.map(|t| format!(", tag {t} matches"))
            .unwrap_or_default()
    );
    Ok(Outcome::Passed)
}

/// `(directory name, Cargo.toml path)` of every crate under `crates/`,
/// sorted by name.
fn member_manifests(root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let dir = root.join("crates");
    let entries = fs::read_dir(&dir).map_err(|err| format!("cannot list crates/: {err}"))?;
    let mut members = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| format!("cannot list crates/: {err}"))?;
        let manifest = entry.path().join("Cargo.toml");
        if manifest.is_file() {
            members.push((entry.file_name().to_string_lossy().into_owned(), manifest));
        }
    }
    members.sort();
    if members.is_empty() {
        return Err("no crates found under crates/".to_owned());
    }
    Ok(members)
}

/// `cargo deny check licenses bans sources`.
///
/// cargo-deny is an external tool. When it is missing, one
/// `cargo install cargo-deny --locked` is attempted; if that fails too the
/// step is skipped with a visible note rather than failing the gate, since the
/// tool cannot always be installed (e.g. offline). A cargo-deny that runs and
/// reports problems does fail the gate.
fn deny(ctx: &mut Context) -> StepResult {
    if !cargo_deny_available(ctx) {
        println!("    cargo-deny not found; trying to install it once");
        let installed = process::run(&mut ctx.cargo(["install", "cargo-deny", "--locked"]));
        if let Err(reason) = installed {
            ctx.note(format!("skipped: cargo-deny unavailable ({reason})"));
            return Ok(Outcome::Skipped);
        }
        if !cargo_deny_available(ctx) {
            ctx.note(
                "skipped: cargo-deny unavailable (installed, but `cargo deny --version` does not run)"
                    .to_owned(),
            );
            return Ok(Outcome::Skipped);
        }
    }
    process::run(&mut ctx.cargo(["deny", "check", "licenses", "bans", "sources"]))?;
    Ok(Outcome::Passed)
}

/// Whether `cargo deny` can be run: a `cargo-deny` executable on `PATH`
/// (or in Cargo's own `bin` directory, where `cargo install` puts it) that
/// answers `--version`.
fn cargo_deny_available(ctx: &Context) -> bool {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    } else if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo").join("bin"));
    }
    let exe = format!("cargo-deny{}", env::consts::EXE_SUFFIX);
    dirs.iter().any(|dir| dir.join(&exe).is_file())
        && process::probe(&mut ctx.cargo(["deny", "--version"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_unique_and_in_gate_order() {
        let names: Vec<&str> = STEPS.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "fmt",
                "public-api",
                "version",
                "clippy",
                "test",
                "loom",
                "doc",
                "bench",
                "examples",
                "package",
                "deny"
            ]
        );
    }

    #[test]
    fn selection_filters_and_validates() {
        let all = Selection::default();
        assert!(STEPS.iter().all(|s| all.includes(s)));

        let only = Selection {
            only: vec!["version".into()],
            skip: vec![],
        };
        let chosen: Vec<&str> = STEPS
            .iter()
            .filter(|s| only.includes(s))
            .map(|s| s.name)
            .collect();
        assert_eq!(chosen, ["version"]);

        let skip = Selection {
            only: vec![],
            skip: vec!["deny".into(), "doc".into()],
        };
        assert_eq!(
            STEPS.iter().filter(|s| skip.includes(s)).count(),
            STEPS.len() - 2
        );

        let typo = Selection {
            only: vec!["tests".into()],
            skip: vec![],
        };
        assert!(typo.validate().is_err());
        assert!(skip.validate().is_ok());
    }

    #[test]
    fn this_workspace_is_version_consistent() {
        let mut ctx = Context::new(crate::workspace_root());
        assert_eq!(version(&mut ctx), Ok(Outcome::Passed));
    }
}
