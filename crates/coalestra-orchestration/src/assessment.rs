//! Health assessment: `Healthy`, `Degraded` or `Critical`, with findings.
//!
//! Current-state checks always apply; cumulative counters are judged only as
//! deltas against a previous [`BuilderHealth`].

use coalestra_core::ConfigError;
use coalestra_resilience::CircuitStatus;
use serde::Serialize;

use crate::health::BuilderHealth;

/// The assessment schema name.
pub const ASSESSMENT_SCHEMA: &str = "coalestra.builder-health-assessment";

/// How bad things are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Nothing to report.
    Healthy,
    /// Working with reduced quality.
    Degraded,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// A stable reason (for example `circuit_open`).
    pub reason: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// The metric observed.
    pub metric: String,
    /// The observed value.
    pub observed: f64,
    /// The threshold crossed.
    pub threshold: f64,
    /// The component concerned (empty when global).
    pub component: String,
}

/// The result of [`BuilderHealth::assess`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthAssessment {
    /// Always [`ASSESSMENT_SCHEMA`].
    pub schema: &'static str,
    /// Always 1.
    pub schema_version: u32,
    /// The worst finding's severity.
    pub severity: Severity,
    /// Whether counters were compared with a previous snapshot.
    pub baseline_used: bool,
    /// Unique reasons, in finding order.
    pub reasons: Vec<&'static str>,
    /// Every finding, in a fixed order.
    pub findings: Vec<Finding>,
}

/// Thresholds of the assessment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthAssessmentPolicy {
    capacity_waiting_degraded: u64,
    capacity_waiting_critical_ratio: f64,
    submission_backlog_degraded_ratio: f64,
    submission_backlog_critical_ratio: f64,
    observability_backlog_degraded_ratio: f64,
    observability_backlog_critical_ratio: f64,
    counter_delta_degraded: u64,
    counter_delta_critical: u64,
}

impl Default for HealthAssessmentPolicy {
    fn default() -> Self {
        Self {
            capacity_waiting_degraded: 1,
            capacity_waiting_critical_ratio: 1.0,
            submission_backlog_degraded_ratio: 0.5,
            submission_backlog_critical_ratio: 0.9,
            observability_backlog_degraded_ratio: 0.5,
            observability_backlog_critical_ratio: 0.9,
            counter_delta_degraded: 1,
            counter_delta_critical: 5,
        }
    }
}

fn ratio_pair(degraded: f64, critical: f64, field: &'static str) -> Result<(), ConfigError> {
    if !degraded.is_finite() || !critical.is_finite() {
        return Err(ConfigError::NotFinite { field });
    }
    if !(degraded > 0.0 && degraded <= 1.0 && critical > 0.0 && critical <= 1.0) {
        return Err(ConfigError::invalid(field, "ratios must be in (0, 1]"));
    }
    if degraded > critical {
        return Err(ConfigError::invalid(
            field,
            "degraded ratio cannot exceed the critical ratio",
        ));
    }
    Ok(())
}

impl HealthAssessmentPolicy {
    /// Capacity waiters: degraded from `degraded` waiters, critical when the
    /// waiters of a limiter reach `critical_ratio` of its limit.
    pub fn with_capacity_waiting(
        mut self,
        degraded: u64,
        critical_ratio: f64,
    ) -> Result<Self, ConfigError> {
        if degraded == 0 {
            return Err(ConfigError::Zero {
                field: "capacity_waiting_degraded",
            });
        }
        if !critical_ratio.is_finite() || critical_ratio <= 0.0 {
            return Err(ConfigError::invalid(
                "capacity_waiting_critical_ratio",
                "must be finite and positive",
            ));
        }
        self.capacity_waiting_degraded = degraded;
        self.capacity_waiting_critical_ratio = critical_ratio;
        Ok(self)
    }

    /// Submission backlog ratios (pending / bound).
    pub fn with_submission_backlog(
        mut self,
        degraded: f64,
        critical: f64,
    ) -> Result<Self, ConfigError> {
        ratio_pair(degraded, critical, "submission_backlog")?;
        self.submission_backlog_degraded_ratio = degraded;
        self.submission_backlog_critical_ratio = critical;
        Ok(self)
    }

