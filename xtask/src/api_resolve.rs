//! Name resolution for the public API scanner.
//!
//! Loads the module trees of the workspace crates, resolves `use` paths
//! (within a crate and across workspace crates, following re-export chains
//! and globs), enumerates every public path of a crate and prints the
//! manifest lines: one per public path, plus the members (fields, variants,
//! trait items, public inherent methods and associated items) and trait
//! impls of each type at its shortest public path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::api_model::{Impl, ItemKind, Member, Module};
use crate::api_parser::parse_file;

/// Reads a source file; `None` when it does not exist.
pub type Reader<'a> = &'a dyn Fn(&Path) -> Option<String>;

/// Deepest `use` chain or module nesting followed; guards against cycles.
const MAX_DEPTH: usize = 16;

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// An item (not a module) of a workspace crate.
    Item {
        krate: usize,
        module: usize,
        item: usize,
    },
    /// A module of a workspace crate.
    Module { krate: usize, module: usize },
    /// A path outside the workspace, e.g. `serde_json::Value`.
    External(String),
}

/// One module of a loaded crate.
struct Node {
    parsed: Module,
    parent: Option<usize>,
    /// Child modules by name (only those whose source was found).
    children: BTreeMap<String, usize>,
}

/// A crate to load: lib name, `src` directory and the lib names of the
/// workspace crates it depends on (normal dependencies).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CrateSpec {
    /// Lib name, e.g. `coalestra_core`.
    pub name: String,
    /// The `src` directory holding `lib.rs`.
    pub src: PathBuf,
    /// Lib names of its dependencies (others are ignored).
    pub deps: Vec<String>,
}

/// One loaded crate: its lib name and module tree (index 0 is the root).
struct Crate {
    name: String,
    deps: Vec<String>,
    nodes: Vec<Node>,
}

/// The loaded workspace crates.
pub struct Workspace {
    crates: Vec<Crate>,
    /// Impl blocks by the type they implement, with the crate declaring
    /// each.
    impls: BTreeMap<Target, Vec<(usize, Impl)>>,
}

impl Workspace {
    /// Loads each `(lib name, src directory)` from `src/lib.rs` down.
    pub fn load(crates: &[CrateSpec], read: Reader<'_>) -> Self {
        let mut loaded: Vec<Crate> = crates
            .iter()
            .map(|CrateSpec { name, src, deps }| {
                let mut nodes = Vec::new();
                let root = parse_file(&read(&src.join("lib.rs")).unwrap_or_default());
                add_node(&mut nodes, root, src, None, read);
                Crate {
                    name: name.clone(),
                    deps: deps.clone(),
                    nodes,
                }
            })
            .collect();
        loaded.sort_by(|a, b| a.name.cmp(&b.name));
        let mut ws = Self {
            crates: loaded,
            impls: BTreeMap::new(),
        };
        let mut impls: BTreeMap<Target, Vec<(usize, Impl)>> = BTreeMap::new();
        for (k, krate) in ws.crates.iter().enumerate() {
            for (m, node) in krate.nodes.iter().enumerate() {
                for block in &node.parsed.impls {
                    let found = if block.self_path.len() == 1 {
                        ws.lookup(k, m, &block.self_path[0], false, 0)
                    } else {
                        ws.resolve(k, m, &block.self_path, 0)
                    };
                    for target in found {
                        if ws.type_kind(&target).is_some() {
                            impls.entry(target).or_default().push((k, block.clone()));
                        }
                    }
                }
            }
        }
        ws.impls = impls;
        ws
    }

    fn node(&self, krate: usize, module: usize) -> &Node {
        &self.crates[krate].nodes[module]
    }

    /// The kind of an item target that can have members.
    fn type_kind(&self, target: &Target) -> Option<ItemKind> {
        let Target::Item {
            krate,
            module,
            item,
        } = *target
        else {
            return None;
        };
        let kind = self.node(krate, module).parsed.items[item].kind;
        matches!(
            kind,
            ItemKind::Struct | ItemKind::Enum | ItemKind::Union | ItemKind::Trait
        )
        .then_some(kind)
    }

    fn crate_index(&self, name: &str) -> Option<usize> {
        self.crates.iter().position(|c| c.name == name)
    }

