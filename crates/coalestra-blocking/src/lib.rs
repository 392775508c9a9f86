//! `coalestra-blocking`: filled in by its issue.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
