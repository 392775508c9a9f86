//! Batch writes: one call of the write script for every shared candidate.
//!
//! Candidates of one key are sent in the memory cache's decision order
//! (ordinary candidates strongest first, then forced candidates weakest
//! first), so the script's sequential decisions leave the same winner as the
//! memory cache whatever the input order. The script returns, per key, the
//! revision stored before the batch, the candidate left stored and each
//! candidate's outcome; the results are rebuilt from those.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use coalestra_core::{
    CacheError, CacheWrite, ResourceKey, SnapshotCache, SnapshotValue, WriteOutcome, WriteResult,
};
use redis::Value;

use super::Inner;
use crate::codec::CodecError;
use crate::record;
use crate::scripts::scripts;
use crate::stats::bump;

/// Windows longer than this (about 2 200 years) are stored without a TTL.
const MAX_TTL_MS: u128 = 1 << 46;

/// The server TTL for a stale window: `max_stale` in milliseconds (at least
/// one), or 0 for no expiry.
pub(crate) fn ttl_millis(max_stale: Duration) -> u64 {
    let ms = max_stale.as_millis();
    if max_stale == Duration::MAX || ms > MAX_TTL_MS {
        0
    } else {
        u64::try_from(ms.max(1)).unwrap_or(0)
    }
}

/// One key's candidates, in decision order.
struct Group {
    key: ResourceKey,
    ordered: Vec<usize>,
}

/// What the script reported for one key.
struct GroupReply {
    original: Option<Vec<u8>>,
    winner: usize,
    codes: Vec<u8>,
}

pub(super) async fn write_many(
    inner: &Inner,
    writes: Vec<CacheWrite>,
) -> Result<Vec<WriteResult>, CacheError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let mut results: Vec<Option<WriteResult>> = vec![None; writes.len()];
    let mut records: Vec<Option<Vec<u8>>> = vec![None; writes.len()];
    let mut local: Vec<usize> = Vec::new();
    for (index, write) in writes.iter().enumerate() {
        let key = write.value.key();
        let Some(codec) = inner.codecs.codec_for(key) else {
            bump(&inner.counters.local_only_writes, 1);
            local.push(index);
            continue;
        };
        match record::encode(&write.value, codec.as_ref()) {
            Ok(bytes) => records[index] = Some(bytes),
            Err(error) => {
                inner.encode_failed(key, &error);
                bump(&inner.counters.local_only_writes, 1);
                local.push(index);
            }
        }
    }
    if !local.is_empty() {
        let local_writes: Vec<CacheWrite> = local.iter().map(|&i| writes[i].clone()).collect();
        let local_results = inner.local.write_many(local_writes).await?;
        for (&i, result) in local.iter().zip(local_results) {
            results[i] = Some(result);
        }
    }
    let shared: Vec<usize> = (0..writes.len())
        .filter(|&i| records[i].is_some())
        .collect();
    if !shared.is_empty() {
        let groups = group_by_key(&writes, &shared);
        let replies = run_script(inner, &writes, &mut records, &groups).await?;
        for (group, reply) in groups.iter().zip(replies) {
            rebuild(inner, &writes, group, reply, &mut results)?;
        }
    }
    Ok(results.into_iter().flatten().collect())
}

/// Groups the shared candidates by key (first-occurrence order), each group
/// in decision order.
fn group_by_key(writes: &[CacheWrite], shared: &[usize]) -> Vec<Group> {
    let mut slots: HashMap<&ResourceKey, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for &index in shared {
        let key = writes[index].value.key();
        match slots.get(key) {
            Some(&slot) => groups[slot].ordered.push(index),
            None => {
                slots.insert(key, groups.len());
                groups.push(Group {
                    key: key.clone(),
                    ordered: vec![index],
                });
            }
        }
    }
    for group in &mut groups {
        sort_for_decision(writes, &mut group.ordered);
    }
    groups
}

/// Ordinary candidates first, strongest first; then forced candidates,
/// weakest first (so the strongest forced one is left stored). Ties keep
/// their input order.
fn sort_for_decision(writes: &[CacheWrite], indices: &mut [usize]) {
    let compare = |a: usize, b: usize| {
        let (va, vb) = (&writes[a].value, &writes[b].value);
        va.authority_rank()
            .cmp(&vb.authority_rank())
            .then_with(|| va.observed_at().total_cmp(&vb.observed_at()))
    };
    indices.sort_by(|&a, &b| match (writes[a].force, writes[b].force) {
        (false, true) => Ordering::Less,
        (true, false) => Ordering::Greater,
        (false, false) => compare(b, a),
        (true, true) => compare(a, b),
    });
}

