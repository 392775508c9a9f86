//! `session-revalidate`: a session holding 200 pinned keys revalidates 10
//! of them. The source is inline and the policy never caches, so each
//! revalidation really goes back to the source for its 10 keys and then
//! commits them transactionally next to the 190 untouched pinned values.

use coalestra::{
    FreshnessPolicy, ResolveOptions, ResourceKey, RevalidateOptions, SessionOptions, Snapshot,
    SnapshotBuilder, SnapshotSession,
};

use crate::keys;
use crate::read_path::{local_source, READ_KEYS};

/// Keys revalidated per run.
pub const REVALIDATED_KEYS: usize = 10;

/// An open session with 200 pinned keys.
pub struct SessionRevalidate {
    // Kept alive for the session's lifetime.
    _builder: SnapshotBuilder,
    session: SnapshotSession,
    revalidated: Vec<ResourceKey>,
}

impl SessionRevalidate {
    /// Opens the session and resolves the 200 keys.
    ///
    /// # Panics
    ///
    /// When the builder, the session or the first stage fails.
    pub async fn new() -> Self {
        let builder = SnapshotBuilder::builder([local_source("local").into()])
            .default_policy(FreshnessPolicy::no_cache())
            .build()
            .expect("session builder");
        let session = builder
            .session(SessionOptions::new())
            .expect("session opens");
        let keys = keys("session", "K", READ_KEYS);
        let pinned = session
            .resolve(keys.iter().cloned(), ResolveOptions::new())
            .await
            .expect("first stage");
        assert_eq!(pinned.len(), READ_KEYS);
        let revalidated = keys[..REVALIDATED_KEYS].to_vec();
        Self {
            _builder: builder,
            session,
            revalidated,
        }
    }

    /// One revalidation of 10 pinned keys.
    ///
    /// # Panics
    ///
    /// When the revalidation fails.
    pub async fn run(&self) -> Snapshot {
        self.session
            .revalidate(self.revalidated.iter().cloned(), RevalidateOptions::new())
            .await
            .expect("revalidation")
    }
}
