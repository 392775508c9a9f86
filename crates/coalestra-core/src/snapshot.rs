//! [`Snapshot`]: an immutable, consistent view of many resources.

use std::fmt;
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::diagnostics::SnapshotDiagnostics;
use crate::error::{ResourceError, ValueError};
use crate::key::ResourceKey;
use crate::metadata::Metadata;
use crate::positions::{KeyPositions, MAX_TAG};
use crate::value::SnapshotValue;

struct SnapshotInner {
    id: Arc<str>,
    created_at: Timestamp,
    values: Vec<SnapshotValue>,
    errors: Vec<ResourceError>,
    index: KeyPositions,
    /// Whether `index` is kept complete (otherwise keys are found by scanning).
    indexed: bool,
    diagnostics: Option<SnapshotDiagnostics>,
    metadata: Metadata,
}

#[derive(Clone, Copy)]
enum Slot {
    Value(usize),
    Error(usize),
}

impl Slot {
    /// The index tag of this slot: the position, then one bit for errors.
    fn tag(self) -> u32 {
        // `index_if_large` keeps snapshots too large for a tag unindexed.
        match self {
            Slot::Value(i) => (i as u32) << 1,
            Slot::Error(i) => ((i as u32) << 1) | 1,
        }
    }

    fn from_tag(tag: u32) -> Self {
        let at = (tag >> 1) as usize;
        if tag & 1 == 0 {
            Slot::Value(at)
        } else {
            Slot::Error(at)
        }
    }
}

/// Snapshots of at most this many entries find a key by scanning: no hash
/// index is allocated for them (many builds ask for a handful of keys).
/// Larger ones (or ones reserved larger) keep `index` complete.
const SCAN_LIMIT: usize = 8;

/// Entries beyond this many cannot be tagged: such a snapshot is scanned.
const INDEX_LIMIT: usize = (MAX_TAG >> 1) as usize;

/// Whether the entry an index tag points at belongs to `key`.
fn tag_is_key(
    values: &[SnapshotValue],
    errors: &[ResourceError],
    tag: u32,
    key: &ResourceKey,
) -> bool {
    let found = match Slot::from_tag(tag) {
        Slot::Value(i) => values.get(i).map(SnapshotValue::key),
        Slot::Error(i) => errors.get(i).map(ResourceError::key),
    };
    found == Some(key)
}

impl SnapshotInner {
    fn slot(&self, key: &ResourceKey) -> Option<Slot> {
        if self.indexed {
            return self
                .index
                .find(key, |tag| tag_is_key(&self.values, &self.errors, tag, key))
                .map(Slot::from_tag);
        }
        if let Some(i) = self.values.iter().position(|v| v.key() == key) {
            return Some(Slot::Value(i));
        }
        self.errors
            .iter()
            .position(|e| e.key() == key)
            .map(Slot::Error)
    }

    /// Builds the index once the snapshot outgrows scanning (or is about to,
    /// by `extra` more entries).
    fn index_if_large(&mut self, extra: usize) {
        let entries = self.values.len() + self.errors.len();
        if !self.indexed && entries + extra > SCAN_LIMIT && entries + extra <= INDEX_LIMIT {
            self.indexed = true;
            self.index.reserve(entries + extra);
            self.reindex();
        }
    }

    /// Appends a value for a key not present.
    fn add_value(&mut self, value: SnapshotValue) {
        let slot = Slot::Value(self.values.len());
        self.values.push(value);
        self.note_added(slot);
    }

    /// Appends an error for a key not present.
    fn add_error(&mut self, error: ResourceError) {
        let slot = Slot::Error(self.errors.len());
        self.errors.push(error);
        self.note_added(slot);
    }

    /// Indexes the entry just appended at `slot`.
    fn note_added(&mut self, slot: Slot) {
        if !self.indexed {
            return;
        }
        if self.values.len() + self.errors.len() > INDEX_LIMIT {
            self.indexed = false;
            self.index = KeyPositions::default();
            return;
        }
        let key = match slot {
            Slot::Value(i) => self.values[i].key(),
            Slot::Error(i) => self.errors[i].key(),
        };
        self.index.insert_absent(key, slot.tag());
    }

    /// Indexes `values` as the only entries, in order; `false` (and nothing
    /// indexed) when a key repeats.
    fn index_distinct_values(&mut self) -> bool {
        debug_assert!(self.errors.is_empty(), "only values are indexed at once");
        let count = self.values.len();
        if count <= SCAN_LIMIT {
            let values = &self.values;
            return (1..count).all(|i| values[..i].iter().all(|v| v.key() != values[i].key()));
        }
        if count > INDEX_LIMIT {
            return false;
        }
        self.indexed = true;
        self.index.reserve(count);
        let (values, errors) = (&self.values, &self.errors);
        for (i, value) in values.iter().enumerate() {
            let key = value.key();
            let repeated = self.index.find_or_insert(key, Slot::Value(i).tag(), |tag| {
                tag_is_key(values, errors, tag, key)
            });
            if repeated.is_some() {
                self.index.clear();
                self.indexed = false;
                return false;
            }
        }
        true
    }

