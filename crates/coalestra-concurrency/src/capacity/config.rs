//! Configuration of a [`CapacityController`](super::CapacityController) and its validation.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use tokio::sync::Semaphore;

/// Limits enforced by a [`CapacityController`](super::CapacityController).
///
/// `max_concurrency` bounds the number of acquisitions in use across every
/// source. `source_limits` additionally bounds individual sources; a source
/// without an entry is only bounded by the global limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityConfig {
    /// Maximum number of permits in use at once across all sources.
    pub max_concurrency: NonZeroUsize,
    /// Maximum number of permits in use at once per named source.
    pub source_limits: HashMap<String, NonZeroUsize>,
}

impl CapacityConfig {
    /// Creates a configuration with a global limit and no per-source limits.
    #[must_use]
    pub fn new(max_concurrency: NonZeroUsize) -> Self {
        Self {
            max_concurrency,
            source_limits: HashMap::new(),
        }
    }

    /// Adds (or replaces) the limit of one source.
    #[must_use]
    pub fn with_source_limit(mut self, source: impl Into<String>, limit: NonZeroUsize) -> Self {
        self.source_limits.insert(source.into(), limit);
        self
    }

    /// Checks the configuration without building a controller.
    ///
    /// # Errors
    ///
    /// Returns a [`CapacityConfigError`] when a source name is empty or a limit
    /// exceeds [`CapacityConfigError::MAX_LIMIT`].
    pub fn validate(&self) -> Result<(), CapacityConfigError> {
        let max = CapacityConfigError::MAX_LIMIT;
        if self.max_concurrency.get() > max {
            return Err(CapacityConfigError::GlobalLimitTooLarge {
                limit: self.max_concurrency.get(),
                max,
            });
        }
        // Sorted so that the reported error does not depend on hash order.
        let mut sources: Vec<(&String, &NonZeroUsize)> = self.source_limits.iter().collect();
        sources.sort_unstable_by(|left, right| left.0.cmp(right.0));
        for (source, limit) in sources {
            if source.is_empty() {
                return Err(CapacityConfigError::EmptySourceName);
            }
            if limit.get() > max {
                return Err(CapacityConfigError::SourceLimitTooLarge {
                    source_name: source.clone(),
                    limit: limit.get(),
                    max,
                });
            }
        }
        Ok(())
    }
}

/// Why a [`CapacityConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityConfigError {
    /// A per-source limit was given for the empty source name.
    #[error("source name must not be empty")]
    EmptySourceName,
    /// The global limit exceeds what the underlying semaphore supports.
    #[error("global concurrency limit {limit} exceeds the maximum of {max}")]
    GlobalLimitTooLarge {
        /// The configured limit.
        limit: usize,
        /// The largest supported limit.
        max: usize,
    },
    /// A per-source limit exceeds what the underlying semaphore supports.
    #[error("concurrency limit {limit} of source `{source_name}` exceeds the maximum of {max}")]
    SourceLimitTooLarge {
        /// The source whose limit is too large.
        source_name: String,
        /// The configured limit.
        limit: usize,
        /// The largest supported limit.
        max: usize,
    },
}

impl CapacityConfigError {
    /// The largest limit (global or per source) a controller accepts.
    pub const MAX_LIMIT: usize = Semaphore::MAX_PERMITS;

    /// Whether a source name was empty.
    #[must_use]
    pub fn is_empty_source_name(&self) -> bool {
        matches!(self, Self::EmptySourceName)
    }

    /// Whether the global limit was too large.
    #[must_use]
    pub fn is_global_limit_too_large(&self) -> bool {
        matches!(self, Self::GlobalLimitTooLarge { .. })
    }

    /// Whether a per-source limit was too large.
    #[must_use]
    pub fn is_source_limit_too_large(&self) -> bool {
        matches!(self, Self::SourceLimitTooLarge { .. })
    }
}