    /// Everything `name` means in a module. `outside`: the lookup comes
    /// from another crate, so only `pub` names count.
    fn lookup(
        &self,
        krate: usize,
        module: usize,
        name: &str,
        outside: bool,
        depth: usize,
    ) -> Vec<Target> {
        self.lookup_in(krate, module, name, outside, false, depth)
    }

    /// [`Self::lookup`] for a segment followed by `::`: only modules (and
    /// outside paths) qualify, and a module declared under that name wins
    /// over any import of the same name.
    fn lookup_module(
        &self,
        krate: usize,
        module: usize,
        name: &str,
        outside: bool,
        depth: usize,
    ) -> Vec<Target> {
        self.lookup_in(krate, module, name, outside, true, depth)
    }

    fn lookup_in(
        &self,
        krate: usize,
        module: usize,
        name: &str,
        outside: bool,
        modules_only: bool,
        depth: usize,
    ) -> Vec<Target> {
        if depth > MAX_DEPTH {
            return Vec::new();
        }
        let node = self.node(krate, module);
        if modules_only {
            let declared = node
                .parsed
                .items
                .iter()
                .any(|i| i.kind == ItemKind::Mod && i.name == name && (i.public || !outside));
            if let (true, Some(&child)) = (declared, node.children.get(name)) {
                return vec![Target::Module {
                    krate,
                    module: child,
                }];
            }
        }
        let mut found = BTreeSet::new();
        for (index, item) in node.parsed.items.iter().enumerate() {
            if item.name != name || (outside && !item.public) {
                continue;
            }
            if item.kind == ItemKind::Mod {
                if let Some(&child) = node.children.get(name) {
                    found.insert(Target::Module {
                        krate,
                        module: child,
                    });
                }
            } else {
                found.insert(Target::Item {
                    krate,
                    module,
                    item: index,
                });
            }
        }
        for import in &node.parsed.uses {
            // `use name::…` binding `name` again (e.g. `pub use
            // async_trait::async_trait`) cannot be what its own first
            // segment refers to.
            let self_referential = modules_only && import.path.first().is_some_and(|f| f == name);
            if import.name.as_deref() == Some(name)
                && (import.public || !outside)
                && !self_referential
            {
                found.extend(self.resolve(krate, module, &import.path, depth + 1));
            }
        }
        if found.is_empty() {
            for import in node.parsed.uses.iter().filter(|u| u.name.is_none()) {
                if outside && !import.public {
                    continue;
                }
                for target in self.resolve(krate, module, &import.path, depth + 1) {
                    if let Target::Module {
                        krate: k,
                        module: m,
                    } = target
                    {
                        found.extend(self.lookup_in(
                            k,
                            m,
                            name,
                            k != krate,
                            modules_only,
                            depth + 1,
                        ));
                    }
                }
            }
        }
        if modules_only {
            found.retain(|t| !matches!(t, Target::Item { .. }));
        }
        found.into_iter().collect()
    }

    /// Resolves a path as written in module `(krate, module)`.
    fn resolve(&self, krate: usize, module: usize, path: &[String], depth: usize) -> Vec<Target> {
        let Some((first, rest)) = path.split_first() else {
            return Vec::new();
        };
        if depth > MAX_DEPTH {
            return Vec::new();
        }
        let mut current: Vec<Target> = match first.as_str() {
            "crate" => vec![Target::Module { krate, module: 0 }],
            "self" => vec![Target::Module { krate, module }],
            "super" => {
                let parent = self.node(krate, module).parent.unwrap_or(0);
                vec![Target::Module {
                    krate,
                    module: parent,
                }]
            }
            _ => {
                // A local module first (2018 paths), unless this is the very
                // `use first;` being resolved; then a workspace crate, then
                // an outside crate.
                let local = if path.len() == 1 {
                    Vec::new()
                } else {
                    self.lookup_module(krate, module, first, false, depth + 1)
                };
                if !local.is_empty() {
                    local
                } else if path.len() > 1 && self.binds(krate, module, first) {
                    // Bound here but not resolvable (a cycle or depth).
                    return Vec::new();
                } else if let Some(k) = self.crate_index(first) {
                    vec![Target::Module {
                        krate: k,
                        module: 0,
                    }]
                } else {
                    return vec![Target::External(path.join("::"))];
                }
            }
        };
        for (index, segment) in rest.iter().enumerate() {
            let is_last = index + 1 == rest.len();
            let mut next = BTreeSet::new();
            for target in &current {
                match target {
                    Target::Module {
                        krate: k,
                        module: m,
                    } => {
                        if segment == "super" {
                            let parent = self.node(*k, *m).parent.unwrap_or(0);
                            next.insert(Target::Module {
                                krate: *k,
                                module: parent,
                            });
                        } else if is_last {
                            next.extend(self.lookup(*k, *m, segment, *k != krate, depth + 1));
                        } else {
                            next.extend(self.lookup_module(
                                *k,
                                *m,
                                segment,
                                *k != krate,
                                depth + 1,
                            ));
                        }
                    }
                    Target::External(base) => {
                        next.insert(Target::External(format!("{base}::{segment}")));
                    }
                    // Paths into types (enum variants, associated items)
                    // are not followed.
                    Target::Item { .. } => {}
                }
            }
            current = next.into_iter().collect();
        }
        current
    }

