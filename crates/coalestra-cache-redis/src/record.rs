//! The stored record: one revision as a binary-safe Redis string.
//!
//! ```text
//! "C1" | strength (32 hex) | version (32 hex) | header length (8 hex) | header JSON | payload
//! ```
//!
//! The strength is what the write script compares: 16 hex digits of the
//! authority rank followed by 16 hex digits of `observed_at`, both mapped to
//! unsigned integers whose order is the order of the original values (`i64`
//! order for the rank, `f64::total_cmp` order for the time). Lowercase hex of
//! fixed width sorts byte-wise exactly like those integers, so the script
//! never converts a number and the comparison is exact for every rank and
//! every timestamp.
//!
//! The magic, strength and version together are the record's *signature*: a
//! conditional removal deletes a key only while its signature is unchanged.

use std::fmt::Write as _;

use coalestra_core::value::ValueParts;
use coalestra_core::{Metadata, MetadataValue, ResourceKey, SnapshotValue, Timestamp, Version};
use serde::{Deserialize, Serialize};

use crate::codec::{decode_guarded, encode_guarded, CodecError, PayloadCodec};

/// The format marker every record starts with.
pub(crate) const MAGIC: &[u8] = b"C1";
const STRENGTH_LEN: usize = 32;
const VERSION_LEN: usize = 32;
const HEADER_LEN_LEN: usize = 8;
/// Magic, strength and version: what identifies one stored revision.
pub(crate) const SIGNATURE_LEN: usize = MAGIC.len() + STRENGTH_LEN + VERSION_LEN;
const FIXED_LEN: usize = SIGNATURE_LEN + HEADER_LEN_LEN;

/// The unsigned image of a rank, ordered like the rank.
fn rank_key(rank: i64) -> u64 {
    (rank as u64) ^ (1 << 63)
}

/// The unsigned image of a time, ordered like `f64::total_cmp`.
fn time_key(secs: f64) -> u64 {
    let bits = secs.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The 32-hex-digit strength compared by the write script.
pub(crate) fn strength(rank: i64, observed_at: Timestamp) -> String {
    format!(
        "{:016x}{:016x}",
        rank_key(rank),
        time_key(observed_at.as_secs())
    )
}

/// A metadata value with its kind kept explicit (floats as their bits), so
/// every value comes back exactly as it was written.
#[derive(Debug, Serialize, Deserialize)]
enum StoredMeta {
    #[serde(rename = "s")]
    Text(String),
    #[serde(rename = "b")]
    Bool(bool),
    #[serde(rename = "i")]
    Int(i64),
    #[serde(rename = "f")]
    Float(u64),
}

/// Everything about a revision but its version and payload.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    source: String,
    observed_at: f64,
    rank: i64,
    #[serde(default)]
    metadata: Vec<(String, StoredMeta)>,
    #[serde(default)]
    deps: Vec<(String, String)>,
    codec: String,
}

