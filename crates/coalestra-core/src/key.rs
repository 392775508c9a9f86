//! Resource identity: [`ResourceKey`] and [`KeyNormalizer`].
//!
//! A key is `namespace:name[:subject][?qualifiers]`. Keys are cheap to clone
//! (one reference count) because the engine copies them into every map it
//! keeps. Qualifiers are normalized into a sorted, immutable list, so the order
//! in which they were given never changes equality, ordering or hashing.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

/// An error raised while constructing or parsing a [`ResourceKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The namespace is empty after normalization.
    #[error("namespace cannot be empty")]
    EmptyNamespace,
    /// The name is empty after normalization.
    #[error("name cannot be empty")]
    EmptyName,
    /// A qualifier name is empty after normalization.
    #[error("qualifier name cannot be empty")]
    EmptyQualifierName,
    /// Two qualifiers share a name after normalization.
    #[error("duplicate qualifier name {0:?}")]
    DuplicateQualifier(String),
    /// A rendered key could not be parsed.
    #[error("invalid resource key {input:?}: {reason}")]
    Parse {
        /// The text that failed to parse.
        input: String,
        /// Why it failed.
        reason: &'static str,
    },
}

/// How the parts of a key are normalized before they form its identity.
///
/// Three normalizers are provided: [`KeyNormalizer::Preserve`] (the default:
/// trim surrounding whitespace, keep case), [`KeyNormalizer::CaseInsensitive`]
/// (trim and apply full Unicode case folding to every part, so `"ß"` becomes
/// `"ss"`), and [`KeyNormalizer::Legacy`] (namespace and name lower-cased,
/// subject upper-cased, qualifier names lower-cased, qualifier values trimmed).
/// [`KeyNormalizer::custom`] accepts any function per part.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum KeyNormalizer {
    /// Trim surrounding whitespace and keep case.
    #[default]
    Preserve,
    /// Trim and case-fold every part (full Unicode case folding).
    CaseInsensitive,
    /// Lower namespace, name and qualifier names; upper subject.
    Legacy,
    /// User-provided normalization.
    Custom(Arc<dyn NormalizeParts>),
}

/// A custom normalization, one function per key part.
///
/// Every method receives the raw input and returns the normalized text; the
/// defaults trim surrounding whitespace.
pub trait NormalizeParts: Send + Sync {
    /// Normalizes the namespace.
    fn namespace(&self, raw: &str) -> String {
        raw.trim().to_owned()
    }
    /// Normalizes the name.
    fn name(&self, raw: &str) -> String {
        raw.trim().to_owned()
    }
    /// Normalizes the subject.
    fn subject(&self, raw: &str) -> String {
        raw.trim().to_owned()
    }
    /// Normalizes a qualifier name.
    fn qualifier_name(&self, raw: &str) -> String {
        raw.trim().to_owned()
    }
    /// Normalizes a qualifier value.
    fn qualifier_value(&self, raw: &str) -> String {
        raw.trim().to_owned()
    }
}

