//! Source authority: which source wins when several describe one resource
//! ([`SourceAuthorityPolicy`], [`AuthorityResolver`]).
//!
//! A write from a higher-ranked source replaces a lower-ranked one even when
//! it was observed earlier; equal ranks compare observation times.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::ConfigError;
use crate::key::{KeyMap, ResourceKey};

/// Ranks per source name, with a default for unlisted sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAuthorityPolicy {
    ranks: HashMap<Arc<str>, i64>,
    default_rank: i64,
}

impl SourceAuthorityPolicy {
    /// Builds a policy; names are trimmed and must be non-empty and unique.
    pub fn new<I, S>(ranks: I, default_rank: i64) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (S, i64)>,
        S: AsRef<str>,
    {
        let mut map = HashMap::new();
        for (name, rank) in ranks {
            let name = name.as_ref().trim();
            if name.is_empty() {
                return Err(ConfigError::Empty {
                    field: "authority source name",
                });
            }
            if map.insert(Arc::<str>::from(name), rank).is_some() {
                return Err(ConfigError::Invalid {
                    field: "authority source names",
                    reason: format!("duplicate authority source name {name:?}"),
                });
            }
        }
        Ok(Self {
            ranks: map,
            default_rank,
        })
    }

    /// The rank of `source`.
    pub fn rank_of(&self, source: &str) -> i64 {
        self.ranks.get(source).copied().unwrap_or(self.default_rank)
    }

    /// The rank of unlisted sources.
    pub fn default_rank(&self) -> i64 {
        self.default_rank
    }

    /// Whether this policy ranks anything differently from "all zero".
    pub fn has_rules(&self) -> bool {
        !self.ranks.is_empty() || self.default_rank != 0
    }
}

type DynamicRank = Arc<dyn Fn(&ResourceKey, &str) -> Option<i64> + Send + Sync>;

/// Resolves a source's rank for one key: an exact-key policy first, then a
/// dynamic function, then the default policy.
#[derive(Clone, Default)]
pub struct AuthorityResolver {
    default: SourceAuthorityPolicy,
    overrides: KeyMap<SourceAuthorityPolicy>,
    dynamic: Option<DynamicRank>,
}

impl AuthorityResolver {
    /// A resolver applying `default` to every key.
    pub fn new(default: SourceAuthorityPolicy) -> Self {
        Self {
            default,
            ..Self::default()
        }
    }

    /// Adds a policy for one key.
    #[must_use]
    pub fn with_override(mut self, key: ResourceKey, policy: SourceAuthorityPolicy) -> Self {
        self.overrides.insert(key, policy);
        self
    }

    /// Adds a dynamic rank function consulted after exact-key overrides.
    #[must_use]
    pub fn with_dynamic(
        mut self,
        f: impl Fn(&ResourceKey, &str) -> Option<i64> + Send + Sync + 'static,
    ) -> Self {
        self.dynamic = Some(Arc::new(f));
        self
    }

    /// The rank of `source` for `key`.
    pub fn rank_for(&self, key: &ResourceKey, source: &str) -> i64 {
        if let Some(policy) = self.overrides.get(key) {
            return policy.rank_of(source);
        }
        if let Some(dynamic) = &self.dynamic {
            if let Some(rank) = dynamic(key, source) {
                return rank;
            }
        }
        self.default.rank_of(source)
    }

    /// Whether any rule exists (only then must a cache compare authority).
    pub fn has_rules(&self) -> bool {
        self.default.has_rules() || !self.overrides.is_empty() || self.dynamic.is_some()
    }
}

impl fmt::Debug for AuthorityResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityResolver")
            .field("default", &self.default)
            .field("overrides", &self.overrides.len())
            .field("dynamic", &self.dynamic.is_some())
            .finish()
    }
}