    /// Re-records every entry's position (after one was removed).
    fn reindex(&mut self) {
        if !self.indexed {
            return;
        }
        self.index.clear();
        for (i, v) in self.values.iter().enumerate() {
            self.index.insert_absent(v.key(), Slot::Value(i).tag());
        }
        for (i, e) in self.errors.iter().enumerate() {
            self.index.insert_absent(e.key(), Slot::Error(i).tag());
        }
    }
}

/// An immutable set of resolved values and per-resource errors.
///
/// Cheap to clone (one reference count). Values keep request order.
///
/// ```
/// use coalestra_core::{Payload, ResourceKey, Snapshot, Timestamp};
/// use coalestra_core::value::{SnapshotValue, ValueParts};
///
/// let key = ResourceKey::new("market", "price", "BTC")?;
/// let value = SnapshotValue::from_parts(ValueParts::new(
///     key.clone(), Payload::new(101.5_f64), "rest", Timestamp::from_secs(10.0)));
/// let snapshot = Snapshot::parts("s-1", Timestamp::from_secs(11.0)).value(value).finish();
/// assert_eq!(*snapshot.value::<f64>(&key)?, 101.5);
/// assert!(snapshot.is_complete());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Snapshot(Arc<SnapshotInner>);

impl Snapshot {
    /// Starts assembling a snapshot.
    pub fn parts(id: impl Into<Arc<str>>, created_at: Timestamp) -> SnapshotParts {
        SnapshotParts {
            inner: SnapshotInner {
                id: id.into(),
                created_at,
                values: Vec::new(),
                errors: Vec::new(),
                index: KeyPositions::default(),
                indexed: false,
                diagnostics: None,
                metadata: Metadata::new(),
            },
        }
    }

    /// The snapshot identity.
    pub fn id(&self) -> &str {
        &self.0.id
    }
    /// When the build started.
    pub fn created_at(&self) -> Timestamp {
        self.0.created_at
    }
    /// The number of resolved values.
    pub fn len(&self) -> usize {
        self.0.values.len()
    }
    /// Whether no value resolved.
    pub fn is_empty(&self) -> bool {
        self.0.values.is_empty()
    }
    /// Whether no resource failed.
    pub fn is_complete(&self) -> bool {
        self.0.errors.is_empty()
    }
    /// The value of `key`, if resolved.
    pub fn get(&self, key: &ResourceKey) -> Option<&SnapshotValue> {
        match self.0.slot(key)? {
            Slot::Value(i) => self.0.values.get(i),
            Slot::Error(_) => None,
        }
    }
    /// Whether `key` resolved.
    pub fn contains(&self, key: &ResourceKey) -> bool {
        self.get(key).is_some()
    }
    /// The payload of `key` as `T`.
    pub fn value<T: std::any::Any>(&self, key: &ResourceKey) -> Result<&T, ValueError> {
        match self.0.slot(key) {
            Some(Slot::Value(i)) => Ok(self.0.values[i].value::<T>()?),
            Some(Slot::Error(i)) => Err(ValueError::Failed(self.0.errors[i].clone())),
            None => Err(ValueError::Missing(key.clone())),
        }
    }
    /// The payload of `key` as `T`, or `None` when absent or of another type.
    pub fn maybe_value<T: std::any::Any>(&self, key: &ResourceKey) -> Option<&T> {
        self.get(key).and_then(|v| v.value::<T>().ok())
    }
    /// The error of `key`, if it failed.
    pub fn error(&self, key: &ResourceKey) -> Option<&ResourceError> {
        match self.0.slot(key)? {
            Slot::Error(i) => self.0.errors.get(i),
            Slot::Value(_) => None,
        }
    }
    /// Resolved values in order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &SnapshotValue> {
        self.0.values.iter()
    }
    /// Resolved keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &ResourceKey> {
        self.0.values.iter().map(SnapshotValue::key)
    }
    /// Per-resource errors in order.
    pub fn errors(&self) -> &[ResourceError] {
        &self.0.errors
    }
    /// Keys whose value was delivered stale.
    pub fn stale_keys(&self) -> impl Iterator<Item = &ResourceKey> {
        self.0
            .values
            .iter()
            .filter(|v| v.is_stale())
            .map(SnapshotValue::key)
    }
    /// What the build did, when the engine recorded it.
    pub fn diagnostics(&self) -> Option<&SnapshotDiagnostics> {
        self.0.diagnostics.as_ref()
    }
    /// Caller metadata of the build.
    pub fn metadata(&self) -> &Metadata {
        &self.0.metadata
    }
    /// A copy of this snapshot's parts, to derive a new snapshot from it.
    pub fn to_parts(&self) -> SnapshotParts {
        let mut parts =
            Snapshot::parts(self.0.id.clone(), self.0.created_at).metadata(self.0.metadata.clone());
        for v in &self.0.values {
            parts.push_value(v.clone());
        }
        for e in &self.0.errors {
            parts.push_error(e.clone());
        }
        if let Some(d) = &self.0.diagnostics {
            parts = parts.diagnostics(d.clone());
        }
        parts
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("id", &self.0.id)
            .field("created_at", &self.0.created_at)
            .field("values", &self.0.values)
            .field("errors", &self.0.errors)
            .finish_non_exhaustive()
    }
}

