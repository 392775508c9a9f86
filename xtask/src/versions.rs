//! Version-consistency rules for a release.
//!
//! A release is consistent when
//!
//! * the `[workspace.package] version` in the root `Cargo.toml`,
//! * the newest dated section of `CHANGELOG.md` (`## [0.1.0] - 2026-11-25`;
//!   an `## [Unreleased]` section may sit above it), and
//! * every crate under `crates/` (through `version.workspace = true` or a
//!   literal version)
//!
//! all name the same version, and, when CI builds a tag (`GITHUB_REF` of the
//! form `refs/tags/v*`), the tag is exactly `v<version>`.
//!
//! The functions here are pure so they can be unit-tested; reading files and
//! the environment is left to the caller. Parsing covers only the small,
//! line-oriented subset of TOML that Cargo manifests use for these keys,
//! which keeps the xtask free of dependencies.

/// How a crate manifest declares its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrateVersion {
    /// `version.workspace = true` (or an equivalent spelling).
    Workspace,
    /// A literal `version = "x.y.z"`.
    Literal(String),
    /// No version key in `[package]`.
    Missing,
}

/// One `key = value` line together with the table it belongs to.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    /// Table name without brackets, with whitespace around dots removed.
    table: String,
    /// Key with whitespace around dots removed, e.g. `version.workspace`.
    key: String,
    /// Raw value text with any trailing comment removed.
    value: String,
}

/// Splits a TOML document into `key = value` entries, tracking the current
/// `[table]`. Continuation lines of multi-line arrays have no `=` and are
/// skipped, which is all the callers need.
fn entries(text: &str) -> Vec<Entry> {
    let mut table = String::new();
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            let header = strip_comment(line);
            let name = header.trim_start_matches('[').trim_end_matches(']');
            table = normalize_dotted(name);
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            out.push(Entry {
                table: table.clone(),
                key: normalize_dotted(key),
                value: strip_comment(value.trim()).to_owned(),
            });
        }
    }
    out
}

/// Removes a trailing `# comment` that is not inside a quoted string.
fn strip_comment(text: &str) -> &str {
    let mut quote: Option<char> = None;
    for (index, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '#') => return text[..index].trim_end(),
            _ => {}
        }
    }
    text.trim_end()
}

/// Removes whitespace around the dots of a dotted key or table name.
fn normalize_dotted(text: &str) -> String {
    text.split('.').map(str::trim).collect::<Vec<_>>().join(".")
}

/// Returns the contents of a basic or literal TOML string, or `None` when
/// `value` is not a simple quoted string.
fn unquote(value: &str) -> Option<&str> {
    ['"', '\''].into_iter().find_map(|q| {
        value
            .strip_prefix(q)
            .and_then(|rest| rest.strip_suffix(q))
            .filter(|inner| !inner.contains(q))
    })
}

/// Whether `value` is an inline table equivalent to `{ workspace = true }`.
fn is_workspace_inline_table(value: &str) -> bool {
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    compact == "{workspace=true}"
}

/// Reads `[workspace.package] version` from the root manifest.
pub fn workspace_version(manifest: &str) -> Result<String, String> {
    entries(manifest)
        .into_iter()
        .find_map(|entry| {
            let declared = (entry.table == "workspace.package" && entry.key == "version")
                || (entry.table == "workspace" && entry.key == "package.version");
            if declared {
                unquote(&entry.value).map(str::to_owned)
            } else {
                None
            }
        })
        .ok_or_else(|| "root Cargo.toml has no [workspace.package] version".to_owned())
}

/// Reads how a member manifest declares `[package] version`.
pub fn crate_version(manifest: &str) -> CrateVersion {
    for entry in entries(manifest) {
        let workspace_flag = entry.value == "true"
            && ((entry.table == "package" && entry.key == "version.workspace")
                || (entry.table == "package.version" && entry.key == "workspace"));
        if workspace_flag {
            return CrateVersion::Workspace;
        }
        if entry.table == "package" && entry.key == "version" {
            if is_workspace_inline_table(&entry.value) {
                return CrateVersion::Workspace;
            }
            return CrateVersion::Literal(unquote(&entry.value).unwrap_or(&entry.value).to_owned());
        }
    }
    CrateVersion::Missing
}

/// Returns the version of the newest dated release in a Keep a Changelog
/// document.
///
/// Only `## [...]` headings are considered. `## [Unreleased]` headings are
/// skipped; the first other heading must have the form
/// `## [x.y.z] - YYYY-MM-DD`.
pub fn changelog_version(changelog: &str) -> Result<String, String> {
    for line in changelog.lines() {
        let Some(heading) = line.trim_end().strip_prefix("## [") else {
            continue;
        };
        let Some((name, rest)) = heading.split_once(']') else {
            return Err(format!(
                "CHANGELOG.md heading {line:?} has no closing bracket"
            ));
        };
        if name.trim().eq_ignore_ascii_case("unreleased") {
            continue;
        }
        let date = rest.trim_start().strip_prefix('-').map(str::trim);
        return match date {
            Some(date) if is_iso_date(date) => Ok(name.trim().to_owned()),
            _ => Err(format!(
                "CHANGELOG.md heading {line:?} is not of the form `## [x.y.z] - YYYY-MM-DD`"
            )),
        };
    }
    Err("CHANGELOG.md has no dated release section (`## [x.y.z] - YYYY-MM-DD`)".to_owned())
}

