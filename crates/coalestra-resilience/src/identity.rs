//! Which circuit a call belongs to.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use coalestra_core::key::KeyHasher;
use coalestra_core::{CircuitScope, ResourceKey};

/// The identity of one circuit: a source, a scope and the part of the
/// resource key that the scope selects.
///
/// Two calls share circuit state exactly when their identities are equal.
/// The display form is `source[scope]` when the discriminator is empty and
/// `source[scope]:discriminator` otherwise, e.g. `prices[namespace]:market`.
///
/// Cloning shares one allocation, and the identity's hash is computed once
/// at construction, so registry lookups never rehash its strings.
#[derive(Clone)]
pub struct CircuitIdentity(Arc<Inner>);

struct Inner {
    source: Arc<str>,
    scope: CircuitScope,
    discriminator: Arc<str>,
    hash: u64,
}

impl CircuitIdentity {
    /// Builds an identity from its parts.
    #[must_use]
    pub fn new(
        source: impl Into<Arc<str>>,
        scope: CircuitScope,
        discriminator: impl Into<Arc<str>>,
    ) -> Self {
        Self::from_parts(source.into(), scope, discriminator.into())
    }

    fn from_parts(source: Arc<str>, scope: CircuitScope, discriminator: Arc<str>) -> Self {
        let mut hasher = KeyHasher::default();
        source.hash(&mut hasher);
        scope.hash(&mut hasher);
        discriminator.hash(&mut hasher);
        let hash = hasher.finish();
        Self(Arc::new(Inner {
            source,
            scope,
            discriminator,
            hash,
        }))
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
        Self::from_parts(source.into(), scope, discriminator)
    }

    /// The name of the source the circuit guards.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The scope the identity was built for.
    #[must_use]
    pub fn scope(&self) -> CircuitScope {
        self.0.scope
    }

    /// The scope-selected part of the key; empty for the source scope.
    #[must_use]
    pub fn discriminator(&self) -> &str {
        &self.0.discriminator
    }
}

impl PartialEq for CircuitIdentity {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash
                && self.0.scope == other.0.scope
                && self.0.source == other.0.source
                && self.0.discriminator == other.0.discriminator)
    }
}

impl Eq for CircuitIdentity {}

impl Hash for CircuitIdentity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for CircuitIdentity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CircuitIdentity {
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.0.source, self.0.scope, &self.0.discriminator).cmp(&(
            &other.0.source,
            other.0.scope,
            &other.0.discriminator,
        ))
    }
}

impl fmt::Debug for CircuitIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitIdentity")
            .field("source", &self.0.source)
            .field("scope", &self.0.scope)
            .field("discriminator", &self.0.discriminator)
            .finish()
    }
}

impl fmt::Display for CircuitIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.0.source, self.0.scope)?;
        if !self.0.discriminator.is_empty() {
            write!(f, ":{}", self.0.discriminator)?;
        }
        Ok(())
    }
}
