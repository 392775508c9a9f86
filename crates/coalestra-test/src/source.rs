//! [`MockSource`] and [`MockBatchSource`]: scriptable sources that record
//! their calls.

use std::sync::Arc;

use async_trait::async_trait;
use coalestra_core::{
    BatchOutput, BatchSource, FetchContext, ResourceKey, Source, SourceError, SourceOutput,
    SourceRef,
};

use crate::declare::{declaration_builders, impl_source_info, non_zero, Declared};
use crate::handle::{MockHandle, Shared};
use crate::script::{no_value, script_builders, Planned, Script};

/// A scriptable single-key [`Source`].
///
/// Answers come from its [`Script`]; every call is recorded (see
/// [`MockHandle`]), can be held at a [`crate::Gate`] and delayed with
/// `tokio::time::sleep`, so paused test time drives latency.
///
/// ```
/// use coalestra_core::{FetchContext, Source, SourceError, Timestamp};
/// use coalestra_test::{key, MockSource};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let price = key("market:price:BTC");
/// let source = MockSource::new("rest")
///     .with_priority(10)
///     .value(&price, 101.5_f64)
///     .fail_times(&price, 1, SourceError::unavailable("connection reset"));
/// let handle = source.handle();
/// let ctx = FetchContext::new("s-1", Timestamp::from_secs(0.0));
///
/// assert!(source.fetch(&price, &ctx).await.is_err());
/// let output = source.fetch(&price, &ctx).await.unwrap();
/// assert_eq!(*output.payload.get::<f64>().unwrap(), 101.5);
/// assert_eq!(handle.calls_for(&price), 2);
/// # });
/// ```
pub struct MockSource {
    shared: Arc<Shared>,
    decl: Declared,
}

impl MockSource {
    /// A source named `name` with nothing scripted.
    pub fn new(name: &str) -> Self {
        Self {
            shared: Shared::new(name),
            decl: Declared::default(),
        }
    }

    /// A handle on the script, call records and gates.
    pub fn handle(&self) -> MockHandle {
        MockHandle(Arc::clone(&self.shared))
    }

    /// The script.
    pub fn script(&self) -> &Script {
        &self.shared.script
    }

    script_builders!();
    declaration_builders!();

    fn answer(&self, key: &ResourceKey) -> Result<SourceOutput, SourceError> {
        match self.shared.script.plan(key) {
            Planned::Output(output) => Ok(output),
            Planned::Fail(error) => Err(error),
            Planned::Panic => panic!("mock source {} panicked on {key}", self.shared.name()),
            Planned::Omit | Planned::NoValue => Err(no_value(self.shared.name(), key)),
        }
    }
}

impl_source_info!(MockSource);

#[async_trait]
impl Source for MockSource {
    async fn fetch(
        &self,
        key: &ResourceKey,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        let keys = std::slice::from_ref(key);
        let _call = self.shared.calls.enter(keys);
        self.shared.hold(keys).await;
        self.answer(key)
    }

    fn fetch_blocking(
        &self,
        key: &ResourceKey,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        let _call = self.shared.calls.enter(std::slice::from_ref(key));
        self.answer(key)
    }
}

impl From<MockSource> for SourceRef {
    fn from(source: MockSource) -> Self {
        SourceRef::single(source)
    }
}

/// A scriptable [`BatchSource`].
///
/// Each requested key is answered from the [`Script`]: keys with nothing
/// scripted, or marked with [`MockBatchSource::omit`], are left out of the
/// answer; a failure scripted for any requested key fails the whole call
/// (consuming one counted failure of every failing key); a panic scripted
/// for any requested key panics the call. Keys added with
/// [`MockBatchSource::inject_extra`] are appended to every answer.
pub struct MockBatchSource {
    shared: Arc<Shared>,
    decl: Declared,
}

impl MockBatchSource {
    /// A batch source named `name` with nothing scripted.
    pub fn new(name: &str) -> Self {
        Self {
            shared: Shared::new(name),
            decl: Declared::default(),
        }
    }

    /// A handle on the script, call records and gates.
    pub fn handle(&self) -> MockHandle {
        MockHandle(Arc::clone(&self.shared))
    }

    /// The script.
    pub fn script(&self) -> &Script {
        &self.shared.script
    }

    script_builders!();
    declaration_builders!();

    /// Leaves `key` out of every answer.
    #[must_use]
    pub fn omit(self, key: impl crate::IntoResourceKey) -> Self {
        self.shared.script.omit(key);
        self
    }

    /// Adds the unrequested `key` to every answer.
    #[must_use]
    pub fn inject_extra(self, key: impl crate::IntoResourceKey) -> Self {
        self.shared.script.inject_extra(key);
        self
    }

    /// Declares the largest number of keys per call.
    ///
    /// # Panics
    ///
    /// When `size` is zero.
    #[must_use]
    #[track_caller]
    pub fn with_max_batch_size(mut self, size: usize) -> Self {
        self.decl.max_batch_size = Some(non_zero(size, "max_batch_size"));
        self
    }

    fn answer(&self, keys: &[ResourceKey]) -> Result<BatchOutput, SourceError> {
        let mut outputs = Vec::with_capacity(keys.len());
        let mut failure = None;
        let mut panic_key = None;
        for key in keys {
            match self.shared.script.plan(key) {
                Planned::Output(output) => outputs.push((key.clone(), output)),
                Planned::Fail(error) => {
                    failure.get_or_insert(error);
                }
                Planned::Panic => {
                    panic_key.get_or_insert(key);
                }
                Planned::Omit | Planned::NoValue => {}
            }
        }
        if let Some(key) = panic_key {
            panic!("mock batch source {} panicked on {key}", self.shared.name());
        }
        if let Some(error) = failure {
            return Err(error);
        }
        outputs.extend(self.shared.script.extras());
        Ok(outputs)
    }
}

impl_source_info!(MockBatchSource);

#[async_trait]
impl BatchSource for MockBatchSource {
    fn max_batch_size(&self) -> Option<std::num::NonZeroUsize> {
        self.decl.max_batch_size
    }

    async fn fetch_many(
        &self,
        keys: &[ResourceKey],
        _ctx: &FetchContext,
    ) -> Result<BatchOutput, SourceError> {
        let _call = self.shared.calls.enter(keys);
        self.shared.hold(keys).await;
        self.answer(keys)
    }

    fn fetch_many_blocking(
        &self,
        keys: &[ResourceKey],
        _ctx: &FetchContext,
    ) -> Result<BatchOutput, SourceError> {
        let _call = self.shared.calls.enter(keys);
        self.answer(keys)
    }
}

impl From<MockBatchSource> for SourceRef {
    fn from(source: MockBatchSource) -> Self {
        SourceRef::batch(source)
    }
}
