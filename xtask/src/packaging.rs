//! Release-check step `package`: the crates package, and what they package
//! works from outside the workspace.
//!
//! 1. `cargo package --workspace --no-verify --allow-dirty`, excluding the
//!    `publish = false` members, writes one `.crate` per publishable crate.
//! 2. The `.crate` files are unpacked (with `tar`) into
//!    `target/xtask-consumers/packaged/`.
//! 3. Two throw-away consumer projects are written next to them, each with
//!    an empty `[workspace]` table so they stand alone, depending on the
//!    packaged crates through `[patch.crates-io]` (exactly what a user gets
//!    from the registry) and a copy of the workspace `Cargo.lock` (so no
//!    registry crate beyond those already locked is needed):
//!    * `app` uses only `coalestra` (plus tokio for its runtime) and builds
//!      a snapshot from an `FnSource`;
//!    * `adapter` depends only on `coalestra-core` (plus async-trait and
//!      tokio) and implements `Source` and `SnapshotCache` by hand.
//! 4. Both are run with `cargo run`, sharing
//!    `target/xtask-consumers/target`, and must print their success line.
//!
//! When `tar` is unavailable the consumers depend on `crates/*` by path
//! instead, with a printed note.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::consumer_sources;
use crate::process;
use crate::public_api::package_name;
use crate::release_check::{Context, Outcome, StepResult};
use crate::versions::{self, CrateVersion};

/// Where the consumers live, relative to the target directory.
const CONSUMERS_DIR: &str = "xtask-consumers";

/// A workspace member as far as packaging is concerned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// Package name, e.g. `coalestra-core`.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its version.
    pub version: String,
    /// `false` for `publish = false`.
    pub publish: bool,
}

/// The `package` step.
pub fn step(ctx: &mut Context) -> StepResult {
    let root = ctx.root().to_path_buf();
    let members = members(&root)?;
    let mut args: Vec<String> = ["package", "--workspace", "--no-verify", "--allow-dirty"]
        .map(str::to_owned)
        .to_vec();
    for member in members.iter().filter(|m| !m.publish) {
        args.push("--exclude".to_owned());
        args.push(member.name.clone());
    }
    process::run(&mut ctx.cargo(&args))?;

    let target = target_dir(&root);
    let base = target.join(CONSUMERS_DIR);
    let publishable: Vec<&Member> = members.iter().filter(|m| m.publish).collect();
    let sources = match unpack(
        &target.join("package"),
        &base.join("packaged"),
        &publishable,
    ) {
        Ok(dirs) => Deps::Packaged(dirs),
        Err(reason) => {
            ctx.note(format!(
                "package: consumers built against crates/* by path, not the .crate files ({reason})"
            ));
            Deps::Paths(
                publishable
                    .iter()
                    .map(|m| (m.name.clone(), m.dir.clone()))
                    .collect(),
            )
        }
    };
    let lock = fs::read_to_string(root.join("Cargo.lock")).ok();
    for consumer in CONSUMERS {
        let dir = base.join(consumer.dir);
        write_consumer(&dir, consumer, &sources, lock.as_deref())?;
        let mut cmd = ctx.cargo(["run", "--quiet"]);
        cmd.current_dir(&dir)
            .env("CARGO_TARGET_DIR", base.join("target"))
            // The consumers are standalone projects: no workspace settings.
            .env_remove("CARGO_MANIFEST_DIR");
        let output = process::run_capture(&mut cmd)
            .map_err(|err| format!("consumer `{}`: {err}", consumer.dir))?;
        print!("{}", indent(&output));
        if !output.contains(consumer.success) {
            return Err(format!(
                "consumer `{}` ran but did not print {:?}",
                consumer.dir, consumer.success
            ));
        }
    }
    println!(
        "    {} crates packaged; consumers {} compiled and ran",
        publishable.len(),
        CONSUMERS
            .iter()
            .map(|c| c.dir)
            .collect::<Vec<_>>()
            .join(" and ")
    );
    Ok(Outcome::Passed)
}

