//! Tests of the public API scanner on fixture crates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{dependency_names, diff, item_lines, package_name, parse, render, Mode};
use crate::api_resolve::CrateSpec;

/// The umbrella fixture: re-exports with nested groups, `self`, aliases,
/// module re-exports and a prelude.
const UMBRELLA: &str = r#"
//! Umbrella crate.
pub use coalestra_core::{
    shapes::{self, Shape as Form},
    Builder, Kind, Source,
    VERSION,
};
pub use coalestra_core::util::*;
pub use extra_fx::Extra;
pub use std::time::Duration;
pub use coalestra_core::async_trait;
use coalestra_core::Hidden;

/// The prelude.
pub mod prelude {
    pub use crate::{Builder, Source};
}

pub(crate) fn internal() {}
"#;

/// The core fixture: items, impls, nested modules, comments, strings,
/// `#[cfg(test)]` code and a private module re-exported by name.
const CORE_LIB: &str = r#"
#![forbid(unsafe_code)]
pub mod shapes;
mod builder;
pub mod util {
    /// A helper.
    pub fn helper(x: u32) -> u32 { x }
    pub(crate) fn crate_only() {}
    fn private() {}
    #[cfg(test)]
    pub fn test_only() {}
}

pub use builder::Builder;
pub use async_trait::async_trait;

/// Version.
pub const VERSION: &str = "1.0 { not a brace";
// pub fn commented_out() {}
/* pub struct AlsoCommented; */

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Kind {
    /// A unit variant.
    Plain,
    Tuple(u32, String),
    Named { id: u64, label: Option<String> },
    Valued = 7,
}

pub struct Hidden;

#[async_trait::async_trait]
pub trait Source: Send + Sync {
    const LIMIT: usize;
    type Output: Clone;
    fn name(&self) -> &str;
    fn priority(&self) -> i32 { let s = "}"; 0 }
    async fn fetch(&self, key: &str) -> Result<Self::Output, String>;
    fn create() -> Self where Self: Sized;
}

impl Kind {
    pub fn is_plain(&self) -> bool { matches!(self, Kind::Plain) }
    fn private_helper(&self) {}
}

#[cfg(test)]
mod tests {
    pub fn not_public() {}
    impl super::Kind { pub fn test_helper(&self) {} }
}
"#;

const CORE_SHAPES: &str = r#"
use std::fmt;

pub struct Shape<T = f64> where T: Copy {
    pub width: T,
    height: T,
    pub(crate) depth: T,
}

pub struct Pair(pub u8, u8);

impl<T: Copy> Shape<T> {
    pub const SIDES: usize = 4;
    pub fn new(width: T, height: T) -> Self { Self { width, height, depth: width } }
    pub fn area<'a>(&'a self) -> &'a T { &self.width }
    pub fn scaled(mut self, mut by: T, out: &mut Vec<T>) -> Self { out.push(by); self }
    pub(crate) fn secret(&self) {}
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { write!(f, "{{}}") }
}

impl<T> From<T> for Pair where T: Into<u8> {
    fn from(value: T) -> Self { Pair(value.into(), 0) }
}
"#;

const CORE_BUILDER: &str = r#"
use crate::shapes::Shape;

/// Builds shapes.
#[derive(Default)]
pub struct Builder {
    shapes: Vec<Shape>,
}

impl Builder {
    /// Builds.
    pub async fn build(&self, count: usize) -> Result<Vec<Shape>, String> {
        let _ = count;
        Ok(Vec::new())
    }
    pub fn builder() -> Self { Self::default() }
}

pub fn unreachable_because_module_is_private() {}
"#;

const EXTRA: &str = r#"
mod inner {
    pub struct Extra(pub u32);
    impl Extra {
        pub fn get(&self) -> u32 { self.0 }
    }
}
pub use inner::Extra;
impl From<Extra> for coalestra_core::Kind {
    fn from(_: Extra) -> Self { coalestra_core::Kind::Plain }
}
"#;

fn fixture() -> BTreeMap<PathBuf, &'static str> {
    [
        ("fx/src/lib.rs", UMBRELLA),
        ("core/src/lib.rs", CORE_LIB),
        ("core/src/shapes.rs", CORE_SHAPES),
        ("core/src/builder/mod.rs", CORE_BUILDER),
        ("extra/src/lib.rs", EXTRA),
    ]
    .into_iter()
    .map(|(path, src)| (PathBuf::from(path), src))
    .collect()
}

fn manifest_for(files: &BTreeMap<PathBuf, &'static str>) -> String {
    let spec = |name: &str, src: &str, deps: &[&str]| CrateSpec {
        name: name.to_owned(),
        src: PathBuf::from(src),
        deps: deps.iter().map(|d| (*d).to_owned()).collect(),
    };
    let crates = vec![
        spec("coalestra", "fx/src", &["coalestra_core", "extra_fx"]),
        spec("coalestra_core", "core/src", &[]),
        spec("extra_fx", "extra/src", &["coalestra_core"]),
    ];
    let files = files.clone();
    let read = move |path: &Path| files.get(path).map(|s| (*s).to_owned());
    render(&crates, &read).expect("fixture renders")
}

