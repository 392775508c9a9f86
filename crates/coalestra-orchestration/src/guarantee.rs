//! Blocking-source timeout guarantees: a call running on the blocking pool
//! cannot be cancelled once started, so a source doing blocking I/O must be
//! offloaded and bounded by its own transport timeout, strictly inside its
//! source timeout.

use std::time::Duration;

use coalestra_core::{Execution, SourceInfo};
use serde::Serialize;

/// How well a source's blocking behaviour is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GuaranteeStatus {
    /// The source declares no blocking I/O (async or pure computation).
    NonBlocking,
    /// Blocking I/O, offloaded, with a transport timeout inside the budget.
    Protected,
    /// Blocking I/O that would run on an async worker.
    UnsafeNotOffloaded,
    /// Blocking I/O without a transport timeout.
    UnsafeTimeoutMissing,
    /// A transport timeout not strictly smaller than the source timeout.
    UnsafeTimeoutNotWithinSource,
}

impl GuaranteeStatus {
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonBlocking => "non_blocking",
            Self::Protected => "protected",
            Self::UnsafeNotOffloaded => "unsafe_not_offloaded",
            Self::UnsafeTimeoutMissing => "unsafe_timeout_missing",
            Self::UnsafeTimeoutNotWithinSource => "unsafe_timeout_not_within_source",
        }
    }

    /// Whether the declaration is unsafe.
    pub fn is_unsafe(self) -> bool {
        !matches!(self, Self::NonBlocking | Self::Protected)
    }
}

/// One source's declared timeout contract, as reported by health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeoutGuarantee {
    /// The source.
    pub source: String,
    /// The classification.
    pub status: GuaranteeStatus,
    /// Whether the source declares blocking I/O.
    pub blocking_io: bool,
    /// Whether its calls run on the blocking pool.
    pub blocking_io_offloaded: bool,
    /// The transport timeout its client enforces, in seconds.
    pub transport_timeout_seconds: Option<f64>,
    /// The source timeout, in seconds.
    pub source_timeout_seconds: Option<f64>,
}

impl TimeoutGuarantee {
    /// Classifies a source's declarations.
    pub fn classify(info: &dyn SourceInfo) -> Self {
        let blocking_io = info.blocking_io();
        let offloaded = info.execution() == Execution::Blocking;
        let transport = info.transport_timeout();
        let timeout = info.timeout();
        let status = if !blocking_io {
            GuaranteeStatus::NonBlocking
        } else if !offloaded {
            GuaranteeStatus::UnsafeNotOffloaded
        } else {
            match (transport, timeout) {
                (None, _) => GuaranteeStatus::UnsafeTimeoutMissing,
                (Some(t), Some(s)) if t >= s => GuaranteeStatus::UnsafeTimeoutNotWithinSource,
                _ => GuaranteeStatus::Protected,
            }
        };
        Self {
            source: info.name().trim().to_owned(),
            status,
            blocking_io,
            blocking_io_offloaded: blocking_io && offloaded,
            transport_timeout_seconds: transport.map(|d| d.as_secs_f64()),
            source_timeout_seconds: timeout.map(|d| d.as_secs_f64()),
        }
    }

    /// The declared transport timeout of a protected source.
    pub(crate) fn protected_transport(&self) -> Option<Duration> {
        (self.status == GuaranteeStatus::Protected)
            .then(|| self.transport_timeout_seconds.map(Duration::from_secs_f64))
            .flatten()
    }
}
