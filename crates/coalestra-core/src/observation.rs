//! [`ObservationPolicy`]: how far in the future an `observed_at` may be.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::{ConfigError, SourceError};

/// Accepts or rejects observation times ahead of the local clock.
///
/// A small skew (at most `future_tolerance`) is accepted and recorded as
/// `clock_skew_seconds` metadata; beyond it the value is rejected, unless
/// rejection is turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ObservationPolicy {
    future_tolerance: Duration,
    reject_future: bool,
}

impl Default for ObservationPolicy {
    /// One second of tolerance; values further ahead are rejected.
    fn default() -> Self {
        Self {
            future_tolerance: Duration::from_secs(1),
            reject_future: true,
        }
    }
}

impl ObservationPolicy {
    /// A policy with the given tolerance that rejects values beyond it.
    pub fn new(future_tolerance: Duration) -> Self {
        Self {
            future_tolerance,
            reject_future: true,
        }
    }

    /// A policy from fractional seconds; NaN, infinity and negative values
    /// are rejected.
    pub fn from_secs_f64(future_tolerance: f64) -> Result<Self, ConfigError> {
        const FIELD: &str = "future_tolerance";
        if !future_tolerance.is_finite() {
            return Err(ConfigError::NotFinite { field: FIELD });
        }
        if future_tolerance < 0.0 {
            return Err(ConfigError::Negative { field: FIELD });
        }
        let tolerance = Duration::try_from_secs_f64(future_tolerance)
            .map_err(|_| ConfigError::invalid(FIELD, "is too large"))?;
        Ok(Self::new(tolerance))
    }

    /// Whether values beyond the tolerance are rejected (default) or accepted
    /// with their skew recorded.
    #[must_use]
    pub fn with_reject_future(mut self, reject: bool) -> Self {
        self.reject_future = reject;
        self
    }

    /// The accepted future skew.
    pub fn future_tolerance(&self) -> Duration {
        self.future_tolerance
    }

    /// Whether values beyond the tolerance are rejected.
    pub fn rejects_future(&self) -> bool {
        self.reject_future
    }

    /// Checks an observation time against `now`: `Ok(None)` when it is not in
    /// the future, `Ok(Some(skew_seconds))` when accepted with skew, or a
    /// protocol error when rejected.
    pub fn check(
        &self,
        observed_at: Timestamp,
        now: Timestamp,
    ) -> Result<Option<f64>, SourceError> {
        let skew = observed_at.seconds_since(now);
        if skew <= 0.0 {
            return Ok(None);
        }
        if self.reject_future && skew > self.future_tolerance.as_secs_f64() {
            return Err(SourceError::InvalidTimestamp {
                message: format!(
                    "observed_at {observed_at} is {skew:.3}s in the future (tolerance {:.3}s)",
                    self.future_tolerance.as_secs_f64()
                )
                .into(),
            });
        }
        Ok(Some(skew))
    }
}
