//! What a publication did: [`PublishStatus`] and [`PublishResult`].

use std::fmt;

use coalestra_core::{ResourceKey, SnapshotValue, WriteOutcome};

/// Whether a published value was stored, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishStatus {
    /// The value is now the stored revision.
    Published,
    /// A newer revision of the same authority is stored.
    IgnoredOlder,
    /// A revision of equal authority and observation time is stored.
    IgnoredDuplicate,
    /// A revision from a more authoritative source is stored.
    IgnoredLowerAuthority,
}

impl PublishStatus {
    /// A stable lowercase name: `published`, `ignored_older`,
    /// `ignored_duplicate` or `ignored_lower_authority`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::IgnoredOlder => "ignored_older",
            Self::IgnoredDuplicate => "ignored_duplicate",
            Self::IgnoredLowerAuthority => "ignored_lower_authority",
        }
    }

    /// Whether the value was stored.
    pub fn is_published(self) -> bool {
        matches!(self, Self::Published)
    }

    /// Whether the value was not stored.
    pub fn is_ignored(self) -> bool {
        !self.is_published()
    }

    /// The status of a cache write outcome.
    ///
    /// An outcome this crate does not know yet maps to `Published` when it
    /// stored the value and to `IgnoredDuplicate` otherwise.
    pub fn from_outcome(outcome: WriteOutcome) -> Self {
        match outcome {
            WriteOutcome::Stored => Self::Published,
            WriteOutcome::IgnoredOlder => Self::IgnoredOlder,
            WriteOutcome::IgnoredDuplicate => Self::IgnoredDuplicate,
            WriteOutcome::IgnoredLowerAuthority => Self::IgnoredLowerAuthority,
            other if other.is_stored() => Self::Published,
            _ => Self::IgnoredDuplicate,
        }
    }
}

impl fmt::Display for PublishStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of publishing one resource.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PublishResult {
    /// The resource.
    pub key: ResourceKey,
    /// What happened to the published value.
    pub status: PublishStatus,
    /// The revision stored after the publication: the published value when
    /// it was stored, otherwise the revision that beat it.
    pub value: SnapshotValue,
    /// The revision stored before the publication, if any.
    pub previous: Option<SnapshotValue>,
    /// Whether the publication was forced.
    pub forced: bool,
}

impl PublishResult {
    /// Whether the published value was stored.
    pub fn is_published(&self) -> bool {
        self.status.is_published()
    }
}
