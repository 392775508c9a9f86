//! [`RequestDegradationPolicy`] and its builder.

use std::sync::Arc;

use super::ResultState;
use crate::error::ConfigError;
use crate::metadata::Metadata;

type Actions = Arc<[Arc<str>]>;

fn actions(names: &[&str]) -> Actions {
    names.iter().map(|name| Arc::from(*name)).collect()
}

/// When a request's outcome is accepted, degraded or rejected, and which
/// actions each state allows.
///
/// The default policy rejects only when no resource resolved; any other
/// problem degrades the result. Defaults: at least 1 resolved resource, 0
/// resolved required resources, not fail-closed, no `reject_on_*` flag,
/// accepted actions `read, evaluate, act`, degraded actions `read, evaluate`,
/// no rejected action, no metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestDegradationPolicy {
    minimum_resolved_resources: usize,
    minimum_resolved_required_resources: usize,
    fail_closed: bool,
    reject_on_required_error: bool,
    reject_on_optional_error: bool,
    reject_on_consistency_violation: bool,
    reject_on_acceptance_violation: bool,
    accepted_actions: Actions,
    degraded_actions: Actions,
    rejected_actions: Actions,
    metadata: Metadata,
}

impl Default for RequestDegradationPolicy {
    fn default() -> Self {
        Self {
            minimum_resolved_resources: 1,
            minimum_resolved_required_resources: 0,
            fail_closed: false,
            reject_on_required_error: false,
            reject_on_optional_error: false,
            reject_on_consistency_violation: false,
            reject_on_acceptance_violation: false,
            accepted_actions: actions(&["read", "evaluate", "act"]),
            degraded_actions: actions(&["read", "evaluate"]),
            rejected_actions: actions(&[]),
            metadata: Metadata::new(),
        }
    }
}

impl RequestDegradationPolicy {
    /// Starts from the default policy.
    pub fn builder() -> RequestDegradationPolicyBuilder {
        Self::default().to_builder()
    }

    /// A builder holding this policy's settings.
    pub fn to_builder(&self) -> RequestDegradationPolicyBuilder {
        RequestDegradationPolicyBuilder {
            policy: self.clone(),
            accepted_actions: self.accepted_actions.to_vec(),
            degraded_actions: self.degraded_actions.to_vec(),
            rejected_actions: self.rejected_actions.to_vec(),
        }
    }

    /// Any problem rejects: fail-closed, every `reject_on_*` flag set, no
    /// degraded action.
    pub fn fail_closed() -> Self {
        Self {
            fail_closed: true,
            reject_on_required_error: true,
            reject_on_optional_error: true,
            reject_on_consistency_violation: true,
            reject_on_acceptance_violation: true,
            degraded_actions: actions(&[]),
            ..Self::default()
        }
    }

    /// Never acts: accepted results allow `read, evaluate`, degraded results
    /// allow `read` only.
    pub fn read_only_degraded() -> Self {
        Self {
            accepted_actions: actions(&["read", "evaluate"]),
            degraded_actions: actions(&["read"]),
            ..Self::default()
        }
    }

    /// Only risk-reducing actions: accepted results allow `read, evaluate,
    /// cancel_orders, reduce_only_exit`, degraded results `read,
    /// cancel_orders, reduce_only_exit`; consistency violations degrade
    /// rather than reject.
    pub fn risk_reduction() -> Self {
        Self {
            accepted_actions: actions(&["read", "evaluate", "cancel_orders", "reduce_only_exit"]),
            degraded_actions: actions(&["read", "cancel_orders", "reduce_only_exit"]),
            reject_on_consistency_violation: false,
            ..Self::default()
        }
    }

    /// The fewest request resources that must resolve (default 1).
    pub fn minimum_resolved_resources(&self) -> usize {
        self.minimum_resolved_resources
    }
    /// The fewest required resources that must resolve (default 0).
    pub fn minimum_resolved_required_resources(&self) -> usize {
        self.minimum_resolved_required_resources
    }
    /// Whether any problem rejects the result.
    pub fn is_fail_closed(&self) -> bool {
        self.fail_closed
    }
    /// Whether a required resource error rejects the result.
    pub fn reject_on_required_error(&self) -> bool {
        self.reject_on_required_error
    }
    /// Whether an optional resource error rejects the result.
    pub fn reject_on_optional_error(&self) -> bool {
        self.reject_on_optional_error
    }
    /// Whether a consistency violation rejects the result.
    pub fn reject_on_consistency_violation(&self) -> bool {
        self.reject_on_consistency_violation
    }
    /// Whether an acceptance violation rejects the result.
    pub fn reject_on_acceptance_violation(&self) -> bool {
        self.reject_on_acceptance_violation
    }
    /// Actions allowed on an accepted result.
    pub fn accepted_actions(&self) -> &[Arc<str>] {
        &self.accepted_actions
    }
    /// Actions allowed on a degraded result.
    pub fn degraded_actions(&self) -> &[Arc<str>] {
        &self.degraded_actions
    }
    /// Actions allowed on a rejected result.
    pub fn rejected_actions(&self) -> &[Arc<str>] {
        &self.rejected_actions
    }
    /// Actions allowed in `state`.
    pub fn actions_for(&self, state: ResultState) -> &[Arc<str>] {
        match state {
            ResultState::Accepted => &self.accepted_actions,
            ResultState::Degraded => &self.degraded_actions,
            ResultState::Rejected => &self.rejected_actions,
        }
    }
    /// Caller metadata, copied into every result.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
}

