//! Release-check step `examples`: every example runs to completion.
//!
//! All examples are built with one `cargo build --workspace --examples`
//! (mostly fresh after the `test` step, which compiles examples too), then
//! each example binary under `crates/*/examples/` is run directly, with
//! standard input closed and a timeout, and must exit successfully. Running
//! the binary rather than `cargo run` means a timeout kills the example
//! itself and not just a cargo wrapper.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process;
use crate::public_api::package_name;
use crate::release_check::{Context, Outcome, StepResult};

/// How long one example may run.
pub const EXAMPLE_TIMEOUT: Duration = Duration::from_secs(120);

/// One example source: `(package, example name)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Example {
    /// The package it belongs to.
    pub package: String,
    /// Its name (the file stem, or the directory of `main.rs`).
    pub name: String,
}

/// The `examples` step.
pub fn step(ctx: &mut Context) -> StepResult {
    let examples = discover(ctx.root())?;
    if examples.is_empty() {
        ctx.note("examples: no crates/*/examples/*.rs found; nothing to run".to_owned());
        return Ok(Outcome::Skipped);
    }
    let mut build = ctx.cargo([
        "build",
        "--workspace",
        "--examples",
        "--all-features",
        "--message-format=json-render-diagnostics",
    ]);
    let messages = process::run_capture(&mut build)?;
    let executables = example_executables(&messages);
    for example in &examples {
        let Some(exe) = executables.get(&example.name) else {
            return Err(format!(
                "example {} of {} was not built by cargo build --examples",
                example.name, example.package
            ));
        };
        println!("    -- example {} ({})", example.name, example.package);
        let mut run = Command::new(exe);
        run.current_dir(ctx.root());
        let took = process::run_with_timeout(&mut run, EXAMPLE_TIMEOUT)
            .map_err(|err| format!("example {} of {}: {err}", example.name, example.package))?;
        println!(
            "    -- example {} finished in {:.1}s",
            example.name,
            took.as_secs_f64()
        );
    }
    println!("    {} examples ran to completion", examples.len());
    Ok(Outcome::Passed)
}

/// Every example under `crates/*/examples/`, sorted by package and name:
/// `examples/<name>.rs` and `examples/<name>/main.rs`.
pub fn discover(root: &Path) -> Result<Vec<Example>, String> {
    let crates =
        fs::read_dir(root.join("crates")).map_err(|err| format!("cannot list crates/: {err}"))?;
    let mut out = Vec::new();
    for krate in crates.flatten() {
        let dir = krate.path();
        let Ok(manifest) = fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let Some(package) = package_name(&manifest) else {
            continue;
        };
        let Ok(entries) = fs::read_dir(dir.join("examples")) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = if path.extension().is_some_and(|e| e == "rs") {
                path.file_stem()
            } else if path.join("main.rs").is_file() {
                path.file_name()
            } else {
                None
            };
            if let Some(name) = name {
                out.push(Example {
                    package: package.clone(),
                    name: name.to_string_lossy().into_owned(),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Example executables by example name, from cargo's JSON messages.
pub fn example_executables(messages: &str) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for line in messages.lines() {
        if !line.contains("\"reason\":\"compiler-artifact\"")
            || !line.contains("\"kind\":[\"example\"]")
        {
            continue;
        }
        // The first "name" key of an artifact message is the target's.
        if let (Some(name), Some(exe)) =
            (json_string(line, "name"), json_string(line, "executable"))
        {
            out.insert(name, PathBuf::from(exe));
        }
    }
    out
}

/// The string value of the first `"key":"…"` in a JSON line, unescaped.
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_example_executables_in_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/coalestra#0.1.0","manifest_path":"/w/crates/coalestra/Cargo.toml","target":{"kind":["example"],"crate_types":["bin"],"name":"quickstart","src_path":"/w/crates/coalestra/examples/quickstart.rs"},"executable":"/w/target/debug/examples/quick\"start","fresh":true}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"coalestra"},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        let found = example_executables(messages);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found.get("quickstart"),
            Some(&PathBuf::from("/w/target/debug/examples/quick\"start"))
        );
    }

    #[test]
    fn discovers_this_workspace_examples() {
        let examples = discover(&crate::workspace_root()).expect("lists crates");
        assert!(examples
            .iter()
            .any(|e| e.package == "coalestra" && e.name == "quickstart"));
        let mut sorted = examples.clone();
        sorted.sort();
        assert_eq!(sorted, examples);
    }
}