/// Encodes a revision with `codec`.
pub(crate) fn encode(
    value: &SnapshotValue,
    codec: &dyn PayloadCodec,
) -> Result<Vec<u8>, CodecError> {
    let payload = encode_guarded(codec, value.payload())?;
    let metadata = value
        .metadata()
        .iter()
        .filter_map(|(name, v)| {
            let stored = match v {
                MetadataValue::Text(t) => StoredMeta::Text(t.to_string()),
                MetadataValue::Bool(b) => StoredMeta::Bool(*b),
                MetadataValue::Int(i) => StoredMeta::Int(*i),
                MetadataValue::Float(f) => StoredMeta::Float(f.to_bits()),
                // A kind added to core later is not shared until supported.
                _ => return None,
            };
            Some((name.to_owned(), stored))
        })
        .collect();
    let deps = value
        .dependency_versions()
        .iter()
        .map(|(key, version)| (key.to_string(), version.to_string()))
        .collect();
    let header = Header {
        source: value.source().to_owned(),
        observed_at: value.observed_at().as_secs(),
        rank: value.authority_rank(),
        metadata,
        deps,
        codec: codec.format().to_owned(),
    };
    let header = serde_json::to_vec(&header).map_err(|e| CodecError::Encode(e.to_string()))?;
    let header_len = u32::try_from(header.len())
        .map_err(|_| CodecError::Encode("record header too large".into()))?;
    let mut fixed = String::with_capacity(FIXED_LEN);
    fixed.push_str("C1");
    fixed.push_str(&strength(value.authority_rank(), value.observed_at()));
    let _ = write!(fixed, "{}{header_len:08x}", value.version());
    let mut out = Vec::with_capacity(FIXED_LEN + header.len() + payload.len());
    out.extend_from_slice(fixed.as_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// A parsed record; the payload stays encoded until it is needed.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    version: Version,
    header: Header,
    dependencies: Vec<(ResourceKey, Version)>,
    payload: &'a [u8],
}

fn malformed(reason: &str) -> CodecError {
    CodecError::Record(reason.to_owned())
}

fn parse_hex_u128(text: &[u8]) -> Option<u128> {
    u128::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

/// The signature of a stored record (its first bytes), if well formed.
pub(crate) fn signature(bytes: &[u8]) -> Option<&[u8]> {
    (bytes.len() >= FIXED_LEN && bytes.starts_with(MAGIC)).then(|| &bytes[..SIGNATURE_LEN])
}

/// Parses everything but the payload.
pub(crate) fn parse(bytes: &[u8]) -> Result<Record<'_>, CodecError> {
    if bytes.len() < FIXED_LEN || !bytes.starts_with(MAGIC) {
        return Err(malformed("unknown record format"));
    }
    let version_at = MAGIC.len() + STRENGTH_LEN;
    let version = parse_hex_u128(&bytes[version_at..SIGNATURE_LEN])
        .map(Version::from_raw)
        .ok_or_else(|| malformed("invalid version"))?;
    let header_len = parse_hex_u128(&bytes[SIGNATURE_LEN..FIXED_LEN])
        .and_then(|len| usize::try_from(len).ok())
        .ok_or_else(|| malformed("invalid header length"))?;
    let header_end = FIXED_LEN
        .checked_add(header_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| malformed("truncated header"))?;
    let header: Header = serde_json::from_slice(&bytes[FIXED_LEN..header_end])
        .map_err(|e| CodecError::Record(e.to_string()))?;
    if !header.observed_at.is_finite() {
        return Err(malformed("observed_at is not finite"));
    }
    let dependencies = header
        .deps
        .iter()
        .map(|(key, version)| {
            let key = ResourceKey::parse(key).map_err(|e| CodecError::Record(e.to_string()))?;
            let version = parse_hex_u128(version.as_bytes())
                .map(Version::from_raw)
                .ok_or_else(|| malformed("invalid dependency version"))?;
            Ok((key, version))
        })
        .collect::<Result<Vec<_>, CodecError>>()?;
    Ok(Record {
        version,
        header,
        dependencies,
        payload: &bytes[header_end..],
    })
}

impl Record<'_> {
    /// The revision's version.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// When the revision was observed.
    pub(crate) fn observed_at(&self) -> Timestamp {
        Timestamp::from_secs(self.header.observed_at)
    }

    /// The dependency versions a derived revision was computed from.
    pub(crate) fn dependencies(&self) -> &[(ResourceKey, Version)] {
        &self.dependencies
    }

    /// Decodes the payload and rebuilds the revision under `key`.
    pub(crate) fn into_value(
        self,
        key: ResourceKey,
        codec: &dyn PayloadCodec,
    ) -> Result<SnapshotValue, CodecError> {
        if self.header.codec != codec.format() {
            return Err(CodecError::FormatMismatch {
                expected: codec.format().to_owned(),
                found: self.header.codec,
            });
        }
        let payload = decode_guarded(codec, self.payload)?;
        let metadata: Metadata = self
            .header
            .metadata
            .into_iter()
            .map(|(name, value)| {
                let value = match value {
                    StoredMeta::Text(t) => MetadataValue::from(t),
                    StoredMeta::Bool(b) => MetadataValue::from(b),
                    StoredMeta::Int(i) => MetadataValue::from(i),
                    StoredMeta::Float(bits) => MetadataValue::from(f64::from_bits(bits)),
                };
                (name, value)
            })
            .collect();
        let mut parts = ValueParts::new(
            key,
            payload,
            self.header.source,
            Timestamp::from_secs(self.header.observed_at),
        );
        parts.metadata = metadata;
        parts.authority_rank = self.header.rank;
        parts.version = Some(self.version);
        parts.dependency_versions = self.dependencies;
        Ok(SnapshotValue::from_parts(parts))
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use coalestra_core::Payload;

    use super::*;
    use crate::codec::JsonCodec;

    #[test]
    fn strength_orders_like_rank_then_total_time() {
        let ranks = [i64::MIN, -7, -1, 0, 1, 42, i64::MAX];
        for a in ranks {
            for b in ranks {
                assert_eq!(rank_key(a).cmp(&rank_key(b)), a.cmp(&b), "{a} {b}");
            }
        }
        let times = [
            -1.0e12,
            -1.5,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            1_700_000_000.123_456,
            1.0e12,
        ];
        for a in times {
            for b in times {
                let expected: Ordering = a.total_cmp(&b);
                let hex_a = strength(0, Timestamp::from_secs(a));
                let hex_b = strength(0, Timestamp::from_secs(b));
                assert_eq!(hex_a.as_bytes().cmp(hex_b.as_bytes()), expected, "{a} {b}");
            }
        }
    }

    #[test]
    fn round_trip_keeps_every_part() {
        let key = ResourceKey::new("market", "price", "BTC:USD?x").unwrap();
        let dep = ResourceKey::new("market", "rate", "EUR").unwrap();
        let mut parts = ValueParts::new(
            key.clone(),
            Payload::new(12.5_f64),
            "feed",
            Timestamp::from_secs(-0.0),
        );
        parts.authority_rank = -3;
        parts.metadata = Metadata::new()
            .with("text", "a\nb")
            .with("flag", true)
            .with("int", -4_i64)
            .with("float", f64::NAN);
        parts.dependency_versions = vec![(dep.clone(), Version::from_raw(u128::MAX))];
        let value = SnapshotValue::from_parts(parts);
        let codec = JsonCodec::<f64>::new();
        let bytes = encode(&value, &codec).unwrap();
        assert!(signature(&bytes).is_some());
        let record = parse(&bytes).unwrap();
        assert_eq!(record.version(), value.version());
        assert_eq!(record.dependencies()[0].0, dep);
        let back = record.into_value(key.clone(), &codec).unwrap();
        assert_eq!(back.key(), &key);
        assert_eq!(*back.value::<f64>().unwrap(), 12.5);
        assert_eq!(back.source(), "feed");
        assert_eq!(back.authority_rank(), -3);
        assert!(back.observed_at().as_secs().is_sign_negative());
        assert_eq!(back.metadata().get("text").unwrap().as_str(), Some("a\nb"));
        assert_eq!(back.metadata().get("int"), Some(&MetadataValue::Int(-4)));
        assert!(back
            .metadata()
            .get("float")
            .unwrap()
            .as_f64()
            .unwrap()
            .is_nan());
        assert_eq!(back.dependency_versions(), value.dependency_versions());
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(parse(b"").is_err());
        assert!(parse(b"XX").is_err());
        let mut bytes = encode(
            &SnapshotValue::from_parts(ValueParts::new(
                ResourceKey::new("a", "b", "").unwrap(),
                Payload::new(1_u8),
                "s",
                Timestamp::from_secs(1.0),
            )),
            &JsonCodec::<u8>::new(),
        )
        .unwrap();
        bytes.truncate(FIXED_LEN + 3);
        assert!(parse(&bytes).is_err());
        let codec = JsonCodec::<String>::new();
        let good = encode(
            &SnapshotValue::from_parts(ValueParts::new(
                ResourceKey::new("a", "b", "").unwrap(),
                Payload::new(String::from("x")),
                "s",
                Timestamp::from_secs(1.0),
            )),
            &codec,
        )
        .unwrap();
        let wrong = JsonCodec::<u8>::new();
        let err = parse(&good)
            .unwrap()
            .into_value(ResourceKey::new("a", "b", "").unwrap(), &wrong)
            .unwrap_err();
        assert!(matches!(err, CodecError::Decode(_)), "{err}");
    }
}
