//! [`MockDerivedSource`]: a derived source from a closure that records its
//! derivations.

use std::sync::Arc;

use async_trait::async_trait;
use coalestra_core::{
    DerivedSource, FetchContext, KeyMap, ResourceKey, Snapshot, SourceError, SourceOutput,
    SourceRef,
};

use crate::declare::{declaration_builders, impl_source_info, Declared};
use crate::handle::{MockHandle, Shared};
use crate::keys::IntoResourceKey;
use crate::script::{Planned, Script};

type Derive =
    Arc<dyn Fn(&ResourceKey, &Snapshot) -> Result<SourceOutput, SourceError> + Send + Sync>;
type Dependencies = Arc<dyn Fn(&ResourceKey) -> Vec<ResourceKey> + Send + Sync>;

/// A scriptable [`DerivedSource`].
///
/// Dependencies come from [`MockDerivedSource::depends_on`] (per key), then
/// [`MockDerivedSource::dependencies_fn`], else none. Each derivation is
/// recorded as a one-key call (see [`MockHandle`]), passes the handle's
/// gates and latency, then applies the failures and panics scripted on the
/// [`Script`] before calling the derive function; scripted values are
/// ignored, the derive function computes the value.
///
/// ```
/// use coalestra_core::{DerivedSource, SourceOutput};
/// use coalestra_test::{key, MockDerivedSource};
///
/// let spread = key("market:spread:BTC");
/// let source = MockDerivedSource::new("spread", |_key, deps| {
///     let bid = deps.value::<f64>(&key("market:bid:BTC")).map_err(|e| {
///         coalestra_core::SourceError::protocol(e)
///     })?;
///     Ok(SourceOutput::new(*bid))
/// })
/// .depends_on(&spread, [key("market:bid:BTC")]);
/// assert_eq!(source.dependencies(&spread).unwrap(), vec![key("market:bid:BTC")]);
/// ```
pub struct MockDerivedSource {
    shared: Arc<Shared>,
    decl: Declared,
    derive: Derive,
    by_key: KeyMap<Vec<ResourceKey>>,
    fallback: Option<Dependencies>,
}

impl MockDerivedSource {
    /// A derived source named `name` computing values with `derive`.
    pub fn new(
        name: &str,
        derive: impl Fn(&ResourceKey, &Snapshot) -> Result<SourceOutput, SourceError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self {
            shared: Shared::new(name),
            decl: Declared::default(),
            derive: Arc::new(derive),
            by_key: KeyMap::default(),
            fallback: None,
        }
    }

    /// A handle on the script, derivation records and gates.
    pub fn handle(&self) -> MockHandle {
        MockHandle(Arc::clone(&self.shared))
    }

    /// The script (failures, panics and latency apply to derivations).
    pub fn script(&self) -> &Script {
        &self.shared.script
    }

    /// Declares the dependencies of `key`.
    #[must_use]
    pub fn depends_on<K: IntoResourceKey>(
        mut self,
        key: impl IntoResourceKey,
        dependencies: impl IntoIterator<Item = K>,
    ) -> Self {
        let dependencies = dependencies
            .into_iter()
            .map(IntoResourceKey::into_resource_key)
            .collect();
        self.by_key.insert(key.into_resource_key(), dependencies);
        self
    }

    /// Computes the dependencies of keys without an explicit declaration.
    #[must_use]
    pub fn dependencies_fn(
        mut self,
        f: impl Fn(&ResourceKey) -> Vec<ResourceKey> + Send + Sync + 'static,
    ) -> Self {
        self.fallback = Some(Arc::new(f));
        self
    }

    /// Fails the next `times` derivations of `key` with `error`.
    #[must_use]
    pub fn fail_times(self, key: impl IntoResourceKey, times: u32, error: SourceError) -> Self {
        self.shared.script.fail_times(key, times, error);
        self
    }

    /// Delays every derivation.
    #[must_use]
    pub fn latency(self, latency: std::time::Duration) -> Self {
        self.shared.script.latency(latency);
        self
    }

    declaration_builders!();

    fn answer(
        &self,
        key: &ResourceKey,
        dependencies: &Snapshot,
    ) -> Result<SourceOutput, SourceError> {
        match self.shared.script.plan(key) {
            Planned::Fail(error) => Err(error),
            Planned::Panic => panic!(
                "mock derived source {} panicked on {key}",
                self.shared.name()
            ),
            Planned::Output(_) | Planned::Omit | Planned::NoValue => {
                (self.derive)(key, dependencies)
            }
        }
    }
}

impl_source_info!(MockDerivedSource);

#[async_trait]
impl DerivedSource for MockDerivedSource {
    fn dependencies(&self, key: &ResourceKey) -> Result<Vec<ResourceKey>, SourceError> {
        if let Some(dependencies) = self.by_key.get(key) {
            return Ok(dependencies.clone());
        }
        Ok(self.fallback.as_ref().map(|f| f(key)).unwrap_or_default())
    }

    async fn derive(
        &self,
        key: &ResourceKey,
        dependencies: &Snapshot,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        let keys = std::slice::from_ref(key);
        let _call = self.shared.calls.enter(keys);
        self.shared.hold(keys).await;
        self.answer(key, dependencies)
    }

    fn derive_blocking(
        &self,
        key: &ResourceKey,
        dependencies: &Snapshot,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        let _call = self.shared.calls.enter(std::slice::from_ref(key));
        self.answer(key, dependencies)
    }
}

impl From<MockDerivedSource> for SourceRef {
    fn from(source: MockDerivedSource) -> Self {
        SourceRef::derived(source)
    }
}
