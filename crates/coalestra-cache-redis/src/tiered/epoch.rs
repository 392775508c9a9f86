//! Change epochs: how an L1 fill learns that the key changed meanwhile.
//!
//! Every L1 fill follows the same protocol: take a [`Stamp`] before asking
//! L2, skip the fill when the stamp is already stale, fill, then check the
//! stamp again and drop the entry when it changed in between. Everything
//! that changes a key (a local write before and after its L2 call, a local
//! invalidation, a notification from another replica) bumps the key's slot
//! (or every slot) *before* touching L1. So a fill racing with a change
//! either sees the bump and drops its entry, or lands before the change,
//! which then removes or replaces it: a superseded revision never stays in
//! L1.
//!
//! Keys share a fixed number of slots by hash, so the table is bounded; a
//! collision only costs a skipped fill.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use coalestra_core::ResourceKey;

const SLOTS: usize = 1024;

/// A key's change epoch at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    global: u64,
    slot: u64,
    index: usize,
}

/// Per-slot change counters plus one counter for whole-cache changes.
#[derive(Debug)]
pub(crate) struct EpochTable {
    global: AtomicU64,
    slots: Box<[AtomicU64]>,
}

impl EpochTable {
    pub(crate) fn new() -> Self {
        Self {
            global: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(key: &ResourceKey) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % SLOTS as u64) as usize
    }

    /// The key's current epoch.
    pub(crate) fn stamp(&self, key: &ResourceKey) -> Stamp {
        let index = Self::index(key);
        Stamp {
            global: self.global.load(Ordering::SeqCst),
            slot: self.slots[index].load(Ordering::SeqCst),
            index,
        }
    }

    /// Records a change of `key`; returns the epoch after it.
    pub(crate) fn bump(&self, key: &ResourceKey) -> Stamp {
        let index = Self::index(key);
        let slot = self.slots[index].fetch_add(1, Ordering::SeqCst) + 1;
        Stamp {
            global: self.global.load(Ordering::SeqCst),
            slot,
            index,
        }
    }

    /// Records a change of every key.
    pub(crate) fn bump_all(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether nothing changed since `stamp` was taken.
    pub(crate) fn unchanged(&self, stamp: Stamp) -> bool {
        self.global.load(Ordering::SeqCst) == stamp.global
            && self.slots[stamp.index].load(Ordering::SeqCst) == stamp.slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_invalidate_stamps() {
        let table = EpochTable::new();
        let key = ResourceKey::new("a", "b", "c").unwrap();
        let stamp = table.stamp(&key);
        assert!(table.unchanged(stamp));
        let after = table.bump(&key);
        assert!(!table.unchanged(stamp));
        assert!(table.unchanged(after));
        table.bump_all();
        assert!(!table.unchanged(after));
    }
}
