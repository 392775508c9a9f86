//! Builder-wide capacity: a global concurrency limit plus optional per-source
//! limits, handed out as RAII [`CapacityPermit`]s.
//!
//! See [`CapacityController`] for the acquisition rules.

mod config;
mod controller;
mod error;
mod limiter;
mod permit;
mod snapshot;

pub use config::{CapacityConfig, CapacityConfigError};
pub use controller::CapacityController;
pub use error::CapacityError;
pub use permit::CapacityPermit;
pub use snapshot::{CapacitySnapshot, LimitSnapshot};