/// Builds a [`RequestDegradationPolicy`]; action names are trimmed and
/// de-duplicated (first occurrence kept) and empty names are rejected.
#[derive(Debug, Clone)]
pub struct RequestDegradationPolicyBuilder {
    policy: RequestDegradationPolicy,
    accepted_actions: Vec<Arc<str>>,
    degraded_actions: Vec<Arc<str>>,
    rejected_actions: Vec<Arc<str>>,
}

fn names<N: Into<Arc<str>>>(names: impl IntoIterator<Item = N>) -> Vec<Arc<str>> {
    names.into_iter().map(Into::into).collect()
}

fn normalize(field: &'static str, raw: &[Arc<str>]) -> Result<Actions, ConfigError> {
    let mut out: Vec<Arc<str>> = Vec::with_capacity(raw.len());
    for name in raw {
        let trimmed = name.trim();
        if trimmed.is_empty() {
            return Err(ConfigError::invalid(
                field,
                "cannot contain empty action names",
            ));
        }
        if !out.iter().any(|known| &**known == trimmed) {
            out.push(trimmed.into());
        }
    }
    Ok(out.into())
}

impl RequestDegradationPolicyBuilder {
    /// Sets the fewest request resources that must resolve.
    #[must_use]
    pub fn minimum_resolved_resources(mut self, minimum: usize) -> Self {
        self.policy.minimum_resolved_resources = minimum;
        self
    }
    /// Sets the fewest required resources that must resolve.
    #[must_use]
    pub fn minimum_resolved_required_resources(mut self, minimum: usize) -> Self {
        self.policy.minimum_resolved_required_resources = minimum;
        self
    }
    /// Sets whether any problem rejects the result.
    #[must_use]
    pub fn fail_closed(mut self, fail_closed: bool) -> Self {
        self.policy.fail_closed = fail_closed;
        self
    }
    /// Sets whether a required resource error rejects the result.
    #[must_use]
    pub fn reject_on_required_error(mut self, reject: bool) -> Self {
        self.policy.reject_on_required_error = reject;
        self
    }
    /// Sets whether an optional resource error rejects the result.
    #[must_use]
    pub fn reject_on_optional_error(mut self, reject: bool) -> Self {
        self.policy.reject_on_optional_error = reject;
        self
    }
    /// Sets whether a consistency violation rejects the result.
    #[must_use]
    pub fn reject_on_consistency_violation(mut self, reject: bool) -> Self {
        self.policy.reject_on_consistency_violation = reject;
        self
    }
    /// Sets whether an acceptance violation rejects the result.
    #[must_use]
    pub fn reject_on_acceptance_violation(mut self, reject: bool) -> Self {
        self.policy.reject_on_acceptance_violation = reject;
        self
    }
    /// Sets the actions allowed on an accepted result.
    #[must_use]
    pub fn accepted_actions<N: Into<Arc<str>>>(
        mut self,
        actions: impl IntoIterator<Item = N>,
    ) -> Self {
        self.accepted_actions = names(actions);
        self
    }
    /// Sets the actions allowed on a degraded result.
    #[must_use]
    pub fn degraded_actions<N: Into<Arc<str>>>(
        mut self,
        actions: impl IntoIterator<Item = N>,
    ) -> Self {
        self.degraded_actions = names(actions);
        self
    }
    /// Sets the actions allowed on a rejected result.
    #[must_use]
    pub fn rejected_actions<N: Into<Arc<str>>>(
        mut self,
        actions: impl IntoIterator<Item = N>,
    ) -> Self {
        self.rejected_actions = names(actions);
        self
    }
    /// Sets the caller metadata copied into every result.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.policy.metadata = metadata;
        self
    }

    /// The policy; an empty (or blank) action name is rejected with "cannot
    /// contain empty action names".
    pub fn build(self) -> Result<RequestDegradationPolicy, ConfigError> {
        Ok(RequestDegradationPolicy {
            accepted_actions: normalize("accepted_actions", &self.accepted_actions)?,
            degraded_actions: normalize("degraded_actions", &self.degraded_actions)?,
            rejected_actions: normalize("rejected_actions", &self.rejected_actions)?,
            ..self.policy
        })
    }
}
