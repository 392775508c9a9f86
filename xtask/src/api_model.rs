//! The data model of the public API scanner (what [`crate::api_parser`]
//! produces and [`crate::api_resolve`] consumes), and the token helpers that
//! normalise signatures.

use crate::api_lexer::{Kind, Token};

/// What an item is; the manifest prints [`ItemKind::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKind {
    /// `struct`.
    Struct,
    /// `enum`.
    Enum,
    /// `union`.
    Union,
    /// `trait`.
    Trait,
    /// `type` alias.
    Type,
    /// Free `fn`.
    Fn,
    /// `const`.
    Const,
    /// `static`.
    Static,
    /// `mod`.
    Mod,
}

impl ItemKind {
    /// The label used in the manifest.
    pub fn label(self) -> &'static str {
        match self {
            ItemKind::Struct => "struct",
            ItemKind::Enum => "enum",
            ItemKind::Union => "union",
            ItemKind::Trait => "trait",
            ItemKind::Type => "type",
            ItemKind::Fn => "fn",
            ItemKind::Const => "const",
            ItemKind::Static => "static",
            ItemKind::Mod => "mod",
        }
    }
}

/// A field, variant, trait item or inherent associated item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name (`0`, `1`… for tuple fields).
    pub name: String,
    /// Its label: `field`, `variant`, `method`, `trait method`, …
    pub kind: &'static str,
    /// Rendered signature detail (may be empty).
    pub detail: String,
}

/// One item declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The declared name.
    pub name: String,
    /// The item's kind.
    pub kind: ItemKind,
    /// Whether it is plain `pub` (restricted visibility counts as private).
    pub public: bool,
    /// Rendered signature detail: generics, field type, fn signature…
    pub detail: String,
    /// Public fields, variants or trait items.
    pub members: Vec<Member>,
    /// Traits named in `#[derive(..)]`.
    pub derives: Vec<String>,
    /// Whether it is `#[non_exhaustive]`.
    pub non_exhaustive: bool,
    /// For `mod name { .. }`: the parsed body.
    pub inline: Option<Box<Module>>,
    /// For `#[path = ".."] mod name;`: the path.
    pub path_attr: Option<String>,
}

/// One name bound by a `use` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// Whether the `use` is plain `pub`.
    pub public: bool,
    /// The imported path (for a glob: the module's path).
    pub path: Vec<String>,
    /// The bound name, or `None` for a glob import.
    pub name: Option<String>,
}

/// One `impl` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impl {
    /// Path segments of the self type, generics stripped.
    pub self_path: Vec<String>,
    /// For a trait impl: the rendered trait with the impl's generics,
    /// e.g. `<T> From<T>`.
    pub trait_: Option<String>,
    /// Public associated items of an inherent impl.
    pub members: Vec<Member>,
}

/// The parsed contents of one module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Module {
    /// Item declarations, in source order.
    pub items: Vec<Item>,
    /// `use` bindings, in source order.
    pub uses: Vec<Use>,
    /// `impl` blocks, in source order.
    pub impls: Vec<Impl>,
}

/// A trait path without its module qualifiers: `std::fmt::Display` gives
/// `Display`, `From<std::sync::Arc<str>>` stays as it is.
pub fn last_segment(tokens: &[Token]) -> &[Token] {
    let end = tokens
        .iter()
        .position(|t| t.is("<"))
        .unwrap_or(tokens.len());
    match tokens[..end].iter().rposition(|t| t.is("::")) {
        Some(sep) => &tokens[sep + 1..],
        None => tokens,
    }
}

/// A signature without `mut` binding modes (`mut self`, `mut x: T`): they
/// belong to the body, not to the API. `&mut T` and `*mut T` stay.
pub fn without_binding_mut(sig: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(sig.len());
    for tok in sig {
        let binding = tok.is("mut") && out.last().is_some_and(|p| p.is("(") || p.is(","));
        if !binding {
            out.push(tok);
        }
    }
    out
}

/// Whether a fn signature's first parameter is a `self` receiver.
pub fn has_receiver(sig: &[Token]) -> bool {
    let mut depth = 0i32;
    let mut in_params = false;
    for tok in sig {
        match tok.text.as_str() {
            "(" if depth == 0 && !in_params => in_params = true,
            "<" | "(" | "[" => depth += 1,
            ">" | ")" | "]" if depth > 0 => depth -= 1,
            ")" | "," if in_params => return false,
            "self" if in_params => return true,
            _ => {}
        }
    }
    false
}

/// The path of a type, without references, `dyn` and generic arguments:
/// `&'a mut crate::x::Foo<T>` gives `["crate", "x", "Foo"]`.
pub fn type_path(tokens: &[Token]) -> Vec<String> {
    let mut path = Vec::new();
    for tok in tokens {
        match tok.text.as_str() {
            "&" | "mut" | "dyn" | "::" if path.is_empty() || tok.is("::") => {}
            _ if tok.kind == Kind::Lifetime && path.is_empty() => {}
            _ if tok.is_ident() => path.push(tok.text.clone()),
            _ => break,
        }
    }
    path
}