/// The fixture's manifest lines, without the header.
fn lines(files: &BTreeMap<PathBuf, &'static str>) -> Vec<String> {
    item_lines(&manifest_for(files)).into_iter().collect()
}

/// Replaces one fixture file and returns the manifest lines.
fn lines_with(path: &str, src: &'static str) -> Vec<String> {
    let mut files = fixture();
    files.insert(PathBuf::from(path), src);
    lines(&files)
}

const EXPECTED: &str = "\
coalestra::Builder (impl) Default
coalestra::Builder (struct)
coalestra::Builder::build (method) async fn(&self, count: usize) -> Result<Vec<Shape>, String>
coalestra::Builder::builder (assoc fn) fn() -> Self
coalestra::Duration (re-export) std::time::Duration
coalestra::Extra (struct)
coalestra::Extra::0 (field) u32
coalestra::Extra::get (method) fn(&self) -> u32
coalestra::Form (impl) Display
coalestra::Form (struct) <T = f64> where T: Copy
coalestra::Form::SIDES (assoc const) usize
coalestra::Form::area (method) fn<'a>(&'a self) -> &'a T
coalestra::Form::new (assoc fn) fn(width: T, height: T) -> Self
coalestra::Form::scaled (method) fn(self, by: T, out: &mut Vec<T>) -> Self
coalestra::Form::width (field) T
coalestra::Kind (attr) #[non_exhaustive]
coalestra::Kind (enum)
coalestra::Kind (impl) Clone
coalestra::Kind (impl) Debug
coalestra::Kind (impl) From<Extra>
coalestra::Kind (impl) PartialEq
coalestra::Kind::Named (variant) { id: u64, label: Option<String> }
coalestra::Kind::Plain (variant)
coalestra::Kind::Tuple (variant) (u32, String)
coalestra::Kind::Valued (variant)
coalestra::Kind::is_plain (method) fn(&self) -> bool
coalestra::Source (trait) : Send + Sync
coalestra::Source::LIMIT (assoc const) usize
coalestra::Source::Output (assoc type) : Clone
coalestra::Source::create (trait fn) fn() -> Self where Self: Sized
coalestra::Source::fetch (trait method) async fn(&self, key: &str) -> Result<Self::Output, String>
coalestra::Source::name (trait method) fn(&self) -> &str
coalestra::Source::priority (trait method) fn(&self) -> i32
coalestra::VERSION (const) &str
coalestra::async_trait (re-export) async_trait::async_trait
coalestra::helper (fn) fn(x: u32) -> u32
coalestra::prelude (mod)
coalestra::prelude::Builder (struct)
coalestra::prelude::Source (trait) : Send + Sync
coalestra::shapes (mod)
coalestra::shapes::Pair (impl) <T> From<T>
coalestra::shapes::Pair (struct)
coalestra::shapes::Pair::0 (field) u8
coalestra::shapes::Shape (struct) <T = f64> where T: Copy
coalestra_core::Builder (impl) Default
coalestra_core::Builder (struct)
coalestra_core::Builder::build (method) async fn(&self, count: usize) -> Result<Vec<Shape>, String>
coalestra_core::Builder::builder (assoc fn) fn() -> Self
coalestra_core::Hidden (struct)
coalestra_core::Kind (attr) #[non_exhaustive]
coalestra_core::Kind (enum)
coalestra_core::Kind (impl) Clone
coalestra_core::Kind (impl) Debug
coalestra_core::Kind (impl) PartialEq
coalestra_core::Kind::Named (variant) { id: u64, label: Option<String> }
coalestra_core::Kind::Plain (variant)
coalestra_core::Kind::Tuple (variant) (u32, String)
coalestra_core::Kind::Valued (variant)
coalestra_core::Kind::is_plain (method) fn(&self) -> bool
coalestra_core::Source (trait) : Send + Sync
coalestra_core::Source::LIMIT (assoc const) usize
coalestra_core::Source::Output (assoc type) : Clone
coalestra_core::Source::create (trait fn) fn() -> Self where Self: Sized
coalestra_core::Source::fetch (trait method) async fn(&self, key: &str) -> Result<Self::Output, String>
coalestra_core::Source::name (trait method) fn(&self) -> &str
coalestra_core::Source::priority (trait method) fn(&self) -> i32
coalestra_core::VERSION (const) &str
coalestra_core::async_trait (re-export) async_trait::async_trait
coalestra_core::shapes (mod)
coalestra_core::shapes::Pair (impl) <T> From<T>
coalestra_core::shapes::Pair (struct)
coalestra_core::shapes::Pair::0 (field) u8
coalestra_core::shapes::Shape (impl) Display
coalestra_core::shapes::Shape (struct) <T = f64> where T: Copy
coalestra_core::shapes::Shape::SIDES (assoc const) usize
coalestra_core::shapes::Shape::area (method) fn<'a>(&'a self) -> &'a T
coalestra_core::shapes::Shape::new (assoc fn) fn(width: T, height: T) -> Self
coalestra_core::shapes::Shape::scaled (method) fn(self, by: T, out: &mut Vec<T>) -> Self
coalestra_core::shapes::Shape::width (field) T
coalestra_core::util (mod)
coalestra_core::util::helper (fn) fn(x: u32) -> u32
";

