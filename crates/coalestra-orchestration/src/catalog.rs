//! The source catalog: sources in descending priority with their resolved
//! policies, and a bounded cache of `supports` answers.

use std::collections::HashSet;
use std::sync::Arc;

use coalestra_core::key::KeyHashing;
use coalestra_core::source::validate_declarations;
use coalestra_core::{
    ConfigError, Execution, ResiliencePolicy, ResourceKey, SourceError, SourceRef,
};
use coalestra_resilience::ResilienceResolver;
use dashmap::DashMap;

use crate::guarantee::TimeoutGuarantee;
use crate::stats::BuildStats;

/// One registered source with everything resolved once at construction.
pub(crate) struct SourceEntry {
    pub(crate) source: SourceRef,
    pub(crate) name: Arc<str>,
    pub(crate) resilience: ResiliencePolicy,
    pub(crate) guarantee: TimeoutGuarantee,
    /// The source-scoped circuit identity, built once.
    pub(crate) source_circuit: Option<coalestra_resilience::CircuitIdentity>,
    support: Option<DashMap<ResourceKey, bool, KeyHashing>>,
}

impl SourceEntry {
    pub(crate) fn execution(&self) -> Execution {
        self.source.info().execution()
    }
}

/// Sources in the order they are tried.
pub(crate) struct SourceCatalog {
    entries: Vec<Arc<SourceEntry>>,
    support_limit: usize,
    has_derived: bool,
}

impl SourceCatalog {
    /// Validates and orders the sources.
    pub(crate) fn new(
        sources: Vec<SourceRef>,
        resilience: &ResilienceResolver,
        support_cache: Option<usize>,
        allow_unsafe: bool,
    ) -> Result<Self, ConfigError> {
        if sources.is_empty() {
            return Err(ConfigError::invalid(
                "sources",
                "at least one source is required",
            ));
        }
        let mut names = HashSet::new();
        let mut entries = Vec::with_capacity(sources.len());
        for source in sources {
            let info = source.info();
            validate_declarations(info)?;
            let name: Arc<str> = info.name().trim().into();
            if !names.insert(name.clone()) {
                return Err(ConfigError::invalid(
                    "sources",
                    format!("source names must be unique (duplicate {name:?})"),
                ));
            }
            let declared = info.resilience();
            let policy = resilience.resolve(&name, declared.as_ref());
            let support = (support_cache.is_some() && info.cache_supports()).then(DashMap::default);
            let guarantee = TimeoutGuarantee::classify(info);
            if guarantee.status.is_unsafe() && !allow_unsafe {
                return Err(ConfigError::invalid(
                    "sources",
                    format!(
                        "blocking source {name:?} is {}: declare an offloaded execution and a transport timeout strictly inside the source timeout, or allow unsafe blocking sources",
                        guarantee.status.as_str()
                    ),
                ));
            }
            let source_circuit = Some(coalestra_resilience::CircuitIdentity::new(
                name.clone(),
                coalestra_core::CircuitScope::Source,
                "",
            ));
            entries.push(Arc::new(SourceEntry {
                source_circuit,
                source,
                name,
                resilience: policy,
                guarantee,
                support,
            }));
        }
        // Stable sort: equal priorities keep registration order.
        entries.sort_by_key(|e| std::cmp::Reverse(e.source.info().priority()));
        let has_derived = entries
            .iter()
            .any(|e| matches!(e.source, SourceRef::Derived(_)));
        Ok(Self {
            entries,
            support_limit: support_cache.unwrap_or(0),
            has_derived,
        })
    }

    /// Sources in descending priority.
    /// Whether any source is derived: only then can a key wait on another
    /// key, and only then does a job keep a resolution tree.
    pub(crate) fn has_derived(&self) -> bool {
        self.has_derived
    }

    pub(crate) fn entries(&self) -> &[Arc<SourceEntry>] {
        &self.entries
    }

    /// Whether `entry` supports `key`, using the support cache; a panicking
    /// predicate is reported as a failure of the source (and not cached).
    pub(crate) fn supports(
        &self,
        entry: &SourceEntry,
        key: &ResourceKey,
        stats: &BuildStats,
    ) -> Result<bool, SourceError> {
        let Some(cache) = &entry.support else {
            return guarded_supports(entry, key);
        };
        if let Some(answer) = cache.get(key) {
            BuildStats::bump(&stats.support_cache_hits);
            return Ok(*answer);
        }
        BuildStats::bump(&stats.support_cache_misses);
        let answer = guarded_supports(entry, key)?;
        if cache.len() >= self.support_limit {
            cache.clear();
        }
        cache.insert(key.clone(), answer);
        Ok(answer)
    }

    /// Entries in all support caches.
    pub(crate) fn support_cache_entries(&self) -> usize {
        self.entries
            .iter()
            .filter_map(|e| e.support.as_ref())
            .map(DashMap::len)
            .sum()
    }

    /// Empties every support cache.
    pub(crate) fn clear_support_cache(&self) {
        for cache in self.entries.iter().filter_map(|e| e.support.as_ref()) {
            cache.clear();
        }
    }

    /// Names in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| &*e.name)
    }
}

/// Runs `supports`, turning a panic into a failure.
fn guarded_supports(entry: &SourceEntry, key: &ResourceKey) -> Result<bool, SourceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        entry.source.info().supports(key)
    }))
    .map_err(|p| SourceError::Panicked {
        message: format!("supports() panicked: {}", crate::invoke::panic_message(p)).into(),
    })
}
