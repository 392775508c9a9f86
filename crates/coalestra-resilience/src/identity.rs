//! Which circuit a call belongs to.

use std::fmt;
use std::sync::Arc;

use coalestra_core::{CircuitScope, ResourceKey};

/// The identity of one circuit: a source, a scope and the part of the
/// resource key that the scope selects.
///
/// Two calls share circuit state exactly when their identities are equal.
/// The display form is `source[scope]` when the discriminator is empty and
/// `source[scope]:discriminator` otherwise, e.g. `prices[namespace]:market`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircuitIdentity {
    source: Arc<str>,
    scope: CircuitScope,
    discriminator: Arc<str>,
}

impl CircuitIdentity {
    /// Builds an identity from its parts.
    #[must_use]
    pub fn new(
        source: impl Into<Arc<str>>,
        scope: CircuitScope,
        discriminator: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            source: source.into(),
            scope,
            discriminator: discriminator.into(),
        }
    }

    /// The identity of the circuit guarding calls of `source` for `key`.
    ///
    /// The discriminator is empty for [`CircuitScope::Source`], the key's
    /// namespace for [`CircuitScope::Namespace`], the full key rendering for
    /// [`CircuitScope::Resource`] and the key's subject for
    /// [`CircuitScope::Subject`] (`namespace:name` when the subject is empty,
    /// so that subject-less keys of different kinds do not share a circuit).
    #[must_use]
    pub fn for_key(source: impl Into<Arc<str>>, key: &ResourceKey, scope: CircuitScope) -> Self {
        let discriminator: Arc<str> = match scope {
            CircuitScope::Source => Arc::from(""),
            CircuitScope::Namespace => Arc::from(key.namespace()),
            CircuitScope::Resource => Arc::from(key.to_string()),
            CircuitScope::Subject if key.subject().is_empty() => {
                Arc::from(format!("{}:{}", key.namespace(), key.name()))
            }
            CircuitScope::Subject => Arc::from(key.subject()),
        };
        Self {
            source: source.into(),
            scope,
            discriminator,
        }
    }

    /// The name of the source the circuit guards.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The scope the identity was built for.
    #[must_use]
    pub const fn scope(&self) -> CircuitScope {
        self.scope
    }

    /// The scope-selected part of the key; empty for the source scope.
    #[must_use]
    pub fn discriminator(&self) -> &str {
        &self.discriminator
    }
}

impl fmt::Display for CircuitIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.source, self.scope)?;
        if !self.discriminator.is_empty() {
            write!(f, ":{}", self.discriminator)?;
        }
        Ok(())
    }
}