#[test]
fn fixture_gives_the_expected_sorted_list() {
    let text = manifest_for(&fixture());
    assert!(text.starts_with("# Public API"));
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(body, EXPECTED);
    // Same input, same bytes.
    assert_eq!(manifest_for(&fixture()), text);
}

#[test]
fn formatting_comments_and_docs_do_not_change_the_list() {
    const REFORMATTED: &str = r#"
use crate::shapes::{Shape};
/// Builds shapes, reworded.
#[derive(Default)]
pub struct Builder { shapes: Vec<Shape> }
impl Builder {
    // a comment
    pub async fn build(
        &self,
        count: usize, // trailing comma and comment
    ) -> Result<
        Vec<Shape>,
        String,
    > {
        let _ = (count, "pub fn fake() {}");
        Ok(Vec::new())
    }
    /** Block doc. */ pub fn builder()->Self{Self::default()}
}
pub fn unreachable_because_module_is_private() {}
#[cfg(test)] mod tests { #[test] fn t() {} }
"#;
    assert_eq!(
        lines_with("core/src/builder/mod.rs", REFORMATTED),
        lines(&fixture())
    );
}

#[test]
fn added_removed_and_renamed_items_change_the_list() {
    let base = lines(&fixture());
    let changed = |path: &str, src: &'static str| {
        let new = lines_with(path, src);
        let (added, removed) = diff(
            &base.iter().cloned().collect(),
            &new.iter().cloned().collect(),
        );
        (added, removed)
    };
    // Renamed method: one line out, one in, in both crates' listings.
    let renamed = CORE_BUILDER.replace("pub fn builder()", "pub fn new_builder()");
    let (added, removed) = changed(
        "core/src/builder/mod.rs",
        Box::leak(renamed.into_boxed_str()),
    );
    assert_eq!(added.len(), 2, "{added:?}");
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(added.iter().all(|l| l.contains("::new_builder (assoc fn)")));

    // A new variant and a changed field type.
    let edited = CORE_LIB
        .replace("    Valued = 7,", "    Valued = 7,\n    Added,")
        .replace("label: Option<String>", "label: String");
    let (added, removed) = changed("core/src/lib.rs", Box::leak(edited.into_boxed_str()));
    assert!(added.contains(&"coalestra_core::Kind::Added (variant)".to_owned()));
    assert!(
        added.contains(&"coalestra::Kind::Named (variant) { id: u64, label: String }".to_owned())
    );
    assert_eq!(removed.len(), 2);

    // A public item in a private module, or a test-only item, is invisible.
    let hidden =
        CORE_BUILDER.to_owned() + "pub fn also_unreachable() {}\n#[cfg(test)] pub fn t() {}\n";
    let (added, removed) = changed(
        "core/src/builder/mod.rs",
        Box::leak(hidden.into_boxed_str()),
    );
    assert!(
        added.is_empty() && removed.is_empty(),
        "{added:?} {removed:?}"
    );

    // Making a method private removes it.
    let private = CORE_SHAPES.replace("pub fn area", "fn area");
    let (added, removed) = changed("core/src/shapes.rs", Box::leak(private.into_boxed_str()));
    assert!(added.is_empty());
    assert_eq!(removed.len(), 2, "{removed:?}");
}

#[test]
fn missing_root_crate_is_an_error() {
    let crates = vec![CrateSpec {
        name: "coalestra".to_owned(),
        src: PathBuf::from("fx/src"),
        deps: Vec::new(),
    }];
    let read = |_: &Path| None;
    assert!(render(&crates, &read).is_err());
}

#[test]
fn reads_package_names() {
    let manifest = "[package]\nname = \"coalestra-core\"\nversion.workspace = true\n\n[dependencies]\nname = \"x\"\n";
    assert_eq!(package_name(manifest).as_deref(), Some("coalestra-core"));
    assert_eq!(package_name("[workspace]\n"), None);
    let deps = "[dependencies]\ncoalestra-core = { workspace = true }\ntokio.workspace = true\n# x = 1\n[dev-dependencies]\nloom = 1\n";
    assert_eq!(dependency_names(deps), ["coalestra_core", "tokio"]);
}

#[test]
fn this_workspace_matches_its_manifest_generation() {
    // Generation over the real workspace succeeds, is deterministic and
    // covers both crates.
    let root = crate::workspace_root();
    let first = super::generate(&root).expect("generates");
    assert_eq!(super::generate(&root).expect("generates"), first);
    assert!(first.contains("\ncoalestra::SnapshotBuilder (struct)\n"));
    assert!(first.contains("\ncoalestra_core::Source (trait)"));
}

#[test]
fn parses_public_api_options() {
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(parse(&args(&[])), Ok(Mode::Print));
    assert_eq!(parse(&args(&["--check"])), Ok(Mode::Check));
    assert_eq!(parse(&args(&["--bless"])), Ok(Mode::Bless));
    assert!(parse(&args(&["--bless", "--check"])).is_err());
    assert!(parse(&args(&["--write"])).is_err());
}
