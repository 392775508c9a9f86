//! [`Script`]: what a mock source answers, key by key.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use coalestra_core::{
    KeyMap, Metadata, MetadataValue, Payload, ResourceKey, SourceError, SourceOutput, Timestamp,
};

use crate::keys::IntoResourceKey;

type DefaultValue = Arc<dyn Fn(&ResourceKey) -> Payload + Send + Sync>;

/// The plan for one key.
#[derive(Default, Clone)]
struct KeyPlan {
    payload: Option<Payload>,
    observed_at: Option<Timestamp>,
    metadata: Metadata,
    stale: bool,
    failures_left: u32,
    failure: Option<SourceError>,
    always_fail: Option<SourceError>,
    panic: bool,
    omit: bool,
    latency: Option<Duration>,
}

#[derive(Default)]
struct ScriptState {
    plans: KeyMap<KeyPlan>,
    default_value: Option<DefaultValue>,
    latency: Duration,
    extras: Vec<ResourceKey>,
}

/// What a call for one key turns into.
pub(crate) enum Planned {
    /// Answer with this output.
    Output(SourceOutput),
    /// Fail with this error.
    Fail(SourceError),
    /// Panic.
    Panic,
    /// Leave the key out of a batch answer.
    Omit,
    /// Nothing is scripted for the key.
    NoValue,
}

/// Scripted answers of a mock source, per key.
///
/// For each call and key the first matching rule wins: a panic
/// ([`Script::panic_on`]), a permanent failure ([`Script::always_fail`]), a
/// pending counted failure ([`Script::fail_times`], consumed by the call),
/// an omission (batch sources only, [`Script::omit`]), the key's scripted
/// value, the default value function; otherwise the call fails with a
/// permanent `MockNoValue` error (a batch source omits the key instead).
///
/// A script is shared by the mock and every [`crate::MockHandle`], so a test
/// can change answers while the source is registered. Every method returns
/// `&Self` for chaining.
#[derive(Clone, Default)]
pub struct Script(Arc<Mutex<ScriptState>>);

