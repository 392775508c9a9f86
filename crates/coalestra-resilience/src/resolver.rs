//! Which [`ResiliencePolicy`] applies to the calls of a source.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use coalestra_core::{ConfigError, ResiliencePolicy};

/// A dynamic policy lookup by source name; `None` defers to the next level.
pub type DynamicResiliencePolicy = Arc<dyn Fn(&str) -> Option<ResiliencePolicy> + Send + Sync>;

/// Resolves the resilience policy of a source.
///
/// Precedence, highest first:
/// 1. an explicit override registered for the source name,
/// 2. the dynamic lookup, when it returns a policy,
/// 3. the policy the source declares itself,
/// 4. the default policy.
///
/// Cloning is cheap: the overrides and the lookup are shared.
#[derive(Clone, Default)]
pub struct ResilienceResolver {
    default: ResiliencePolicy,
    overrides: Arc<HashMap<Box<str>, ResiliencePolicy>>,
    dynamic: Option<DynamicResiliencePolicy>,
}

impl ResilienceResolver {
    /// Starts a builder with the default [`ResiliencePolicy`], no override and
    /// no dynamic lookup.
    pub fn builder() -> ResilienceResolverBuilder {
        ResilienceResolverBuilder::default()
    }

    /// The policy applying to `source_name`, given the policy the source
    /// declares (if any).
    #[must_use]
    pub fn resolve(
        &self,
        source_name: &str,
        declared: Option<&ResiliencePolicy>,
    ) -> ResiliencePolicy {
        if let Some(policy) = self.overrides.get(source_name) {
            return policy.clone();
        }
        if let Some(policy) = self.dynamic.as_ref().and_then(|lookup| lookup(source_name)) {
            return policy;
        }
        declared.unwrap_or(&self.default).clone()
    }

    /// The policy used when no other level provides one.
    #[must_use]
    pub const fn default_policy(&self) -> &ResiliencePolicy {
        &self.default
    }

    /// The explicit override registered for `source_name`, if any.
    #[must_use]
    pub fn override_for(&self, source_name: &str) -> Option<&ResiliencePolicy> {
        self.overrides.get(source_name)
    }

    /// Whether a dynamic lookup is configured.
    #[must_use]
    pub const fn has_dynamic(&self) -> bool {
        self.dynamic.is_some()
    }
}

impl fmt::Debug for ResilienceResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceResolver")
            .field("default", &self.default)
            .field("overrides", &self.overrides)
            .field("dynamic", &self.dynamic.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// Builder of a [`ResilienceResolver`].
#[derive(Clone, Default)]
#[must_use]
pub struct ResilienceResolverBuilder {
    default: ResiliencePolicy,
    overrides: Vec<(String, ResiliencePolicy)>,
    dynamic: Option<DynamicResiliencePolicy>,
}

impl ResilienceResolverBuilder {
    /// Sets the policy used when no other level provides one.
    pub fn default_policy(mut self, policy: ResiliencePolicy) -> Self {
        self.default = policy;
        self
    }

    /// Registers an explicit policy for one source; it wins over every other
    /// level. A later override for the same name replaces an earlier one.
    pub fn override_source(
        mut self,
        source_name: impl Into<String>,
        policy: ResiliencePolicy,
    ) -> Self {
        self.overrides.push((source_name.into(), policy));
        self
    }

    /// Sets the dynamic lookup consulted after the explicit overrides.
    pub fn dynamic(
        mut self,
        lookup: impl Fn(&str) -> Option<ResiliencePolicy> + Send + Sync + 'static,
    ) -> Self {
        self.dynamic = Some(Arc::new(lookup));
        self
    }

    /// Sets an already shared dynamic lookup.
    pub fn dynamic_shared(mut self, lookup: DynamicResiliencePolicy) -> Self {
        self.dynamic = Some(lookup);
        self
    }

    /// Validates and returns the resolver.
    ///
    /// # Errors
    /// Returns [`ConfigError::Empty`] (field `source_name`) when an override
    /// was registered for an empty or blank source name.
    pub fn build(self) -> Result<ResilienceResolver, ConfigError> {
        let mut overrides = HashMap::with_capacity(self.overrides.len());
        for (name, policy) in self.overrides {
            if name.trim().is_empty() {
                return Err(ConfigError::Empty {
                    field: "source_name",
                });
            }
            overrides.insert(name.into_boxed_str(), policy);
        }
        Ok(ResilienceResolver {
            default: self.default,
            overrides: Arc::new(overrides),
            dynamic: self.dynamic,
        })
    }
}

impl fmt::Debug for ResilienceResolverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceResolverBuilder")
            .field("default", &self.default)
            .field("overrides", &self.overrides)
            .field("dynamic", &self.dynamic.as_ref().map(|_| "<fn>"))
            .finish()
    }
}
