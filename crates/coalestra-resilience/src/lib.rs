//! Resilience for Coalestra source calls: retries with deadline-aware
//! back-off, scoped circuit breakers and policy resolution.
//!
//! The policy *data* ([`RetryPolicy`], [`CircuitBreakerPolicy`],
//! [`ResiliencePolicy`]) lives in `coalestra-core`; this crate runs it on
//! tokio:
//! - [`run_with_retry`] executes an async operation under a [`RetryPolicy`],
//!   never sleeping past a deadline.
//! - [`CircuitBreakers`] tracks one circuit per [`CircuitIdentity`] (a source,
//!   narrowed by the policy's [`CircuitScope`]) through the closed, open and
//!   half-open states.
//! - [`ResilienceResolver`] picks the policy that applies to a source.
//!
//! ```
//! use coalestra_core::{CircuitBreakerPolicy, CircuitScope, ResourceKey};
//! use coalestra_resilience::{CircuitBreakers, CircuitIdentity};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
//! # runtime.block_on(async {
//! let breakers = CircuitBreakers::new();
//! let policy = CircuitBreakerPolicy::default();
//! let key = ResourceKey::parse("market:price:BTCUSDT")?;
//! let identity = CircuitIdentity::for_key("exchange", &key, CircuitScope::Namespace);
//! assert_eq!(identity.to_string(), "exchange[namespace]:market");
//!
//! let permit = breakers.before_call(&identity, &policy)?;
//! permit.success();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod breaker;
mod identity;
mod resolver;
mod retry;

pub use breaker::{CircuitBreakers, CircuitOpen, CircuitPermit, CircuitState, CircuitStatus};
pub use coalestra_core::resilience::RetryOn;
pub use coalestra_core::{CircuitBreakerPolicy, CircuitScope, ResiliencePolicy, RetryPolicy};
pub use identity::CircuitIdentity;
pub use resolver::{DynamicResiliencePolicy, ResilienceResolver, ResilienceResolverBuilder};
pub use retry::{run_with_retry, RetryOutcome};