impl Script {
    fn state(&self) -> MutexGuard<'_, ScriptState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn edit(&self, key: impl IntoResourceKey, change: impl FnOnce(&mut KeyPlan)) -> &Self {
        let key = key.into_resource_key();
        change(self.state().plans.entry(key).or_default());
        self
    }

    /// Answers `key` with `value`.
    pub fn value<T: Any + Send + Sync>(&self, key: impl IntoResourceKey, value: T) -> &Self {
        self.payload(key, Payload::new(value))
    }

    /// Answers `key` with an existing payload (shared, not copied).
    pub fn payload(&self, key: impl IntoResourceKey, payload: Payload) -> &Self {
        self.edit(key, |plan| plan.payload = Some(payload))
    }

    /// Answers every key without a scripted value with `f(key)`.
    pub fn default_value<T, F>(&self, f: F) -> &Self
    where
        T: Any + Send + Sync,
        F: Fn(&ResourceKey) -> T + Send + Sync + 'static,
    {
        self.state().default_value = Some(Arc::new(move |key| Payload::new(f(key))));
        self
    }

    /// Fails the next `times` calls for `key` with `error`, then answers
    /// normally again.
    pub fn fail_times(&self, key: impl IntoResourceKey, times: u32, error: SourceError) -> &Self {
        self.edit(key, |plan| {
            plan.failures_left = times;
            plan.failure = Some(error);
        })
    }

    /// Fails every call for `key` with `error` (until [`Script::recover`]).
    pub fn always_fail(&self, key: impl IntoResourceKey, error: SourceError) -> &Self {
        self.edit(key, |plan| plan.always_fail = Some(error))
    }

    /// Removes every scripted failure and panic of `key`.
    pub fn recover(&self, key: impl IntoResourceKey) -> &Self {
        self.edit(key, |plan| {
            plan.failures_left = 0;
            plan.failure = None;
            plan.always_fail = None;
            plan.panic = false;
        })
    }

    /// Marks the answers for `key` stale ([`SourceOutput::stale`]).
    pub fn stale(&self, key: impl IntoResourceKey) -> &Self {
        self.edit(key, |plan| plan.stale = true)
    }

    /// Reports `key` as observed at `at` (default: no observation time, so
    /// the engine uses the fetch time).
    pub fn observed_at(&self, key: impl IntoResourceKey, at: Timestamp) -> &Self {
        self.edit(key, |plan| plan.observed_at = Some(at))
    }

    /// Adds a metadata entry to the answers for `key`.
    pub fn metadata(
        &self,
        key: impl IntoResourceKey,
        name: &str,
        value: impl Into<MetadataValue>,
    ) -> &Self {
        let value = value.into();
        self.edit(key, |plan| plan.metadata = plan.metadata.with(name, value))
    }

    /// Panics inside the call whenever `key` is requested.
    pub fn panic_on(&self, key: impl IntoResourceKey) -> &Self {
        self.edit(key, |plan| plan.panic = true)
    }

    /// Leaves `key` out of batch answers (single-key sources ignore this).
    pub fn omit(&self, key: impl IntoResourceKey) -> &Self {
        self.edit(key, |plan| plan.omit = true)
    }

    /// Adds `key` to every batch answer even though nobody requested it (a
    /// protocol violation). Its scripted value is used, or `()`.
    pub fn inject_extra(&self, key: impl IntoResourceKey) -> &Self {
        self.state().extras.push(key.into_resource_key());
        self
    }

    /// Delays every call by `latency` (with `tokio::time::sleep`, so paused
    /// test time applies).
    pub fn latency(&self, latency: Duration) -> &Self {
        self.state().latency = latency;
        self
    }

    /// Delays calls involving `key` by `latency` instead of the common one.
    pub fn latency_for(&self, key: impl IntoResourceKey, latency: Duration) -> &Self {
        self.edit(key, |plan| plan.latency = Some(latency))
    }

    /// Forgets everything scripted for `key`.
    pub fn forget(&self, key: impl IntoResourceKey) -> &Self {
        let key = key.into_resource_key();
        self.state().plans.remove(&key);
        self
    }

    /// The delay of a call for `keys`: the longest per-key latency, or the
    /// common latency when no key has its own.
    pub(crate) fn delay_for(&self, keys: &[ResourceKey]) -> Duration {
        let state = self.state();
        keys.iter()
            .filter_map(|k| state.plans.get(k).and_then(|p| p.latency))
            .max()
            .unwrap_or(state.latency)
    }

    /// Decides the answer for one key of one call (consuming counted
    /// failures).
    pub(crate) fn plan(&self, key: &ResourceKey) -> Planned {
        let mut state = self.state();
        let default = state.default_value.clone();
        let Some(plan) = state.plans.get_mut(key) else {
            return match default {
                Some(f) => Planned::Output(SourceOutput::from_payload(f(key))),
                None => Planned::NoValue,
            };
        };
        if plan.panic {
            return Planned::Panic;
        }
        if let Some(error) = &plan.always_fail {
            return Planned::Fail(error.clone());
        }
        if plan.failures_left > 0 {
            plan.failures_left -= 1;
            if let Some(error) = &plan.failure {
                return Planned::Fail(error.clone());
            }
        }
        if plan.omit {
            return Planned::Omit;
        }
        let payload = match (&plan.payload, default) {
            (Some(payload), _) => payload.clone(),
            (None, Some(f)) => f(key),
            (None, None) => return Planned::NoValue,
        };
        Planned::Output(output_of(plan, payload))
    }

    /// The unrequested keys to add to batch answers, with their outputs.
    pub(crate) fn extras(&self) -> Vec<(ResourceKey, SourceOutput)> {
        let state = self.state();
        state
            .extras
            .iter()
            .map(|key| {
                let output = match state.plans.get(key) {
                    Some(plan) => {
                        let payload = plan.payload.clone().unwrap_or_else(|| Payload::new(()));
                        output_of(plan, payload)
                    }
                    None => SourceOutput::new(()),
                };
                (key.clone(), output)
            })
            .collect()
    }
}

fn output_of(plan: &KeyPlan, payload: Payload) -> SourceOutput {
    let mut output = SourceOutput::from_payload(payload);
    output.observed_at = plan.observed_at;
    output.metadata = plan.metadata.clone();
    output.stale = plan.stale;
    output
}