async fn run_script(
    inner: &Inner,
    writes: &[CacheWrite],
    records: &mut [Option<Vec<u8>>],
    groups: &[Group],
) -> Result<Vec<GroupReply>, CacheError> {
    let mut invocation = scripts().write.prepare_invoke();
    invocation
        .arg(inner.publish_channel.as_str())
        .arg(inner.instance_id.as_ref())
        .arg(groups.len());
    for group in groups {
        let key = &group.key;
        let ttl = ttl_millis(inner.policies.resolve(key).max_stale());
        invocation
            .key(inner.keys.data(key))
            .key(inner.keys.set(key.namespace()));
        invocation
            .arg(ttl)
            .arg(key.to_string())
            .arg(key.namespace())
            .arg(group.ordered.len());
        for &index in &group.ordered {
            let write = &writes[index];
            let flags = match (write.force, write.replace_equal) {
                (false, false) => "00",
                (false, true) => "01",
                (true, false) => "10",
                (true, true) => "11",
            };
            let record = records[index].take().unwrap_or_default();
            invocation.arg(flags).arg(record);
        }
    }
    invocation.key(inner.keys.index.as_str());
    let reply: Value = inner
        .link
        .run("write", |mut connection| async move {
            invocation.invoke_async(&mut connection).await
        })
        .await?;
    parse_reply(reply, groups)
}

fn protocol(reason: &str) -> CacheError {
    CacheError::Unavailable(format!("redis write returned {reason}"))
}

fn parse_reply(reply: Value, groups: &[Group]) -> Result<Vec<GroupReply>, CacheError> {
    let Value::Array(items) = reply else {
        return Err(protocol("a non-array reply"));
    };
    if items.len() != groups.len() * 3 {
        return Err(protocol("an unexpected number of items"));
    }
    let mut replies = Vec::with_capacity(groups.len());
    let mut items = items.into_iter();
    for group in groups {
        let (Some(original), Some(winner), Some(codes)) =
            (items.next(), items.next(), items.next())
        else {
            return Err(protocol("a truncated reply"));
        };
        let original = match original {
            Value::Nil => None,
            Value::BulkString(bytes) => Some(bytes),
            _ => return Err(protocol("an invalid stored record")),
        };
        let winner = match winner {
            Value::Int(i) => usize::try_from(i).map_err(|_| protocol("an invalid winner"))?,
            _ => return Err(protocol("an invalid winner")),
        };
        let codes = match codes {
            Value::BulkString(bytes) => bytes,
            Value::SimpleString(text) => text.into_bytes(),
            _ => return Err(protocol("invalid outcomes")),
        };
        if codes.len() != group.ordered.len() || winner > group.ordered.len() {
            return Err(protocol("outcomes not matching the candidates"));
        }
        replies.push(GroupReply {
            original,
            winner,
            codes,
        });
    }
    Ok(replies)
}

fn outcome(code: u8) -> Result<WriteOutcome, CacheError> {
    match code {
        b'S' => Ok(WriteOutcome::Stored),
        b'L' => Ok(WriteOutcome::IgnoredLowerAuthority),
        b'O' => Ok(WriteOutcome::IgnoredOlder),
        b'D' => Ok(WriteOutcome::IgnoredDuplicate),
        _ => Err(protocol("an unknown outcome")),
    }
}

/// Rebuilds one key's results from the script's reply.
fn rebuild(
    inner: &Inner,
    writes: &[CacheWrite],
    group: &Group,
    reply: GroupReply,
    results: &mut [Option<WriteResult>],
) -> Result<(), CacheError> {
    // The revision stored before the batch, decoded only when a result
    // needs it. A record that is absent or unreadable by the script counts
    // as no previous revision (the script stored over it).
    let original: Option<Result<SnapshotValue, CodecError>> =
        reply.original.as_deref().map(|bytes| {
            let codec = inner
                .codecs
                .codec_for(&group.key)
                .ok_or_else(|| CodecError::Decode("no codec".into()))?;
            record::parse(bytes)?.into_value(group.key.clone(), codec.as_ref())
        });
    let undecodable = |error: &CodecError| {
        inner.decode_failed(&group.key, error);
        CacheError::Codec(format!(
            "stored revision of {} could not be decoded: {error}",
            group.key
        ))
    };
    let current: SnapshotValue = if reply.winner > 0 {
        writes[group.ordered[reply.winner - 1]].value.clone()
    } else {
        match &original {
            Some(Ok(value)) => value.clone(),
            Some(Err(error)) => return Err(undecodable(error)),
            None => return Err(protocol("no stored revision and no winner")),
        }
    };
    let mut last_stored: Option<usize> = None;
    for (&index, &code) in group.ordered.iter().zip(&reply.codes) {
        let decided = outcome(code)?;
        let previous = match last_stored {
            Some(stored) => Some(writes[stored].value.clone()),
            None => match &original {
                Some(Ok(value)) => Some(value.clone()),
                // An ignored candidate must name what it lost to.
                Some(Err(error)) if !decided.is_stored() => return Err(undecodable(error)),
                _ => None,
            },
        };
        if decided.is_stored() {
            last_stored = Some(index);
        }
        inner.counters.write(decided);
        results[index] = Some(WriteResult {
            outcome: decided,
            previous,
            current: current.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_follows_max_stale() {
        assert_eq!(ttl_millis(Duration::from_secs(30)), 30_000);
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_micros(10)), 1);
        assert_eq!(ttl_millis(Duration::MAX), 0);
        assert_eq!(ttl_millis(Duration::from_secs(u64::MAX / 2)), 0);
    }
}