impl fmt::Debug for KeyNormalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Preserve => f.write_str("Preserve"),
            Self::CaseInsensitive => f.write_str("CaseInsensitive"),
            Self::Legacy => f.write_str("Legacy"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

#[derive(Clone, Copy)]
enum Part {
    Namespace,
    Name,
    Subject,
    QualifierName,
    QualifierValue,
}

fn fold(text: &str) -> String {
    caseless::default_case_fold_str(text)
}

impl KeyNormalizer {
    /// Wraps a custom normalization.
    pub fn custom(parts: impl NormalizeParts + 'static) -> Self {
        Self::Custom(Arc::new(parts))
    }

    fn apply(&self, part: Part, raw: &str) -> String {
        let trimmed = raw.trim();
        match self {
            Self::Preserve => trimmed.to_owned(),
            Self::CaseInsensitive => fold(trimmed),
            Self::Legacy => match part {
                Part::Namespace | Part::Name | Part::QualifierName => trimmed.to_lowercase(),
                Part::Subject => trimmed.to_uppercase(),
                Part::QualifierValue => trimmed.to_owned(),
            },
            Self::Custom(custom) => match part {
                Part::Namespace => custom.namespace(raw),
                Part::Name => custom.name(raw),
                Part::Subject => custom.subject(raw),
                Part::QualifierName => custom.qualifier_name(raw),
                Part::QualifierValue => custom.qualifier_value(raw),
            },
        }
    }
}

type Qualifier = (Box<str>, Box<str>);
type Identity<'a> = (&'a str, &'a str, &'a str, &'a [Qualifier]);

struct KeyInner {
    namespace: Box<str>,
    name: Box<str>,
    subject: Box<str>,
    qualifiers: Box<[(Box<str>, Box<str>)]>,
    normalizer: KeyNormalizer,
    hash: u64,
}

/// The identity of a resource: `namespace`, `name`, optional `subject` and
/// sorted `qualifiers`.
///
/// Two equal keys share one cache entry, one single-flight slot, one
/// resource-scoped circuit and one snapshot entry. The normalizer a key was
/// built with is kept for qualifier operations but is not part of identity.
///
/// ```
/// use coalestra_core::ResourceKey;
///
/// let key = ResourceKey::new("market", "price", "BTCUSDT")?
///     .with_qualifier("limit", 500)?
///     .with_qualifier("interval", "1m")?;
/// assert_eq!(key.to_string(), "market:price:BTCUSDT?interval=1m&limit=500");
/// assert_eq!(key.qualifier("interval"), Some("1m"));
/// assert_eq!(key.to_string().parse::<ResourceKey>()?, key);
/// # Ok::<(), coalestra_core::KeyError>(())
/// ```
#[derive(Clone)]
pub struct ResourceKey(Arc<KeyInner>);

impl ResourceKey {
    /// Builds a key with the default ([`KeyNormalizer::Preserve`]) normalizer.
    pub fn new(
        namespace: impl AsRef<str>,
        name: impl AsRef<str>,
        subject: impl AsRef<str>,
    ) -> Result<Self, KeyError> {
        Self::with_normalizer(
            namespace,
            name,
            subject,
            Vec::<(String, String)>::new(),
            KeyNormalizer::Preserve,
        )
    }

    /// Builds a key with the [`KeyNormalizer::Legacy`] normalizer.
    pub fn legacy(
        namespace: impl AsRef<str>,
        name: impl AsRef<str>,
        subject: impl AsRef<str>,
    ) -> Result<Self, KeyError> {
        Self::with_normalizer(
            namespace,
            name,
            subject,
            Vec::<(String, String)>::new(),
            KeyNormalizer::Legacy,
        )
    }

    /// Builds a key from every part with an explicit normalizer.
    ///
    /// Qualifier values may be anything displayable; they are stored as text
    /// (`500` becomes `"500"`).
    pub fn with_normalizer<Q, N, V>(
        namespace: impl AsRef<str>,
        name: impl AsRef<str>,
        subject: impl AsRef<str>,
        qualifiers: Q,
        normalizer: KeyNormalizer,
    ) -> Result<Self, KeyError>
    where
        Q: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: fmt::Display,
    {
        let namespace = normalizer.apply(Part::Namespace, namespace.as_ref());
        if namespace.is_empty() {
            return Err(KeyError::EmptyNamespace);
        }
        let name = normalizer.apply(Part::Name, name.as_ref());
        if name.is_empty() {
            return Err(KeyError::EmptyName);
        }
        let subject = normalizer.apply(Part::Subject, subject.as_ref());
        let mut normalized = Vec::new();
        for (qname, qvalue) in qualifiers {
            let qname = normalizer.apply(Part::QualifierName, qname.as_ref());
            if qname.is_empty() {
                return Err(KeyError::EmptyQualifierName);
            }
            let qvalue = normalizer.apply(Part::QualifierValue, &qvalue.to_string());
            normalized.push((qname.into_boxed_str(), qvalue.into_boxed_str()));
        }
        Self::assemble(namespace, name, subject, normalized, normalizer)
    }

    fn assemble(
        namespace: String,
        name: String,
        subject: String,
        mut qualifiers: Vec<(Box<str>, Box<str>)>,
        normalizer: KeyNormalizer,
    ) -> Result<Self, KeyError> {
        qualifiers.sort();
        for pair in qualifiers.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(KeyError::DuplicateQualifier(pair[0].0.to_string()));
            }
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&namespace, &name, &subject, &qualifiers).hash(&mut hasher);
        Ok(Self(Arc::new(KeyInner {
            namespace: namespace.into_boxed_str(),
            name: name.into_boxed_str(),
            subject: subject.into_boxed_str(),
            qualifiers: qualifiers.into_boxed_slice(),
            normalizer,
            hash: hasher.finish(),
        })))
    }

    /// Parses the rendering produced by `Display`
    /// (`namespace:name[:subject][?k=v&...]`, form-encoded qualifiers).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let err = |reason| KeyError::Parse {
            input: text.to_owned(),
            reason,
        };
        let (path, query) = match text.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (text, None),
        };
        let mut parts = path.splitn(3, ':');
        let decode = |part: &str| path_decode(part).ok_or_else(|| err("invalid percent-encoding"));
        let namespace = decode(parts.next().ok_or_else(|| err("missing namespace"))?)?;
        let name = decode(parts.next().ok_or_else(|| err("expected namespace:name"))?)?;
        let subject = decode(parts.next().unwrap_or(""))?;
        let mut qualifiers = Vec::new();
        if let Some(query) = query {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| err("qualifier without '='"))?;
                let k = form_decode(k).ok_or_else(|| err("invalid percent-encoding"))?;
                let v = form_decode(v).ok_or_else(|| err("invalid percent-encoding"))?;
                qualifiers.push((k, v));
            }
        }
        Self::with_normalizer(
            namespace,
            name,
            subject,
            qualifiers,
            KeyNormalizer::Preserve,
        )
    }

    /// The namespace (for example `market`).
    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    /// The resource name (for example `price`).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The subject (for example `BTCUSDT`); may be empty.
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The normalized qualifiers, sorted by name.
    pub fn qualifiers(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.qualifiers.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The normalizer this key was built with.
    pub fn normalizer(&self) -> &KeyNormalizer {
        &self.0.normalizer
    }

    /// Looks a qualifier up; the name is normalized with the key's normalizer.
    pub fn qualifier(&self, name: &str) -> Option<&str> {
        let wanted = self.0.normalizer.apply(Part::QualifierName, name);
        self.0
            .qualifiers
            .binary_search_by(|(k, _)| (**k).cmp(wanted.as_str()))
            .ok()
            .map(|i| &*self.0.qualifiers[i].1)
    }

    /// A new key with one qualifier added or replaced.
    pub fn with_qualifier(&self, name: &str, value: impl fmt::Display) -> Result<Self, KeyError> {
        self.with_qualifiers([(name, value)])
    }

    /// A new key with qualifiers added or replaced (later entries win).
    pub fn with_qualifiers<Q, N, V>(&self, updates: Q) -> Result<Self, KeyError>
    where
        Q: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: fmt::Display,
    {
        let norm = &self.0.normalizer;
        let mut merged: Vec<(Box<str>, Box<str>)> = self.0.qualifiers.to_vec();
        for (qname, qvalue) in updates {
            let qname = norm.apply(Part::QualifierName, qname.as_ref());
            if qname.is_empty() {
                return Err(KeyError::EmptyQualifierName);
            }
            let qvalue = norm.apply(Part::QualifierValue, &qvalue.to_string());
            merged.retain(|(k, _)| **k != *qname);
            merged.push((qname.into_boxed_str(), qvalue.into_boxed_str()));
        }
        self.rebuilt(merged)
    }

    /// A new key without the named qualifiers.
    pub fn without_qualifiers<I, N>(&self, names: I) -> Result<Self, KeyError>
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let norm = &self.0.normalizer;
        let removed: Vec<String> = names
            .into_iter()
            .map(|n| norm.apply(Part::QualifierName, n.as_ref()))
            .collect();
        let kept = self
            .0
            .qualifiers
            .iter()
            .filter(|(k, _)| !removed.iter().any(|r| **r == **k))
            .cloned()
            .collect();
        self.rebuilt(kept)
    }

    fn rebuilt(&self, qualifiers: Vec<(Box<str>, Box<str>)>) -> Result<Self, KeyError> {
        Self::assemble(
            self.0.namespace.to_string(),
            self.0.name.to_string(),
            self.0.subject.to_string(),
            qualifiers,
            self.0.normalizer.clone(),
        )
    }

    fn identity(&self) -> Identity<'_> {
        (
            &self.0.namespace,
            &self.0.name,
            &self.0.subject,
            &self.0.qualifiers,
        )
    }
}

