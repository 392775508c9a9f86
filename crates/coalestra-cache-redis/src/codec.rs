//! Payload codecs: how a [`Payload`] crosses a process boundary.
//!
//! A payload is a type-erased Rust value, so a shared tier needs to be told,
//! per resource type (`namespace`, `name`), how to turn it into bytes and
//! back. [`CodecRegistry`] holds one [`PayloadCodec`] per resource type;
//! [`JsonCodec`] (serde JSON) is the default and [`RawBytesCodec`] stores
//! already-encoded bytes (`Vec<u8>` payloads) untouched, for compact binary
//! formats produced by the caller.
//!
//! A resource type without a codec is never sent to Redis: its values stay in
//! the local tier.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use coalestra_core::{Payload, ResourceKey};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload is not of the type the codec handles.
    #[error("payload type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// The type the codec handles.
        expected: &'static str,
        /// The payload's type.
        found: &'static str,
    },
    /// The stored record was written with another codec format.
    #[error("codec format mismatch: expected {expected:?}, found {found:?}")]
    FormatMismatch {
        /// This process's format for the resource type.
        expected: String,
        /// The format named by the stored record.
        found: String,
    },
    /// Serialization failed.
    #[error("payload encoding failed: {0}")]
    Encode(String),
    /// Deserialization failed.
    #[error("payload decoding failed: {0}")]
    Decode(String),
    /// The stored record itself is malformed.
    #[error("malformed cache record: {0}")]
    Record(String),
}

/// Turns the payloads of one resource type into bytes and back.
///
/// Implementations must not block. A panic inside [`PayloadCodec::encode`] or
/// [`PayloadCodec::decode`] is caught and treated as a codec error.
pub trait PayloadCodec: Send + Sync + fmt::Debug {
    /// A short, stable name stored with every record (for example `json`);
    /// a record written under another format is never decoded.
    fn format(&self) -> &str;

    /// Encodes a payload.
    fn encode(&self, payload: &Payload) -> Result<Vec<u8>, CodecError>;

    /// Decodes bytes produced by [`PayloadCodec::encode`].
    fn decode(&self, bytes: &[u8]) -> Result<Payload, CodecError>;
}

/// Serde JSON for payloads of type `T`.
///
/// ```
/// use coalestra_cache_redis::{JsonCodec, PayloadCodec};
/// use coalestra_core::Payload;
///
/// let codec = JsonCodec::<Vec<u32>>::new();
/// let bytes = codec.encode(&Payload::new(vec![1_u32, 2, 3]))?;
/// assert_eq!(bytes, b"[1,2,3]");
/// let back = codec.decode(&bytes)?;
/// assert_eq!(back.get::<Vec<u32>>().unwrap(), &vec![1, 2, 3]);
/// # Ok::<(), coalestra_cache_redis::CodecError>(())
/// ```
pub struct JsonCodec<T> {
    marker: PhantomData<fn() -> T>,
}

impl<T> JsonCodec<T> {
    /// A JSON codec for `T`.
    pub fn new() -> Self {
        Self {
            marker: PhantomData,
        }
    }
}

impl<T> Default for JsonCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonCodec<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for JsonCodec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonCodec<{}>", std::any::type_name::<T>())
    }
}

impl<T> PayloadCodec for JsonCodec<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn format(&self) -> &str {
        "json"
    }

    fn encode(&self, payload: &Payload) -> Result<Vec<u8>, CodecError> {
        let value = typed::<T>(payload)?;
        serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string()))
    }

    fn decode(&self, bytes: &[u8]) -> Result<Payload, CodecError> {
        serde_json::from_slice::<T>(bytes)
            .map(Payload::new)
            .map_err(|e| CodecError::Decode(e.to_string()))
    }
}

/// Stores `Vec<u8>` payloads as they are: for values the caller already
/// encodes in a compact binary format.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytesCodec;

impl PayloadCodec for RawBytesCodec {
    fn format(&self) -> &str {
        "raw"
    }

    fn encode(&self, payload: &Payload) -> Result<Vec<u8>, CodecError> {
        typed::<Vec<u8>>(payload).cloned()
    }

    fn decode(&self, bytes: &[u8]) -> Result<Payload, CodecError> {
        Ok(Payload::new(bytes.to_vec()))
    }
}

fn typed<T: Any>(payload: &Payload) -> Result<&T, CodecError> {
    payload.get::<T>().map_err(|_| CodecError::TypeMismatch {
        expected: std::any::type_name::<T>(),
        found: payload.type_name(),
    })
}

