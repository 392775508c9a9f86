//! What the store keeps for each key: a [`Slot`] holding the key's current
//! revision.
//!
//! A write that replaces a stored revision replaces it inside the key's slot
//! instead of inserting a new moka entry: moka's update path (a new entry
//! record, a write-log operation and an epoch flush) costs far more than the
//! replacement itself. The slot is replaced only while the key's stripe lock
//! is held (see [`KeyLocks`](super::locks::KeyLocks)), so its short internal
//! lock is only ever contended by readers copying the revision out.
//!
//! Each slot numbers its revisions: a revision is identified by its slot (the
//! allocation) and its generation, which is how conditional removals make
//! sure they remove exactly the revision they judged.

use std::sync::{PoisonError, RwLock, RwLockWriteGuard};

use coalestra_core::SnapshotValue;

/// The stored revision of one key.
#[derive(Debug)]
pub(crate) struct Slot {
    revision: RwLock<Revision>,
}

/// One stored revision and its number within its slot.
#[derive(Debug, Clone)]
pub(crate) struct Revision {
    pub(crate) value: SnapshotValue,
    pub(crate) generation: u64,
}

impl Slot {
    /// A slot holding `value` as its first revision.
    pub(crate) fn new(value: SnapshotValue) -> Self {
        Self {
            revision: RwLock::new(Revision {
                value,
                generation: 0,
            }),
        }
    }

    /// A copy of the stored revision.
    pub(crate) fn revision(&self) -> Revision {
        // Nothing panics while a revision is being replaced, and a
        // replacement is a single assignment: a poisoned lock still guards a
        // whole revision.
        self.revision
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `look` on the stored revision under the slot's read lock,
    /// without copying it out.
    pub(crate) fn with<R>(&self, look: impl FnOnce(&Revision) -> R) -> R {
        look(&self.revision.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The stored value.
    pub(crate) fn value(&self) -> SnapshotValue {
        self.revision
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .value
            .clone()
    }

    /// The generation of the stored revision.
    pub(crate) fn generation(&self) -> u64 {
        self.revision
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .generation
    }

    /// Locks the revision for a replacement. Only called with the key's
    /// stripe lock held.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Revision> {
        self.revision
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Revision {
    /// Stores `value` as the next revision; returns the replaced value.
    pub(crate) fn replace(&mut self, value: SnapshotValue) -> SnapshotValue {
        self.generation += 1;
        std::mem::replace(&mut self.value, value)
    }
}