impl ResourceKey {
    /// The hash computed once at construction (what [`KeyHashing`] passes on).
    pub(crate) fn precomputed_hash(&self) -> u64 {
        self.0.hash
    }
}

impl PartialEq for ResourceKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash && self.identity() == other.identity())
    }
}

impl Eq for ResourceKey {}

impl Hash for ResourceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for ResourceKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ResourceKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.identity().cmp(&other.identity())
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        path_encode(f, &self.0.namespace)?;
        f.write_str(":")?;
        path_encode(f, &self.0.name)?;
        if !self.0.subject.is_empty() {
            f.write_str(":")?;
            path_encode(f, &self.0.subject)?;
        }
        for (i, (k, v)) in self.0.qualifiers.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            form_encode(f, k)?;
            f.write_str("=")?;
            form_encode(f, v)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceKey({self})")
    }
}

impl FromStr for ResourceKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for ResourceKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Escapes the characters that delimit a rendered key (`:`, `?`, `%`) in
/// path parts; everything else is kept as is.
fn path_encode(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    if !text.contains([':', '?', '%']) {
        return f.write_str(text);
    }
    for ch in text.chars() {
        match ch {
            ':' => f.write_str("%3A")?,
            '?' => f.write_str("%3F")?,
            '%' => f.write_str("%25")?,
            other => write!(f, "{other}")?,
        }
    }
    Ok(())
}

fn path_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(hex_byte(text.get(i + 1..i + 3)?)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_byte(hex: &str) -> Option<u8> {
    if hex.len() == 2 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        u8::from_str_radix(hex, 16).ok()
    } else {
        None
    }
}

fn form_encode(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                write!(f, "{}", byte as char)?
            }
            b' ' => f.write_str("+")?,
            other => write!(f, "%{other:02X}")?,
        }
    }
    Ok(())
}

fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(hex_byte(text.get(i + 1..i + 3)?)?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A hasher that passes a [`ResourceKey`]'s precomputed hash through.
///
/// Keys hash themselves once at construction; maps keyed by them need not
/// hash the text again.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(26) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A `HashMap` keyed by [`ResourceKey`] that reuses the key's own hash.
pub type KeyMap<V> = std::collections::HashMap<ResourceKey, V, KeyHashing>;

/// The hasher builder of [`KeyMap`], for other maps and sets keyed by
/// resources (or by values that, like keys, hash themselves once).
pub type KeyHashing = std::hash::BuildHasherDefault<KeyHasher>;
