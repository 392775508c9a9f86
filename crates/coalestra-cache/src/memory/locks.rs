//! Per-key serialization of the memory cache's conditional writes and
//! conditional removals.
//!
//! Every operation that reads a key's stored revision and then replaces or
//! removes it depending on what it read holds the key's stripe for the whole
//! read-decide-store sequence, so no other writer of that key interleaves.
//! A stripe covers many keys (chosen by the key's own hash); it is held only
//! for a few synchronous map operations and never across an await.

use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use coalestra_core::key::KeyHasher;
use coalestra_core::ResourceKey;

/// log2 of the number of stripes.
const STRIPE_BITS: u32 = 6;
const STRIPES: usize = 1 << STRIPE_BITS;

/// One lock, alone on its cache line so neighbouring stripes do not contend.
#[derive(Default)]
#[repr(align(64))]
struct Stripe(Mutex<()>);

/// A fixed set of locks, one of which guards each key.
pub(crate) struct KeyLocks {
    stripes: Box<[Stripe]>,
}

impl KeyLocks {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }

    /// Locks the stripe of `key` until the guard is dropped.
    pub(crate) fn lock(&self, key: &ResourceKey) -> MutexGuard<'_, ()> {
        let mut hasher = KeyHasher::default();
        key.hash(&mut hasher);
        // The key hasher multiplies last, so the high bits are well mixed.
        let index = (hasher.finish() >> (u64::BITS - STRIPE_BITS)) as usize;
        // The lock guards no data: a writer that panicked while holding it
        // left nothing half-updated here, so poisoning is ignored.
        self.stripes[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for KeyLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLocks")
            .field("stripes", &self.stripes.len())
            .finish()
    }
}
