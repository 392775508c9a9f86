//! Bounded, human-readable rendering of errors.

use std::fmt;

use super::{BuildError, ResourceError, SourceFailure};
use crate::key::ResourceKey;

const MAX_RESOURCES: usize = 5;
const MAX_FAILURES: usize = 3;
const RENDER_MESSAGE_LIMIT: usize = 120;

/// Collapses whitespace runs, replaces an empty message and truncates to
/// `limit` characters (with `...`).
pub(crate) fn compact(message: &str, limit: usize) -> String {
    let collapsed = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "<no message>".to_owned();
    }
    if collapsed.chars().count() <= limit {
        return collapsed;
    }
    let keep = limit.saturating_sub(3);
    let mut out: String = collapsed.chars().take(keep).collect();
    out.push_str("...");
    out
}

pub(crate) fn join_keys(path: &[ResourceKey]) -> String {
    path.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" -> ")
}

pub(crate) fn failures(f: &mut fmt::Formatter<'_>, failures: &[SourceFailure]) -> fmt::Result {
    if failures.is_empty() {
        return f.write_str("no compatible source");
    }
    for (i, failure) in failures.iter().take(MAX_FAILURES).enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(
            f,
            "{}: {}({}; attempts={})",
            failure.source,
            failure.error.error_type(),
            compact(&failure.error.to_string(), RENDER_MESSAGE_LIMIT),
            failure.attempts
        )?;
    }
    if failures.len() > MAX_FAILURES {
        write!(f, "; +{} more failure(s)", failures.len() - MAX_FAILURES)?;
    }
    Ok(())
}

fn resource(f: &mut fmt::Formatter<'_>, error: &ResourceError) -> fmt::Result {
    match error {
        ResourceError::Unresolved(e) => {
            write!(f, "{}=ResourceResolutionError[", e.key)?;
            failures(f, &e.failures)?;
            f.write_str("]")
        }
        other => write!(
            f,
            "{}={}({})",
            other.key(),
            other.error_type(),
            compact(&other.to_string(), RENDER_MESSAGE_LIMIT)
        ),
    }
}

/// `snapshot acceptance failed with N violation(s): <sorted distinct reasons>`.
fn acceptance_summary(
    f: &mut fmt::Formatter<'_>,
    violations: &[crate::acceptance::AcceptanceViolation],
) -> fmt::Result {
    let mut reasons: Vec<&str> = violations.iter().map(|v| v.reason().as_str()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    write!(
        f,
        "snapshot acceptance failed with {} violation(s): {}",
        violations.len(),
        reasons.join(", ")
    )
}

fn detail(f: &mut fmt::Formatter<'_>, error: &BuildError) -> fmt::Result {
    match &error.detail {
        Some(detail) => write!(f, " ({})", compact(detail, RENDER_MESSAGE_LIMIT)),
        None => Ok(()),
    }
}

pub(crate) fn build_error(f: &mut fmt::Formatter<'_>, error: &BuildError) -> fmt::Result {
    match &error.violation {
        Some(super::PolicyViolation::Consistency(violation)) => {
            write!(f, "{violation}")?;
            return detail(f, error);
        }
        Some(super::PolicyViolation::Acceptance(violations)) => {
            acceptance_summary(f, violations)?;
            return detail(f, error);
        }
        None => {}
    }
    let lead = match error.kind {
        super::BuildErrorKind::Resolution => "snapshot build failed",
        super::BuildErrorKind::Consistency => "snapshot consistency violated",
        super::BuildErrorKind::Acceptance => "snapshot acceptance failed",
    };
    f.write_str(lead)?;
    detail(f, error)?;
    if error.errors.is_empty() {
        return Ok(());
    }
    f.write_str(": ")?;
    for (i, e) in error.errors.iter().take(MAX_RESOURCES).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        resource(f, e)?;
    }
    if error.errors.len() > MAX_RESOURCES {
        write!(
            f,
            ", +{} more resource error(s)",
            error.errors.len() - MAX_RESOURCES
        )?;
    }
    Ok(())
}