/// The codecs of every shared resource type, keyed by (`namespace`, `name`).
///
/// Clones share the codecs.
///
/// ```
/// use coalestra_cache_redis::CodecRegistry;
/// use coalestra_core::ResourceKey;
///
/// let codecs = CodecRegistry::new()
///     .with_json::<f64>("market", "price")
///     .with_json::<Vec<String>>("market", "symbols");
/// let key = ResourceKey::new("market", "price", "BTCUSDT")?;
/// assert!(codecs.codec_for(&key).is_some());
/// assert!(codecs.codec_for(&ResourceKey::new("market", "book", "BTCUSDT")?).is_none());
/// # Ok::<(), coalestra_core::KeyError>(())
/// ```
#[derive(Clone, Default)]
pub struct CodecRegistry {
    by_type: HashMap<Box<str>, CodecsByName>,
}

/// The codecs of one namespace, by resource name.
type CodecsByName = HashMap<Box<str>, Arc<dyn PayloadCodec>>;

impl CodecRegistry {
    /// An empty registry: every value stays local.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers serde JSON for the payloads (`T`) of one resource type.
    #[must_use]
    pub fn with_json<T>(self, namespace: &str, name: &str) -> Self
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.with_codec(namespace, name, Arc::new(JsonCodec::<T>::new()))
    }

    /// Registers a codec for one resource type (replacing any previous one).
    #[must_use]
    pub fn with_codec(mut self, namespace: &str, name: &str, codec: Arc<dyn PayloadCodec>) -> Self {
        self.by_type
            .entry(namespace.into())
            .or_default()
            .insert(name.into(), codec);
        self
    }

    /// The codec of `key`'s resource type, if one is registered.
    pub fn codec_for(&self, key: &ResourceKey) -> Option<&Arc<dyn PayloadCodec>> {
        self.by_type.get(key.namespace())?.get(key.name())
    }

    /// Whether values of `key`'s resource type are shared through Redis.
    pub fn is_shared(&self, key: &ResourceKey) -> bool {
        self.codec_for(key).is_some()
    }

    /// The number of registered resource types.
    pub fn len(&self) -> usize {
        self.by_type.values().map(HashMap::len).sum()
    }

    /// Whether no codec is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for CodecRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<String> = self
            .by_type
            .iter()
            .flat_map(|(ns, names)| names.keys().map(move |name| format!("{ns}:{name}")))
            .collect();
        types.sort();
        f.debug_struct("CodecRegistry")
            .field("types", &types)
            .finish()
    }
}

/// Encodes, turning a panicking codec into an error.
pub(crate) fn encode_guarded(
    codec: &dyn PayloadCodec,
    payload: &Payload,
) -> Result<Vec<u8>, CodecError> {
    catch_unwind(AssertUnwindSafe(|| codec.encode(payload)))
        .unwrap_or_else(|_| Err(CodecError::Encode("codec panicked".into())))
}

/// Decodes, turning a panicking codec into an error.
pub(crate) fn decode_guarded(
    codec: &dyn PayloadCodec,
    bytes: &[u8],
) -> Result<Payload, CodecError> {
    catch_unwind(AssertUnwindSafe(|| codec.decode(bytes)))
        .unwrap_or_else(|_| Err(CodecError::Decode("codec panicked".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Panicking;

    impl PayloadCodec for Panicking {
        fn format(&self) -> &str {
            "panics"
        }
        fn encode(&self, _: &Payload) -> Result<Vec<u8>, CodecError> {
            panic!("boom")
        }
        fn decode(&self, _: &[u8]) -> Result<Payload, CodecError> {
            panic!("boom")
        }
    }

    #[test]
    fn json_rejects_other_types_and_bad_bytes() {
        let codec = JsonCodec::<u64>::new();
        assert!(matches!(
            codec.encode(&Payload::new("text")),
            Err(CodecError::TypeMismatch { .. })
        ));
        assert!(matches!(codec.decode(b"{"), Err(CodecError::Decode(_))));
    }

    #[test]
    fn raw_bytes_round_trip() {
        let bytes = RawBytesCodec
            .encode(&Payload::new(vec![0_u8, 255]))
            .unwrap();
        let back = RawBytesCodec.decode(&bytes).unwrap();
        assert_eq!(back.get::<Vec<u8>>().unwrap(), &vec![0_u8, 255]);
    }

    #[test]
    fn panics_become_errors() {
        let encoded = encode_guarded(&Panicking, &Payload::new(1_u8));
        let decoded = decode_guarded(&Panicking, b"x");
        assert!(matches!(encoded, Err(CodecError::Encode(_))));
        assert!(matches!(decoded, Err(CodecError::Decode(_))));
    }
}