    /// Whether a module declares or imports `name` explicitly.
    fn binds(&self, krate: usize, module: usize, name: &str) -> bool {
        let parsed = &self.node(krate, module).parsed;
        parsed.items.iter().any(|i| i.name == name)
            || parsed.uses.iter().any(|u| {
                u.name.as_deref() == Some(name) && u.path.first().is_none_or(|f| f != name)
            })
    }

    /// Every public path of crate `name` with what it refers to.
    fn public_paths(&self, name: &str) -> BTreeSet<(Vec<String>, Target)> {
        let mut out = BTreeSet::new();
        if let Some(k) = self.crate_index(name) {
            let mut stack = Vec::new();
            self.walk(k, 0, &[name.to_owned()], &mut out, &mut stack);
        }
        out
    }

    fn walk(
        &self,
        krate: usize,
        module: usize,
        prefix: &[String],
        out: &mut BTreeSet<(Vec<String>, Target)>,
        stack: &mut Vec<(usize, usize)>,
    ) {
        if stack.contains(&(krate, module)) || stack.len() > MAX_DEPTH {
            return;
        }
        stack.push((krate, module));
        let node = self.node(krate, module);
        let mut explicit: BTreeSet<String> = BTreeSet::new();
        let mut bound: Vec<(String, Target)> = Vec::new();
        let mut globbed: Vec<(String, Target)> = Vec::new();
        for (index, item) in node.parsed.items.iter().enumerate() {
            if !item.public {
                continue;
            }
            explicit.insert(item.name.clone());
            let target = if item.kind == ItemKind::Mod {
                match node.children.get(&item.name) {
                    Some(&child) => Target::Module {
                        krate,
                        module: child,
                    },
                    None => continue,
                }
            } else {
                Target::Item {
                    krate,
                    module,
                    item: index,
                }
            };
            bound.push((item.name.clone(), target));
        }
        for import in node.parsed.uses.iter().filter(|u| u.public) {
            match &import.name {
                Some(name) if name != "_" => {
                    explicit.insert(name.clone());
                    for target in self.resolve(krate, module, &import.path, 0) {
                        bound.push((name.clone(), target));
                    }
                }
                Some(_) => {}
                None => {
                    for target in self.resolve(krate, module, &import.path, 0) {
                        if let Target::Module {
                            krate: k,
                            module: m,
                        } = target
                        {
                            for name in self.public_names(k, m) {
                                for t in self.lookup(k, m, &name, true, 0) {
                                    globbed.push((name.clone(), t));
                                }
                            }
                        }
                    }
                }
            }
        }
        // Explicit names shadow glob imports.
        bound.extend(
            globbed
                .into_iter()
                .filter(|(name, _)| !explicit.contains(name)),
        );
        for (name, target) in bound {
            let mut path = prefix.to_vec();
            path.push(name);
            if let Target::Module {
                krate: k,
                module: m,
            } = target
            {
                self.walk(k, m, &path, out, stack);
            }
            out.insert((path, target));
        }
        stack.pop();
    }

    /// Names a module makes public: `pub` items and `pub use` bindings.
    fn public_names(&self, krate: usize, module: usize) -> BTreeSet<String> {
        let node = self.node(krate, module);
        let items = node
            .parsed
            .items
            .iter()
            .filter(|i| i.public)
            .map(|i| i.name.clone());
        let uses = node
            .parsed
            .uses
            .iter()
            .filter(|u| u.public)
            .filter_map(|u| u.name.clone())
            .filter(|n| n != "_");
        items.chain(uses).collect()
    }