/// The error of a call for a key nothing was scripted for.
pub(crate) fn no_value(source: &str, key: &ResourceKey) -> SourceError {
    SourceError::custom(
        "MockNoValue",
        format!("mock source {source} has no value scripted for {key}"),
        false,
    )
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Script")
            .field("keys", &state.plans.len())
            .field("default_value", &state.default_value.is_some())
            .field("latency", &state.latency)
            .field("extras", &state.extras)
            .finish()
    }
}

/// Builder-style wrappers around [`Script`] for a mock type with a
/// `script()` accessor.
macro_rules! script_builders {
    () => {
        /// Answers `key` with `value` (see [`Script::value`](crate::Script::value)).
        #[must_use]
        pub fn value<T: std::any::Any + Send + Sync>(
            self,
            key: impl $crate::IntoResourceKey,
            value: T,
        ) -> Self {
            self.script().value(key, value);
            self
        }

        /// Answers `key` with an existing payload (see [`Script::payload`](crate::Script::payload)).
        #[must_use]
        pub fn payload(
            self,
            key: impl $crate::IntoResourceKey,
            payload: coalestra_core::Payload,
        ) -> Self {
            self.script().payload(key, payload);
            self
        }

        /// Answers unscripted keys with `f(key)` (see [`Script::default_value`](crate::Script::default_value)).
        #[must_use]
        pub fn default_value<T, F>(self, f: F) -> Self
        where
            T: std::any::Any + Send + Sync,
            F: Fn(&coalestra_core::ResourceKey) -> T + Send + Sync + 'static,
        {
            self.script().default_value(f);
            self
        }

        /// Fails the next `times` calls for `key` (see [`Script::fail_times`](crate::Script::fail_times)).
        #[must_use]
        pub fn fail_times(
            self,
            key: impl $crate::IntoResourceKey,
            times: u32,
            error: coalestra_core::SourceError,
        ) -> Self {
            self.script().fail_times(key, times, error);
            self
        }

        /// Fails every call for `key` (see [`Script::always_fail`](crate::Script::always_fail)).
        #[must_use]
        pub fn always_fail(
            self,
            key: impl $crate::IntoResourceKey,
            error: coalestra_core::SourceError,
        ) -> Self {
            self.script().always_fail(key, error);
            self
        }

        /// Marks answers for `key` stale (see [`Script::stale`](crate::Script::stale)).
        #[must_use]
        pub fn stale(self, key: impl $crate::IntoResourceKey) -> Self {
            self.script().stale(key);
            self
        }

        /// Reports `key` as observed at `at` (see [`Script::observed_at`](crate::Script::observed_at)).
        #[must_use]
        pub fn observed_at(
            self,
            key: impl $crate::IntoResourceKey,
            at: coalestra_core::Timestamp,
        ) -> Self {
            self.script().observed_at(key, at);
            self
        }

        /// Adds metadata to answers for `key` (see [`Script::metadata`](crate::Script::metadata)).
        #[must_use]
        pub fn metadata(
            self,
            key: impl $crate::IntoResourceKey,
            name: &str,
            value: impl Into<coalestra_core::MetadataValue>,
        ) -> Self {
            self.script().metadata(key, name, value);
            self
        }

        /// Panics whenever `key` is requested (see [`Script::panic_on`](crate::Script::panic_on)).
        #[must_use]
        pub fn panic_on(self, key: impl $crate::IntoResourceKey) -> Self {
            self.script().panic_on(key);
            self
        }

        /// Delays every call (see [`Script::latency`](crate::Script::latency)).
        #[must_use]
        pub fn latency(self, latency: std::time::Duration) -> Self {
            self.script().latency(latency);
            self
        }

        /// Delays calls involving `key` (see [`Script::latency_for`](crate::Script::latency_for)).
        #[must_use]
        pub fn latency_for(
            self,
            key: impl $crate::IntoResourceKey,
            latency: std::time::Duration,
        ) -> Self {
            self.script().latency_for(key, latency);
            self
        }
    };
}

pub(crate) use script_builders;
