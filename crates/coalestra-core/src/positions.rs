//! [`KeyPositions`]: where each resource key sits in a list its owner keeps.
//!
//! Snapshots and requests keep their entries in order in a `Vec` and need to
//! find a key's entry quickly. A general hash map from key to position would
//! clone every key into the map (a reference count up and, later, down) and
//! hash through the `Hash` machinery. This index stores only a position and
//! 32 bits of the key's precomputed hash per entry: keys stay in the owner's
//! list, and the owner confirms a candidate position by comparing the key
//! found there.
//!
//! The table uses open addressing with linear probing and stays at most half
//! full, so a probe for an absent key ends after a couple of entries.

use crate::key::ResourceKey;

/// An index from keys to positions (`u32` tags chosen by the owner).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyPositions {
    /// `0` for an empty entry; otherwise the upper 32 bits are the key's
    /// hash check and the lower 32 bits are the owner's tag plus one.
    entries: Vec<u64>,
    len: usize,
}

/// The largest tag an entry can hold.
pub(crate) const MAX_TAG: u32 = u32::MAX - 1;

/// The 32 bits of a key's hash that the index keeps: they pick the first
/// bucket and screen candidates before the owner compares keys.
fn check_of(key: &ResourceKey) -> u32 {
    // The upper half: the key's hash is SipHash output, well mixed in
    // every bit, and the lower half stays free for other maps' buckets.
    (key.precomputed_hash() >> 32) as u32
}

fn pack(check: u32, tag: u32) -> u64 {
    (u64::from(check) << 32) | u64::from(tag + 1)
}

fn check_bits(entry: u64) -> u32 {
    (entry >> 32) as u32
}

fn tag_bits(entry: u64) -> u32 {
    (entry as u32) - 1
}

impl KeyPositions {
    /// The number of keys indexed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Makes room for `additional` more keys without growing again.
    #[inline]
    pub(crate) fn reserve(&mut self, additional: usize) {
        let needed = self.len.saturating_add(additional).saturating_mul(2);
        if needed > self.entries.len() {
            self.grow(needed);
        }
    }

    /// Forgets every key, keeping the allocation.
    pub(crate) fn clear(&mut self) {
        if self.len > 0 {
            self.entries.fill(0);
            self.len = 0;
        }
    }

    /// The tag of `key`, judged by `is_key` on candidate tags.
    #[inline]
    pub(crate) fn find(&self, key: &ResourceKey, is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        self.probe(check_of(key), is_key).ok()
    }

    /// The tag already recorded for `key`, or `None` after recording `tag`
    /// for it.
    #[inline]
    pub(crate) fn find_or_insert(
        &mut self,
        key: &ResourceKey,
        tag: u32,
        is_key: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        debug_assert!(tag <= MAX_TAG, "tag out of range");
        self.reserve(1);
        let check = check_of(key);
        match self.probe(check, is_key) {
            Ok(existing) => Some(existing),
            Err(free) => {
                self.entries[free] = pack(check, tag);
                self.len += 1;
                None
            }
        }
    }

    /// Records `tag` for a key the caller knows is absent.
    pub(crate) fn insert_absent(&mut self, key: &ResourceKey, tag: u32) {
        debug_assert!(tag <= MAX_TAG, "tag out of range");
        self.reserve(1);
        let check = check_of(key);
        let free = self.free_bucket(check);
        self.entries[free] = pack(check, tag);
        self.len += 1;
    }

    /// `Ok(tag)` for a matching entry, or `Err(bucket)`: the free bucket
    /// where the key would go.
    #[inline]
    fn probe(&self, check: u32, mut is_key: impl FnMut(u32) -> bool) -> Result<u32, usize> {
        let mask = self.entries.len() - 1;
        let mut at = check as usize & mask;
        loop {
            let entry = self.entries[at];
            if entry == 0 {
                return Err(at);
            }
            if check_bits(entry) == check && is_key(tag_bits(entry)) {
                return Ok(tag_bits(entry));
            }
            at = (at + 1) & mask;
        }
    }

    /// The free bucket where an entry with `check` goes.
    fn free_bucket(&self, check: u32) -> usize {
        let mask = self.entries.len() - 1;
        let mut at = check as usize & mask;
        while self.entries[at] != 0 {
            at = (at + 1) & mask;
        }
        at
    }

    #[cold]
    fn grow(&mut self, needed: usize) {
        let capacity = needed.next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.entries, vec![0; capacity]);
        for entry in old.into_iter().filter(|&e| e != 0) {
            let free = self.free_bucket(check_bits(entry));
            self.entries[free] = entry;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<ResourceKey> {
        (0..n)
            .map(|i| ResourceKey::new("ns", "item", format!("k{i}")).expect("valid key"))
            .collect()
    }

    #[test]
    fn finds_every_inserted_key_and_nothing_else() {
        let keys = keys(1_000);
        let mut index = KeyPositions::default();
        for (i, key) in keys.iter().enumerate().take(600) {
            let tag = i as u32;
            assert_eq!(
                index.find_or_insert(key, tag, |t| keys[t as usize] == *key),
                None
            );
        }
        assert_eq!(index.len(), 600);
        for (i, key) in keys.iter().enumerate() {
            let found = index.find(key, |t| keys[t as usize] == *key);
            assert_eq!(found, (i < 600).then_some(i as u32), "key {i}");
        }
    }

    #[test]
    fn a_second_insert_reports_the_first_tag() {
        let keys = keys(3);
        let mut index = KeyPositions::default();
        assert_eq!(index.find_or_insert(&keys[1], 7, |_| true), None);
        let twin = ResourceKey::new("ns", "item", "k1").expect("valid key");
        assert_eq!(index.find_or_insert(&twin, 9, |t| t == 7), Some(7));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn clear_forgets_every_key() {
        let keys = keys(20);
        let mut index = KeyPositions::default();
        index.reserve(keys.len());
        for (i, key) in keys.iter().enumerate() {
            index.insert_absent(key, i as u32);
        }
        assert_eq!(index.find(&keys[5], |t| t == 5), Some(5));
        assert_eq!(index.find(&keys[5], |t| t == 6), None);
        index.clear();
        assert_eq!(index.len(), 0);
        assert_eq!(index.find(&keys[3], |_| true), None);
    }

    #[test]
    fn the_largest_tag_round_trips() {
        let keys = keys(1);
        let mut index = KeyPositions::default();
        index.insert_absent(&keys[0], MAX_TAG);
        assert_eq!(index.find(&keys[0], |_| true), Some(MAX_TAG));
    }
}