/// Whether `text` looks like `YYYY-MM-DD` with a plausible month and day.
fn is_iso_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    matches!(
        (digits(0..4), digits(5..7), digits(8..10)),
        (Some(_), Some(1..=12), Some(1..=31))
    )
}

/// `(name, version requirement)` of each `[workspace.dependencies]` entry
/// that points at a workspace crate (`path = ..`) and states a version:
/// the requirement the published crates will carry.
pub fn path_dependency_versions(manifest: &str) -> Vec<(String, String)> {
    entries(manifest)
        .into_iter()
        .filter(|e| e.table == "workspace.dependencies" && e.value.starts_with('{'))
        .filter_map(|e| {
            let inner = e.value.trim_start_matches('{').trim_end_matches('}');
            let mut path = false;
            let mut version = None;
            for field in inner.split(',') {
                if let Some((key, value)) = field.split_once('=') {
                    match key.trim() {
                        "path" => path = true,
                        "version" => version = unquote(value.trim()).map(str::to_owned),
                        _ => {}
                    }
                }
            }
            version.filter(|_| path).map(|v| (e.key, v))
        })
        .collect()
}

/// Checks statically that `capabilities()` reports the release version.
///
/// `source` is the file defining `capabilities()`, `manifest` the
/// `Cargo.toml` of its crate. The package version must either come from
/// `env!("CARGO_PKG_VERSION")` of a crate whose version is the workspace
/// version, or appear in the source as the literal `"<version>"`.
pub fn check_capabilities(source: &str, manifest: &str, version: &str) -> Result<(), String> {
    if source.contains("env!(\"CARGO_PKG_VERSION\")") {
        return match crate_version(manifest) {
            CrateVersion::Workspace => Ok(()),
            CrateVersion::Literal(v) if v == version => Ok(()),
            CrateVersion::Literal(v) => Err(format!(
                "capabilities() reports CARGO_PKG_VERSION {v} but the workspace version is {version}"
            )),
            CrateVersion::Missing => {
                Err("the crate defining capabilities() declares no version".to_owned())
            }
        };
    }
    if source.contains(&format!("\"{version}\"")) {
        return Ok(());
    }
    Err(format!(
        "capabilities() reports neither env!(\"CARGO_PKG_VERSION\") nor \"{version}\""
    ))
}

/// Reads `[workspace.package] rust-version` (the MSRV), if declared.
pub fn workspace_rust_version(manifest: &str) -> Option<String> {
    entries(manifest).into_iter().find_map(|entry| {
        let declared = (entry.table == "workspace.package" && entry.key == "rust-version")
            || (entry.table == "workspace" && entry.key == "package.rust-version");
        declared
            .then(|| unquote(&entry.value).map(str::to_owned))
            .flatten()
    })
}

/// Checks that a GitHub workflow tests the declared MSRV: it installs at
/// least one numbered toolchain (`toolchain: "1.85"`), and every numbered
/// toolchain it installs is `rust_version`.
pub fn check_msrv_workflow(workflow: &str, rust_version: &str) -> Result<(), String> {
    let mut found = false;
    for line in workflow.lines() {
        let Some(value) = line.trim().strip_prefix("toolchain:") else {
            continue;
        };
        let value = value.split('#').next().unwrap_or_default().trim();
        let value = unquote(value).unwrap_or(value);
        if !value.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        if value != rust_version {
            return Err(format!(
                "installs toolchain {value} but the declared rust-version is {rust_version}"
            ));
        }
        found = true;
    }
    if found {
        Ok(())
    } else {
        Err(format!(
            "has no job on the declared rust-version (toolchain: \"{rust_version}\")"
        ))
    }
}