/// How consumers reach the workspace crates.
enum Deps {
    /// Unpacked `.crate` directories by package name.
    Packaged(Vec<(String, PathBuf)>),
    /// The workspace crates themselves.
    Paths(Vec<(String, PathBuf)>),
}

/// Every member under `crates/`, plus `benches` and `xtask`, sorted.
pub fn members(root: &Path) -> Result<Vec<Member>, String> {
    let workspace_version = versions::workspace_version(&read(&root.join("Cargo.toml"))?)?;
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .map_err(|err| format!("cannot list crates/: {err}"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.push(root.join("benches"));
    dirs.push(root.join("xtask"));
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(text) = fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let Some(name) = package_name(&text) else {
            continue;
        };
        let version = match versions::crate_version(&text) {
            CrateVersion::Literal(v) => v,
            CrateVersion::Workspace | CrateVersion::Missing => workspace_version.clone(),
        };
        out.push(Member {
            name,
            dir,
            version,
            publish: !publish_false(&text),
        });
    }
    out.sort();
    Ok(out)
}

/// Whether a manifest's `[package]` says `publish = false` (or `[]`).
pub fn publish_false(manifest: &str) -> bool {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some((key, value)) = line.split_once('=') {
                let value = value.split('#').next().unwrap_or_default().trim();
                if key.trim() == "publish" {
                    return value == "false" || value.replace(' ', "") == "[]";
                }
            }
        }
    }
    false
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|err| format!("cannot read {}: {err}", path.display()))
}

/// The cargo target directory: `CARGO_TARGET_DIR` or `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Unpacks `<name>-<version>.crate` of each member from `package_dir` into
/// a fresh `into`; returns the unpacked directories by package name.
fn unpack(
    package_dir: &Path,
    into: &Path,
    members: &[&Member],
) -> Result<Vec<(String, PathBuf)>, String> {
    if into.exists() {
        fs::remove_dir_all(into)
            .map_err(|err| format!("cannot clear {}: {err}", into.display()))?;
    }
    fs::create_dir_all(into).map_err(|err| format!("cannot create {}: {err}", into.display()))?;
    let mut dirs = Vec::new();
    for member in members {
        let stem = format!("{}-{}", member.name, member.version);
        let file = package_dir.join(format!("{stem}.crate"));
        if !file.is_file() {
            return Err(format!("{} was not written", file.display()));
        }
        // `-m`: stamp extracted files with the current time. Packaged files
        // carry fixed timestamps, so restoring them would let cargo reuse a
        // stale build of an unpacked crate from an earlier run.
        let mut tar = Command::new("tar");
        tar.arg("-xzmf").arg(&file).arg("-C").arg(into);
        if !process::probe(&mut tar) {
            return Err(format!("`tar -xzmf {}` failed", file.display()));
        }
        let dir = into.join(&stem);
        if !dir.join("Cargo.toml").is_file() {
            return Err(format!("{stem}.crate has no {stem}/Cargo.toml"));
        }
        dirs.push((member.name.clone(), dir));
    }
    Ok(dirs)
}

/// A consumer project.
struct Consumer {
    /// Directory name under `target/xtask-consumers/`.
    dir: &'static str,
    /// Package name.
    package: &'static str,
    /// Workspace crates it depends on.
    uses: &'static [&'static str],
    /// Registry dependencies (already in the workspace `Cargo.lock`).
    registry: &'static str,
    /// `src/main.rs`.
    main: &'static str,
    /// A line its successful run prints.
    success: &'static str,
}

const CONSUMERS: &[Consumer] = &[
    Consumer {
        dir: "app",
        package: "coalestra-consumer-app",
        uses: &["coalestra"],
        registry: r#"tokio = { version = "1.40", default-features = false, features = ["rt", "macros"] }"#,
        main: consumer_sources::APP,
        success: "consumer app: ok",
    },
    Consumer {
        dir: "adapter",
        package: "coalestra-consumer-adapter",
        uses: &["coalestra-core"],
        registry: "async-trait = \"0.1\"\n\
                   tokio = { version = \"1.40\", default-features = false, features = [\"rt\", \"macros\"] }",
        main: consumer_sources::ADAPTER,
        success: "consumer adapter: ok",
    },
];

