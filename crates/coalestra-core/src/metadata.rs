//! [`Metadata`]: an immutable string-keyed map attached to values and requests.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A metadata value: text, a flag, an integer or a number.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum MetadataValue {
    /// Text.
    Text(Arc<str>),
    /// A flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number.
    Float(f64),
}

impl MetadataValue {
    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            _ => None,
        }
    }
    /// The flag, if this is a flag.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// The number, if this is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Float(f) => Some(*f),
            Self::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl fmt::Display for MetadataValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(t) => f.write_str(t),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
        }
    }
}

impl From<&str> for MetadataValue {
    fn from(v: &str) -> Self {
        Self::Text(v.into())
    }
}
impl From<String> for MetadataValue {
    fn from(v: String) -> Self {
        Self::Text(v.into())
    }
}
impl From<bool> for MetadataValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<i64> for MetadataValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<f64> for MetadataValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

/// An immutable, cheaply cloned map from names to [`MetadataValue`]s.
///
/// Changing metadata always produces a new map; a map handed out can never be
/// altered by anyone.
#[derive(Clone, Default, PartialEq)]
pub struct Metadata(Option<Arc<BTreeMap<Arc<str>, MetadataValue>>>);

impl Metadata {
    /// An empty map (no allocation).
    pub const fn new() -> Self {
        Self(None)
    }

    /// Looks an entry up.
    pub fn get(&self, name: &str) -> Option<&MetadataValue> {
        self.0.as_ref().and_then(|m| m.get(name))
    }

    /// Whether the map has no entry.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    /// Iterates entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataValue)> {
        self.0.iter().flat_map(|m| m.iter().map(|(k, v)| (&**k, v)))
    }

    /// A new map with one entry added or replaced.
    #[must_use]
    pub fn with(&self, name: impl Into<Arc<str>>, value: impl Into<MetadataValue>) -> Self {
        let mut map = self.0.as_deref().cloned().unwrap_or_default();
        map.insert(name.into(), value.into());
        Self(Some(Arc::new(map)))
    }

    /// A new map holding this map's entries overridden by `other`'s.
    #[must_use]
    pub fn merged(&self, other: &Metadata) -> Self {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut map = self.0.as_deref().cloned().unwrap_or_default();
        for (k, v) in other.iter() {
            map.insert(k.into(), v.clone());
        }
        Self(Some(Arc::new(map)))
    }
}

impl<K: Into<Arc<str>>, V: Into<MetadataValue>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map: BTreeMap<Arc<str>, MetadataValue> = iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        if map.is_empty() {
            Self(None)
        } else {
            Self(Some(Arc::new(map)))
        }
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}
