//! [`Payload`]: an immutable value shared by the cache, snapshots and callers.
//!
//! Payloads are `Arc`-backed, so a value stored in the cache, pinned in a
//! session and handed to many callers is one allocation that nobody can
//! mutate. This replaces the defensive deep copies a dynamic language needs.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use crate::error::TypeMismatch;

/// An immutable, shared, type-erased value.
///
/// ```
/// use coalestra_core::Payload;
///
/// let payload = Payload::new(42_u64);
/// assert_eq!(*payload.get::<u64>()?, 42);
/// assert!(payload.get::<String>().is_err());
/// # Ok::<(), coalestra_core::TypeMismatch>(())
/// ```
#[derive(Clone)]
pub struct Payload {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

impl Payload {
    /// Wraps a value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self {
            value: Arc::new(value),
            type_name: std::any::type_name::<T>(),
        }
    }

    /// Wraps an already shared value without copying it.
    pub fn from_arc<T: Any + Send + Sync>(value: Arc<T>) -> Self {
        Self {
            value,
            type_name: std::any::type_name::<T>(),
        }
    }

    /// Borrows the value as `T`, or reports the type mismatch.
    pub fn get<T: Any>(&self) -> Result<&T, TypeMismatch> {
        self.value
            .downcast_ref::<T>()
            .ok_or_else(|| self.mismatch::<T>())
    }

    /// Shares the value as `Arc<T>`, or reports the type mismatch.
    pub fn get_arc<T: Any + Send + Sync>(&self) -> Result<Arc<T>, TypeMismatch> {
        Arc::clone(&self.value)
            .downcast::<T>()
            .map_err(|_| self.mismatch::<T>())
    }

    /// Whether the value is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        (*self.value).type_id() == TypeId::of::<T>()
    }

    /// The Rust type name of the stored value.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// Whether two payloads are the same allocation.
    pub fn ptr_eq(&self, other: &Payload) -> bool {
        Arc::ptr_eq(&self.value, &other.value)
    }

    fn mismatch<T>(&self) -> TypeMismatch {
        TypeMismatch {
            expected: std::any::type_name::<T>(),
            found: self.type_name,
            resource: None,
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload<{}>", self.type_name)
    }
}