/// The consumer's `Cargo.toml`.
fn manifest(consumer: &Consumer, deps: &Deps) -> String {
    let mut text = format!(
        "# Generated by `cargo xtask release-check` (step package); throw-away.\n\
         [package]\nname = \"{}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         # Not part of the Coalestra workspace.\n[workspace]\n\n[dependencies]\n{}\n",
        consumer.package, consumer.registry
    );
    match deps {
        Deps::Packaged(dirs) => {
            for name in consumer.uses {
                let version = dirs
                    .iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, dir)| dir.file_name())
                    .map(|f| {
                        f.to_string_lossy()
                            .trim_start_matches(&format!("{name}-"))
                            .to_owned()
                    })
                    .unwrap_or_default();
                text.push_str(&format!("{name} = \"={version}\"\n"));
            }
            text.push_str(
                "\n# The packaged .crate contents stand in for the registry.\n[patch.crates-io]\n",
            );
            for (name, dir) in dirs {
                text.push_str(&format!("{name} = {{ path = {} }}\n", toml_string(dir)));
            }
        }
        Deps::Paths(dirs) => {
            for name in consumer.uses {
                if let Some((_, dir)) = dirs.iter().find(|(n, _)| n == name) {
                    text.push_str(&format!("{name} = {{ path = {} }}\n", toml_string(dir)));
                }
            }
        }
    }
    text
}

/// A path as a TOML basic string.
fn toml_string(path: &Path) -> String {
    let text = path
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("\"{text}\"")
}

/// Writes a consumer project (manifest, `src/main.rs`, lock file).
fn write_consumer(
    dir: &Path,
    consumer: &Consumer,
    deps: &Deps,
    lock: Option<&str>,
) -> Result<(), String> {
    let write = |path: PathBuf, text: &str| {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|err| format!("cannot create {}: {err}", parent.display()))?;
        }
        fs::write(&path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))
    };
    write(dir.join("Cargo.toml"), &manifest(consumer, deps))?;
    write(dir.join("src").join("main.rs"), consumer.main)?;
    if let Some(lock) = lock {
        // Locked versions of the registry crates; cargo drops the rest.
        write(dir.join("Cargo.lock"), lock)?;
    }
    Ok(())
}

/// Indents captured output to nest under the step's log.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_publish_false() {
        assert!(publish_false(
            "[package]\nname = \"x\"\npublish = false # internal\n"
        ));
        assert!(publish_false("[package]\npublish = [ ]\n"));
        assert!(!publish_false(
            "[package]\nname = \"x\"\n[x]\npublish = false\n"
        ));
        assert!(!publish_false("[package]\npublish = [\"crates-io\"]\n"));
    }

    #[test]
    fn workspace_members_know_what_is_published() {
        let members = members(&crate::workspace_root()).expect("members");
        let find = |name: &str| members.iter().find(|m| m.name == name);
        assert!(find("coalestra").is_some_and(|m| m.publish));
        assert!(find("coalestra-core").is_some_and(|m| m.publish));
        assert!(find("xtask").is_some_and(|m| !m.publish));
    }

    #[test]
    fn manifests_patch_the_registry_with_packaged_crates() {
        let deps = Deps::Packaged(vec![
            (
                "coalestra".to_owned(),
                PathBuf::from("/t/p/coalestra-0.2.0"),
            ),
            (
                "coalestra-core".to_owned(),
                PathBuf::from("/t/p/coalestra-core-0.2.0"),
            ),
        ]);
        let text = manifest(&CONSUMERS[0], &deps);
        assert!(text.contains("[workspace]\n"));
        assert!(text.contains("coalestra = \"=0.2.0\"\n"));
        assert!(text.contains("coalestra-core = { path = \"/t/p/coalestra-core-0.2.0\" }\n"));
        let paths = Deps::Paths(vec![(
            "coalestra-core".to_owned(),
            PathBuf::from("/w/crates/core"),
        )]);
        let text = manifest(&CONSUMERS[1], &paths);
        assert!(text.contains("coalestra-core = { path = \"/w/crates/core\" }\n"));
        assert!(!text.contains("[patch"));
    }
}