    /// Crate `root` and the workspace crates it depends on, transitively:
    /// the crates whose impls its users see.
    fn closure(&self, root: &str) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<usize> = self.crate_index(root).into_iter().collect();
        while let Some(k) = todo.pop() {
            if seen.insert(k) {
                todo.extend(
                    self.crates[k]
                        .deps
                        .iter()
                        .filter_map(|d| self.crate_index(d)),
                );
            }
        }
        seen
    }

    /// The manifest lines of crate `name` (lib name), unsorted.
    pub fn lines(&self, name: &str, out: &mut BTreeSet<String>) {
        let paths = self.public_paths(name);
        let visible = self.closure(name);
        // Shortest (then smallest) public path of each target: its members
        // are listed there once.
        let mut canonical: BTreeMap<&Target, &Vec<String>> = BTreeMap::new();
        for (path, target) in &paths {
            let entry = canonical.entry(target).or_insert(path);
            if (path.len(), path) < (entry.len(), *entry) {
                *entry = path;
            }
        }
        for (path, target) in &paths {
            let shown = path.join("::");
            match target {
                Target::External(ext) => {
                    out.insert(format!("{shown} (re-export) {ext}"));
                }
                Target::Module { .. } => {
                    out.insert(format!("{shown} (mod)"));
                }
                Target::Item {
                    krate,
                    module,
                    item,
                } => {
                    let item = &self.node(*krate, *module).parsed.items[*item];
                    out.insert(line(&shown, item.kind.label(), &item.detail));
                }
            }
        }
        for (target, path) in canonical {
            let Target::Item {
                krate,
                module,
                item,
            } = *target
            else {
                continue;
            };
            let item = &self.node(krate, module).parsed.items[item];
            let shown = path.join("::");
            let member_line = |m: &Member| line(&format!("{shown}::{}", m.name), m.kind, &m.detail);
            out.extend(item.members.iter().map(member_line));
            if item.non_exhaustive {
                out.insert(line(&shown, "attr", "#[non_exhaustive]"));
            }
            for derive in &item.derives {
                out.insert(line(&shown, "impl", derive));
            }
            let impls = self.impls.get(target).into_iter().flatten();
            for (_, block) in impls.filter(|(k, _)| visible.contains(k)) {
                match &block.trait_ {
                    Some(tr) => {
                        out.insert(line(&shown, "impl", tr));
                    }
                    None => out.extend(block.members.iter().map(member_line)),
                }
            }
        }
    }
}

/// One manifest line: `path (kind)` plus the detail when there is one.
fn line(path: &str, kind: &str, detail: &str) -> String {
    if detail.is_empty() {
        format!("{path} ({kind})")
    } else {
        format!("{path} ({kind}) {detail}")
    }
}

/// Adds a module (and, recursively, its child modules) to `nodes`.
/// `dir` is the directory its child module files live in.
fn add_node(
    nodes: &mut Vec<Node>,
    mut parsed: Module,
    dir: &Path,
    parent: Option<usize>,
    read: Reader<'_>,
) -> usize {
    let index = nodes.len();
    let mods: Vec<(String, Option<Box<Module>>, Option<String>)> = parsed
        .items
        .iter_mut()
        .filter(|i| i.kind == ItemKind::Mod)
        .map(|i| (i.name.clone(), i.inline.take(), i.path_attr.clone()))
        .collect();
    nodes.push(Node {
        parsed,
        parent,
        children: BTreeMap::new(),
    });
    if nodes.len() > 10_000 {
        return index;
    }
    for (name, inline, path_attr) in mods {
        let child_dir = dir.join(&name);
        let child = match (inline, path_attr) {
            (Some(body), _) => Some((*body, child_dir)),
            (None, Some(path)) => {
                let file = dir.join(path);
                let sub = file.with_extension("");
                read(&file).map(|src| (parse_file(&src), sub))
            }
            (None, None) => read(&dir.join(format!("{name}.rs")))
                .or_else(|| read(&child_dir.join("mod.rs")))
                .map(|src| (parse_file(&src), child_dir)),
        };
        if let Some((module, sub_dir)) = child {
            let child = add_node(nodes, module, &sub_dir, Some(index), read);
            nodes[index].children.insert(name, child);
        }
    }
    index
}
