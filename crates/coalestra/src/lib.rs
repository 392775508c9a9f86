//! Coalestra: consistent, immutable snapshots of resources from prioritized read-only sources.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
