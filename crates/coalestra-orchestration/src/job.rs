//! A job: one build (or session stage, or background refresh) with its
//! context, deadline, counters and resolution tree.

use std::sync::{Arc, Mutex};

use coalestra_core::{FetchContext, KeyMap, ResourceKey, SnapshotValue};
use tokio::time::Instant;

use crate::engine::Engine;
use crate::flight::{Flight, Outcome};
use crate::stats::BuildStats;

/// One unit of work sharing a deadline and counters.
pub(crate) struct Job {
    pub(crate) ctx: FetchContext,
    pub(crate) deadline: Option<Instant>,
    pub(crate) stats: BuildStats,
    pub(crate) tree: Tree,
    /// Bypass the cache for these reads (revalidation, refresh).
    pub(crate) bypass_cache: bool,
    /// Why the cache is bypassed, when a caller asked for it.
    pub(crate) bypass_reason: Option<&'static str>,
    /// Values pinned by a session; served before the cache.
    pub(crate) pinned: Option<Arc<KeyMap<SnapshotValue>>>,
    /// Every value resolved by the job (sessions pin them).
    pub(crate) learned: Option<Mutex<KeyMap<SnapshotValue>>>,
    /// Sources a key may not use (consistency fallback).
    pub(crate) excluded: KeyMap<Vec<Arc<str>>>,
    /// Whether results are written to the shared cache.
    pub(crate) write_cache: bool,
    /// Bounds the source attempts of this job running at once to the
    /// builder's `max_pending_tasks`; never held while waiting on other keys.
    pub(crate) gate: tokio::sync::Semaphore,
    /// Whether a deadline miss was already counted for this job.
    pub(crate) deadline_noted: std::sync::atomic::AtomicBool,
    /// Whether this job is a background refresh (it schedules no refresh and
    /// never writes a stale result).
    pub(crate) refresh: bool,
}

impl Job {
    /// A job of `engine`: its gate is the builder's `max_pending_tasks`, and
    /// it keeps a resolution tree only when a derived source can make keys
    /// wait on other keys.
    pub(crate) fn new(engine: &Engine, ctx: FetchContext, deadline: Option<Instant>) -> Self {
        Self {
            gate: tokio::sync::Semaphore::new(engine.max_pending.get()),
            ctx,
            deadline,
            stats: BuildStats::default(),
            tree: Tree {
                state: Mutex::default(),
                tracked: engine.catalog.has_derived(),
            },
            bypass_cache: false,
            bypass_reason: None,
            pinned: None,
            learned: None,
            excluded: KeyMap::default(),
            write_cache: true,
            deadline_noted: std::sync::atomic::AtomicBool::new(false),
            refresh: false,
        }
    }