    /// Observability backlog ratios (pending / bound).
    pub fn with_observability_backlog(
        mut self,
        degraded: f64,
        critical: f64,
    ) -> Result<Self, ConfigError> {
        ratio_pair(degraded, critical, "observability_backlog")?;
        self.observability_backlog_degraded_ratio = degraded;
        self.observability_backlog_critical_ratio = critical;
        Ok(self)
    }

    /// Counter deltas: degraded from `degraded`, critical from `critical`.
    pub fn with_counter_delta(mut self, degraded: u64, critical: u64) -> Result<Self, ConfigError> {
        if degraded == 0 {
            return Err(ConfigError::Zero {
                field: "counter_delta_degraded",
            });
        }
        if critical < degraded {
            return Err(ConfigError::invalid(
                "counter_delta_critical",
                "cannot be below the degraded delta",
            ));
        }
        self.counter_delta_degraded = degraded;
        self.counter_delta_critical = critical;
        Ok(self)
    }
}

struct Findings(Vec<Finding>);

impl Findings {
    fn push(
        &mut self,
        reason: &'static str,
        severity: Severity,
        metric: &str,
        observed: f64,
        threshold: f64,
        component: String,
    ) {
        self.0.push(Finding {
            reason,
            severity,
            metric: metric.to_owned(),
            observed,
            threshold,
            component,
        });
    }

    fn ratio(
        &mut self,
        reason: &'static str,
        metric: &str,
        (pending, max): (u64, u64),
        (degraded, critical): (f64, f64),
        component: String,
    ) {
        if max == 0 {
            return;
        }
        let ratio = pending as f64 / max as f64;
        if ratio >= critical {
            self.push(
                reason,
                Severity::Critical,
                metric,
                ratio,
                critical,
                component,
            );
        } else if ratio >= degraded {
            self.push(
                reason,
                Severity::Degraded,
                metric,
                ratio,
                degraded,
                component,
            );
        }
    }
}