/// Assembles a [`Snapshot`]. A later entry for a key replaces an earlier one
/// (value or error).
pub struct SnapshotParts {
    inner: SnapshotInner,
}

impl SnapshotParts {
    /// Reserves room for `n` values.
    pub fn reserve(&mut self, n: usize) {
        self.inner.values.reserve(n);
        if self.inner.indexed {
            self.inner.index.reserve(n);
        } else {
            self.inner.index_if_large(n);
        }
    }

    /// Adds (or replaces) a value.
    #[inline]
    pub fn push_value(&mut self, value: SnapshotValue) {
        let inner = &mut self.inner;
        let slot = if inner.indexed && inner.values.len() + inner.errors.len() < INDEX_LIMIT {
            // One probe for the common case, a key not seen yet.
            let next = Slot::Value(inner.values.len());
            let (values, errors) = (&inner.values, &inner.errors);
            let key = value.key();
            let existing = inner
                .index
                .find_or_insert(key, next.tag(), |tag| tag_is_key(values, errors, tag, key));
            match existing {
                None => {
                    inner.values.push(value);
                    return;
                }
                Some(tag) => Some(Slot::from_tag(tag)),
            }
        } else {
            inner.slot(value.key())
        };
        match slot {
            Some(Slot::Value(i)) => inner.values[i] = value,
            Some(Slot::Error(i)) => {
                inner.errors.remove(i);
                inner.values.push(value);
                inner.reindex();
            }
            None => inner.add_value(value),
        }
        inner.index_if_large(0);
    }

    /// Adds values in order, as [`push_value`](Self::push_value) would one
    /// at a time. When nothing was added before, the vector becomes the
    /// snapshot's storage: its values are not moved again.
    pub fn push_values(&mut self, values: Vec<SnapshotValue>) {
        let inner = &mut self.inner;
        if inner.values.is_empty() && inner.errors.is_empty() {
            inner.values = values;
            if inner.index_distinct_values() {
                return;
            }
            // A key repeats: a later value replaces an earlier one, which
            // assembling one at a time does.
            let values = std::mem::take(&mut inner.values);
            values.into_iter().for_each(|value| self.push_value(value));
        } else {
            values.into_iter().for_each(|value| self.push_value(value));
        }
    }

    /// Adds (or replaces) an error.
    pub fn push_error(&mut self, error: ResourceError) {
        let inner = &mut self.inner;
        match inner.slot(error.key()) {
            Some(Slot::Error(i)) => inner.errors[i] = error,
            Some(Slot::Value(i)) => {
                inner.values.remove(i);
                inner.errors.push(error);
                inner.reindex();
            }
            None => inner.add_error(error),
        }
        inner.index_if_large(0);
    }

    /// Removes a key entirely.
    pub fn remove(&mut self, key: &ResourceKey) {
        let inner = &mut self.inner;
        match inner.slot(key) {
            Some(Slot::Value(i)) => {
                inner.values.remove(i);
            }
            Some(Slot::Error(i)) => {
                inner.errors.remove(i);
            }
            None => return,
        }
        inner.reindex();
    }

    /// Adds a value (builder style).
    #[must_use]
    pub fn value(mut self, value: SnapshotValue) -> Self {
        self.push_value(value);
        self
    }

    /// Adds an error (builder style).
    #[must_use]
    pub fn error(mut self, error: ResourceError) -> Self {
        self.push_error(error);
        self
    }

    /// Attaches diagnostics.
    #[must_use]
    pub fn diagnostics(mut self, diagnostics: SnapshotDiagnostics) -> Self {
        self.inner.diagnostics = Some(diagnostics);
        self
    }

    /// Attaches caller metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.inner.metadata = metadata;
        self
    }

    /// Freezes the snapshot.
    pub fn finish(self) -> Snapshot {
        Snapshot(Arc::new(self.inner))
    }
}