    /// Records resolved values when the job learns them.
    pub(crate) fn learn<'v>(&self, values: impl Iterator<Item = &'v SnapshotValue>) {
        if let Some(learned) = &self.learned {
            let mut map = learned.lock().unwrap_or_else(|p| p.into_inner());
            for value in values {
                map.insert(value.key().clone(), value.clone());
            }
        }
    }

    /// Takes the learned values.
    pub(crate) fn take_learned(&self) -> KeyMap<SnapshotValue> {
        self.learned
            .as_ref()
            .map(|l| std::mem::take(&mut *l.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default()
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// A state of a key inside one resolution tree.
pub(crate) enum Memo {
    /// Owned by the job's top-level chain, not finished.
    Pending,
    /// Being resolved by a nested (dependency) resolution.
    Nested(Arc<Flight>),
    /// Being resolved by a chain that never waits on other keys: safe to
    /// wait for.
    Running(Arc<Flight>),
    /// Finished.
    Done(Outcome),
}

/// What a dependency request found in the tree.
pub(crate) enum TreeLookup {
    /// Not known to the tree.
    Unknown,
    /// Claimed now by the caller, who must resolve and finish it.
    Claimed(Arc<Flight>),
    /// Wait for another branch.
    Wait(Arc<Flight>),
    /// Already finished.
    Done(Outcome),
    /// Waiting would close a cycle.
    Cycle,
}

/// The keys a job owns and how far each got; lets dependencies reuse work
/// of the same job instead of deadlocking on its own single-flight entries.
///
/// An untracked tree (no derived source in the builder) records nothing and
/// finds nothing: no key can wait on another key there.
pub(crate) struct Tree {
    state: Mutex<TreeState>,
    tracked: bool,
}

#[derive(Default)]
struct TreeState {
    memo: KeyMap<Memo>,
    waits: KeyMap<Vec<ResourceKey>>,
}

impl Tree {
    fn lock(&self) -> std::sync::MutexGuard<'_, TreeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks top-level keys as owned.
    pub(crate) fn own(&self, keys: &[ResourceKey]) {
        if !self.tracked {
            return;
        }
        let mut state = self.lock();
        for key in keys {
            state.memo.entry(key.clone()).or_insert(Memo::Pending);
        }
    }

    /// Marks keys whose chain never waits on other keys as running.
    pub(crate) fn running(&self, key: &ResourceKey, flight: Arc<Flight>) {
        if !self.tracked {
            return;
        }
        let mut state = self.lock();
        if !matches!(state.memo.get(key), Some(Memo::Done(_))) {
            state.memo.insert(key.clone(), Memo::Running(flight));
        }
    }

    /// Registers a nested resolution of `key` (owner of a global flight).
    pub(crate) fn nested(&self, key: &ResourceKey, flight: Arc<Flight>) {
        self.lock().memo.insert(key.clone(), Memo::Nested(flight));
    }

    /// Looks a dependency up for a resolution whose path is `path`.
    pub(crate) fn lookup(&self, key: &ResourceKey, path: &[ResourceKey]) -> TreeLookup {
        let mut state = self.lock();
        match state.memo.get(key) {
            None => TreeLookup::Unknown,
            Some(Memo::Done(outcome)) => TreeLookup::Done(outcome.clone()),
            Some(Memo::Pending) => {
                let flight = Arc::new(Flight::default());
                state
                    .memo
                    .insert(key.clone(), Memo::Nested(Arc::clone(&flight)));
                TreeLookup::Claimed(flight)
            }
            Some(Memo::Nested(flight)) | Some(Memo::Running(flight)) => {
                let flight = Arc::clone(flight);
                if state.reaches(key, path) {
                    TreeLookup::Cycle
                } else {
                    TreeLookup::Wait(flight)
                }
            }
        }
    }

    /// For the top-level chain: a key finished (or being finished) by a
    /// nested resolution.
    pub(crate) fn delegated(&self, key: &ResourceKey) -> Option<Result<Outcome, Arc<Flight>>> {
        if !self.tracked {
            return None;
        }
        match self.lock().memo.get(key) {
            Some(Memo::Done(outcome)) => Some(Ok(outcome.clone())),
            Some(Memo::Nested(flight)) => Some(Err(Arc::clone(flight))),
            _ => None,
        }
    }

    /// Records a finished key: a success replaces anything, a failure never
    /// replaces a success.
    pub(crate) fn finish(&self, key: &ResourceKey, outcome: &Outcome) {
        if !self.tracked {
            return;
        }
        let mut state = self.lock();
        let keep = matches!(state.memo.get(key), Some(Memo::Done(Ok(_)))) && outcome.is_err();
        if !keep {
            state.memo.insert(key.clone(), Memo::Done(outcome.clone()));
        }
    }

    /// Records that the resolution of `from` waits for `to`.
    pub(crate) fn wait_edge(&self, from: &ResourceKey, to: &ResourceKey, add: bool) {
        let mut state = self.lock();
        let edges = state.waits.entry(from.clone()).or_default();
        if add {
            edges.push(to.clone());
        } else if let Some(i) = edges.iter().position(|k| k == to) {
            edges.swap_remove(i);
        }
    }
}

impl TreeState {
    /// Whether following wait edges from `start` reaches any key of `path`.
    fn reaches(&self, start: &ResourceKey, path: &[ResourceKey]) -> bool {
        let mut stack = vec![start.clone()];
        let mut seen: KeyMap<()> = KeyMap::default();
        while let Some(k) = stack.pop() {
            if path.contains(&k) {
                return true;
            }
            if seen.insert(k.clone(), ()).is_some() {
                continue;
            }
            if let Some(next) = self.waits.get(&k) {
                stack.extend(next.iter().cloned());
            }
        }
        false
    }
}