pub(crate) fn assess(
    h: &BuilderHealth,
    p: &HealthAssessmentPolicy,
    previous: Option<&BuilderHealth>,
) -> HealthAssessment {
    let mut f = Findings(Vec::new());
    if h.closed {
        f.push(
            "builder_closed",
            Severity::Critical,
            "closed",
            1.0,
            1.0,
            String::new(),
        );
    }
    if h.unsafe_blocking_source_count > 0 {
        let names: Vec<&str> = h
            .source_timeout_guarantees
            .values()
            .filter(|g| g.status.is_unsafe())
            .map(|g| g.source.as_str())
            .collect();
        f.push(
            "unsafe_blocking_source",
            Severity::Critical,
            "unsafe_blocking_source_count",
            h.unsafe_blocking_source_count as f64,
            1.0,
            names.join(","),
        );
    }
    if h.waiting_for_capacity >= p.capacity_waiting_degraded {
        let limiters = std::iter::once(&h.capacity.global).chain(h.capacity.sources.values());
        let worst = limiters
            .filter(|l| l.limit > 0)
            .map(|l| l.waiting as f64 / l.limit as f64)
            .fold(0.0_f64, f64::max);
        let severity = if worst >= p.capacity_waiting_critical_ratio {
            Severity::Critical
        } else {
            Severity::Degraded
        };
        f.push(
            "source_capacity_waiting",
            severity,
            "waiting_for_capacity",
            h.waiting_for_capacity as f64,
            p.capacity_waiting_degraded as f64,
            String::new(),
        );
    }
    if let Some(max) = h.max_pending_submissions {
        f.ratio(
            "submission_backlog_high",
            "pending_submissions",
            (h.pending_submissions, max),
            (
                p.submission_backlog_degraded_ratio,
                p.submission_backlog_critical_ratio,
            ),
            String::new(),
        );
    }
    for (name, buffer) in &h.observability_buffers {
        f.ratio(
            "observability_backlog_high",
            "observability_pending",
            (buffer.pending, buffer.max_pending),
            (
                p.observability_backlog_degraded_ratio,
                p.observability_backlog_critical_ratio,
            ),
            name.clone(),
        );
    }
    for (name, buffer) in &h.observability_buffers {
        if !buffer.worker_alive && !buffer.closed {
            f.push(
                "observability_worker_stopped",
                Severity::Critical,
                "worker_alive",
                0.0,
                1.0,
                name.clone(),
            );
        }
    }
    if h.cache.degraded {
        f.push(
            "cache_degraded",
            Severity::Degraded,
            "cache.degraded",
            1.0,
            1.0,
            String::new(),
        );
    }
    let open = h.circuits_in(CircuitStatus::Open);
    if open > 0 {
        f.push(
            "circuit_open",
            Severity::Degraded,
            "open_circuits",
            open as f64,
            1.0,
            String::new(),
        );
    }
    let half = h.circuits_in(CircuitStatus::HalfOpen);
    if half > 0 {
        f.push(
            "circuit_half_open",
            Severity::Degraded,
            "half_open_circuits",
            half as f64,
            1.0,
            String::new(),
        );
    }
    for (name, buffer) in &h.observability_buffers {
        if buffer.closed && buffer.worker_alive {
            f.push(
                "observability_shutdown_incomplete",
                Severity::Critical,
                "worker_alive",
                1.0,
                0.0,
                name.clone(),
            );
        }
    }
    if let Some(prev) = previous {
        let deltas: [(&'static str, &str, u64, u64); 8] = [
            (
                "queue_timeouts_increased",
                "queue_timeout_count",
                h.queue_timeout_count,
                prev.queue_timeout_count,
            ),
            (
                "source_timeouts_increased",
                "source_timeout_count",
                h.source_timeout_count,
                prev.source_timeout_count,
            ),
            (
                "source_transport_timeout_violations_increased",
                "source_transport_timeout_violation_count",
                h.source_transport_timeout_violation_count,
                prev.source_transport_timeout_violation_count,
            ),
            (
                "deadlines_exceeded_increased",
                "deadline_exceeded_count",
                h.deadline_exceeded_count,
                prev.deadline_exceeded_count,
            ),
            (
                "revalidation_failures_increased",
                "revalidation_failure_count",
                h.revalidation_failure_count,
                prev.revalidation_failure_count,
            ),
            (
                "observability_drops_increased",
                "observability_dropped_count",
                h.observability_dropped_count,
                prev.observability_dropped_count,
            ),
            (
                "observability_shutdown_timeouts_increased",
                "observability_shutdown_timeout_count",
                h.observability_shutdown_timeout_count,
                prev.observability_shutdown_timeout_count,
            ),
            (
                "observability_failures_increased",
                "observability_failure_count",
                h.observability_failure_count,
                prev.observability_failure_count,
            ),
        ];
        for (reason, field, now, before) in deltas {
            let delta = now.saturating_sub(before);
            if delta >= p.counter_delta_critical {
                f.push(
                    reason,
                    Severity::Critical,
                    &format!("delta_{field}"),
                    delta as f64,
                    p.counter_delta_critical as f64,
                    String::new(),
                );
            } else if delta >= p.counter_delta_degraded {
                f.push(
                    reason,
                    Severity::Degraded,
                    &format!("delta_{field}"),
                    delta as f64,
                    p.counter_delta_degraded as f64,
                    String::new(),
                );
            }
        }
    }
    let findings = f.0;
    let severity = findings
        .iter()
        .map(|x| x.severity)
        .max()
        .unwrap_or(Severity::Healthy);
    let mut reasons: Vec<&'static str> = Vec::new();
    for finding in &findings {
        if !reasons.contains(&finding.reason) {
            reasons.push(finding.reason);
        }
    }
    HealthAssessment {
        schema: ASSESSMENT_SCHEMA,
        schema_version: 1,
        severity,
        baseline_used: previous.is_some(),
        reasons,
        findings,
    }
}
