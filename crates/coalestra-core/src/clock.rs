//! Wall time: [`Timestamp`], the [`Clock`] trait, a system clock and a manual
//! clock for tests.
//!
//! Observation times (`observed_at`, `fetched_at`) and freshness come from a
//! replaceable wall clock. Deadlines and timeouts do not: the engine measures
//! them on the async runtime's monotonic clock, so tests can pause time.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::ConfigError;

/// A point in wall time, in seconds since the Unix epoch (always finite).
#[derive(Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Timestamp(f64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0.0);

    /// Builds a timestamp from seconds since the epoch; rejects NaN and
    /// infinities with a [`ConfigError::NotFinite`] naming `field`.
    pub fn try_from_secs(secs: f64, field: &'static str) -> Result<Self, ConfigError> {
        if secs.is_finite() {
            Ok(Self(secs))
        } else {
            Err(ConfigError::NotFinite { field })
        }
    }

    /// Builds a timestamp from seconds since the epoch.
    ///
    /// Non-finite input is clamped to the epoch; use
    /// [`Timestamp::try_from_secs`] to reject it instead.
    pub fn from_secs(secs: f64) -> Self {
        if secs.is_finite() {
            Self(secs)
        } else {
            Self::EPOCH
        }
    }

    /// Converts a [`SystemTime`].
    pub fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(d.as_secs_f64()),
            Err(e) => Self(-e.duration().as_secs_f64()),
        }
    }

    /// Seconds since the epoch.
    pub fn as_secs(self) -> f64 {
        self.0
    }

    /// The non-negative time elapsed from `earlier` to `self` (zero when
    /// `earlier` is in the future).
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        let delta = self.0 - earlier.0;
        if delta > 0.0 {
            Duration::try_from_secs_f64(delta).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        }
    }

    /// Signed difference `self - other`, in seconds.
    pub fn seconds_since(self, other: Timestamp) -> f64 {
        self.0 - other.0
    }

    /// Total order helper (timestamps are always finite).
    pub fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0 + d.as_secs_f64())
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0 - d.as_secs_f64())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({:.6})", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.0)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

/// A source of wall time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall time.
    fn now(&self) -> Timestamp;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use coalestra_core::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(100.0);
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now().as_secs(), 105.0);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<f64>>);

impl ManualClock {
    /// A clock reading `start_secs` seconds since the epoch.
    pub fn new(start_secs: f64) -> Self {
        Self(Arc::new(Mutex::new(Timestamp::from_secs(start_secs).0)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.lock() += by.as_secs_f64();
    }

    /// Moves the clock forward by fractional seconds (ignored when not finite
    /// or negative).
    pub fn advance_secs(&self, secs: f64) {
        if secs.is_finite() && secs > 0.0 {
            *self.lock() += secs;
        }
    }

    /// Sets the clock to an absolute time.
    pub fn set(&self, to: Timestamp) {
        *self.lock() = to.0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, f64> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(1_000_000.0)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(*self.lock())
    }
}