/// Checks a CI ref against the release version.
///
/// Returns `Ok(Some(tag))` when the ref is a release tag that matches,
/// `Ok(None)` when the ref is absent or is not a `v*` tag, and an error when
/// a `v*` tag names a different version.
pub fn check_tag(github_ref: Option<&str>, version: &str) -> Result<Option<String>, String> {
    let Some(tag) = github_ref.and_then(|r| r.strip_prefix("refs/tags/")) else {
        return Ok(None);
    };
    if !tag.starts_with('v') {
        return Ok(None);
    }
    let expected = format!("v{version}");
    if tag == expected {
        Ok(Some(tag.to_owned()))
    } else {
        Err(format!(
            "tag {tag} does not match the workspace version (expected {expected})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = r#"
[workspace]
members = ["crates/*", "xtask"]

[workspace.package]
version = "0.3.1" # keep in sync with CHANGELOG.md
edition = "2021"

[workspace.dependencies]
coalestra-core = { path = "crates/coalestra-core", version = "0.3.1" }
"#;

    #[test]
    fn msrv_workflows_follow_the_declared_rust_version() {
        assert_eq!(workspace_rust_version(ROOT), None);
        let with_msrv = ROOT.replace(
            "edition = \"2021\"",
            "edition = \"2021\"\nrust-version = \"1.85\"",
        );
        assert_eq!(workspace_rust_version(&with_msrv).as_deref(), Some("1.85"));
        let ok = "steps:\n  - uses: dtolnay/rust-toolchain@master\n    with:\n      toolchain: \"1.85\"\n";
        assert_eq!(check_msrv_workflow(ok, "1.85"), Ok(()));
        assert!(check_msrv_workflow(ok, "1.86").is_err());
        assert!(check_msrv_workflow("toolchain: stable\n", "1.85").is_err());
        assert_eq!(
            check_msrv_workflow("toolchain: 1.85 # msrv\ntoolchain: nightly\n", "1.85"),
            Ok(())
        );
    }

    #[test]
    fn reads_path_dependency_versions() {
        let root = format!("{ROOT}serde = {{ version = \"1\" }}\nlocal = {{ path = \"x\" }}\n");
        assert_eq!(
            path_dependency_versions(&root),
            [("coalestra-core".to_owned(), "0.3.1".to_owned())]
        );
    }

    #[test]
    fn capabilities_version_must_follow_the_workspace() {
        let uses_env = "let version = env!(\"CARGO_PKG_VERSION\");";
        let inherits = "[package]\nname = \"o\"\nversion.workspace = true\n";
        let literal = "[package]\nname = \"o\"\nversion = \"0.3.0\"\n";
        assert_eq!(check_capabilities(uses_env, inherits, "0.3.1"), Ok(()));
        assert!(check_capabilities(uses_env, literal, "0.3.1").is_err());
        assert_eq!(check_capabilities(uses_env, literal, "0.3.0"), Ok(()));
        let hard_coded = "package_version: \"0.3.1\",";
        assert_eq!(check_capabilities(hard_coded, literal, "0.3.1"), Ok(()));
        assert!(check_capabilities(hard_coded, inherits, "0.4.0").is_err());
    }

    #[test]
    fn reads_workspace_version() {
        assert_eq!(workspace_version(ROOT), Ok("0.3.1".to_owned()));
        assert!(workspace_version("[workspace]\nmembers = []\n").is_err());
        assert_eq!(
            workspace_version("[workspace]\npackage.version = '1.0.0'\n"),
            Ok("1.0.0".to_owned())
        );
    }

    #[test]
    fn recognises_every_spelling_of_a_crate_version() {
        let workspace = "[package]\nname = \"a\"\nversion.workspace = true\n";
        let spaced = "[package]\nversion . workspace = true # inherited\n";
        let inline = "[package]\nversion = { workspace = true }\n";
        let table = "[package.version]\nworkspace = true\n";
        let literal = "[package]\nversion = \"0.3.1\"\n";
        let missing = "[package]\nname = \"a\"\n[dependencies]\nversion = \"1\"\n";
        assert_eq!(crate_version(workspace), CrateVersion::Workspace);
        assert_eq!(crate_version(spaced), CrateVersion::Workspace);
        assert_eq!(crate_version(inline), CrateVersion::Workspace);
        assert_eq!(crate_version(table), CrateVersion::Workspace);
        assert_eq!(
            crate_version(literal),
            CrateVersion::Literal("0.3.1".to_owned())
        );
        assert_eq!(crate_version(missing), CrateVersion::Missing);
    }

    #[test]
    fn changelog_skips_unreleased_and_reads_the_newest_release() {
        let text = "# Changelog\n\n## [Unreleased]\n\n### Added\n- x\n\n\
                    ## [0.3.1] - 2026-11-25\n\n## [0.3.0] - 2026-10-01\n";
        assert_eq!(changelog_version(text), Ok("0.3.1".to_owned()));
    }

    #[test]
    fn changelog_rejects_missing_or_malformed_dates() {
        assert!(changelog_version("# Changelog\n## [Unreleased]\n").is_err());
        assert!(changelog_version("## [0.1.0]\n").is_err());
        assert!(changelog_version("## [0.1.0] - 2026-13-01\n").is_err());
        assert!(changelog_version("## [0.1.0] - soon\n").is_err());
        assert!(changelog_version("## [0.1.0 - 2026-01-01\n").is_err());
    }

    #[test]
    fn tags_must_match_the_version() {
        assert_eq!(check_tag(None, "0.1.0"), Ok(None));
        assert_eq!(check_tag(Some("refs/heads/main"), "0.1.0"), Ok(None));
        assert_eq!(check_tag(Some("refs/tags/nightly"), "0.1.0"), Ok(None));
        assert_eq!(
            check_tag(Some("refs/tags/v0.1.0"), "0.1.0"),
            Ok(Some("v0.1.0".to_owned()))
        );
        assert!(check_tag(Some("refs/tags/v0.1.1"), "0.1.0").is_err());
    }

    #[test]
    fn comments_inside_strings_are_kept() {
        assert_eq!(strip_comment("\"a#b\" # note"), "\"a#b\"");
        assert_eq!(unquote("\"1.0\""), Some("1.0"));
        assert_eq!(unquote("1.0"), None);
    }
}
