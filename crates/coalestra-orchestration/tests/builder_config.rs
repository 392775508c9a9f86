//! Catalogue area 22 (input validation), builder rules: a builder needs at
//! least one source with a unique, non-blank name (B22.18), positive
//! `max_pending_tasks` (B22.19) and `max_concurrency`, a positive support
//! cache bound and per-source limits naming known sources (B22.20), and
//! sources declaring positive timeouts (B22.15/B22.17, checked when the
//! builder is built). Rejections are `ConfigError`s naming the field.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{
    BuildOptions, ConfigError, FetchContext, FnBatchSource, FnDerivedSource, FnSource, ManualClock,
    ResourceKey, Snapshot, SourceOptions, SourceOutput, SourceRef,
};
use coalestra_orchestration::SnapshotBuilder;
use coalestra_test::key;

fn rest(name: &str) -> FnSource {
    FnSource::new(name, |_key: ResourceKey, _ctx: FetchContext| async move {
        Ok(SourceOutput::new(1_u64))
    })
}

fn batch(name: &str) -> FnBatchSource {
    FnBatchSource::new(
        name,
        |keys: Vec<ResourceKey>, _ctx: FetchContext| async move {
            Ok(keys
                .into_iter()
                .map(|k| (k, SourceOutput::new(1_u64)))
                .collect())
        },
    )
}

fn derived(name: &str) -> FnDerivedSource {
    FnDerivedSource::sync(
        name,
        |_key: &ResourceKey| Vec::new(),
        |_key: &ResourceKey, _deps: &Snapshot, _ctx: &FetchContext| Ok(SourceOutput::new(1_u64)),
    )
}

fn rejected(sources: Vec<SourceRef>) -> ConfigError {
    SnapshotBuilder::builder(sources)
        .build()
        .expect_err("the configuration is rejected")
}

fn assert_mentions(error: &ConfigError, needle: &str) {
    let text = error.to_string();
    assert!(text.contains(needle), "{needle:?} missing from {text:?}");
}

// ---------------------------------------------------------------- B22.18

#[test]
fn b22_18_a_builder_without_sources_is_rejected() {
    let error = rejected(Vec::new());

    assert_mentions(&error, "at least one source is required");
}

#[test]
fn b22_18_duplicate_source_names_are_rejected() {
    let error = rejected(vec![rest("rest").into(), rest("rest").into()]);
    assert_mentions(&error, "source names must be unique");
    assert_mentions(&error, "rest");

    // Across kinds, and after trimming.
    let error = rejected(vec![rest("feed").into(), batch(" feed ").into()]);
    assert_mentions(&error, "source names must be unique");

    // Added through `source`.
    let error = SnapshotBuilder::builder([rest("rest").into()])
        .source(derived("rest"))
        .build()
        .expect_err("duplicate");
    assert_mentions(&error, "source names must be unique");
}

#[test]
fn b22_17_blank_source_names_are_rejected_for_every_kind() {
    for source in [
        SourceRef::from(rest("")),
        SourceRef::from(rest("   ")),
        SourceRef::from(batch("")),
        SourceRef::from(derived(" \t ")),
    ] {
        let kind = source.kind();
        let error = rejected(vec![source]);
        assert!(
            matches!(error, ConfigError::Empty { .. }),
            "{kind}: {error:?}"
        );
        assert_mentions(&error, "source name cannot be empty");
    }
}

// ---------------------------------------------------------------- B22.19

#[test]
fn b22_19_zero_max_pending_tasks_is_rejected() {
    let error = SnapshotBuilder::builder([rest("rest").into()])
        .max_pending_tasks(0)
        .build()
        .expect_err("zero pending tasks");

    assert_mentions(&error, "max_pending_tasks");
    assert!(
        matches!(
            error,
            ConfigError::Zero {
                field: "max_pending_tasks"
            }
        ),
        "{error:?}"
    );
}

// ---------------------------------------------------------------- B22.20

#[test]
fn b22_20_zero_max_concurrency_is_rejected() {
    let error = SnapshotBuilder::builder([rest("rest").into()])
        .max_concurrency(0)
        .build()
        .expect_err("zero concurrency");

    assert_mentions(&error, "max_concurrency");
}

#[test]
fn b22_20_a_zero_support_cache_bound_is_rejected() {
    let error = SnapshotBuilder::builder([rest("rest").into()])
        .support_cache(Some(0))
        .build()
        .expect_err("zero bound");

    assert_mentions(&error, "support_cache");
}

#[test]
fn b22_20_per_source_limits_must_name_a_known_source_and_be_positive() {
    let error = SnapshotBuilder::builder([rest("rest").into()])
        .source_concurrency("ghost", 2)
        .build()
        .expect_err("unknown source");
    assert_mentions(&error, "source_concurrency");
    assert_mentions(&error, "ghost");

    let error = SnapshotBuilder::builder([rest("rest").into()])
        .source_concurrency("rest", 0)
        .build()
        .expect_err("zero limit");
    assert_mentions(&error, "source_concurrency");
}

#[test]
fn per_source_resilience_must_name_a_known_source() {
    let error = SnapshotBuilder::builder([rest("rest").into()])
        .source_resilience("ghost", coalestra_core::ResiliencePolicy::default())
        .build()
        .expect_err("unknown source");
    assert_mentions(&error, "source_resilience");
    assert_mentions(&error, "ghost");
}

// ------------------------------------------------- source declarations

#[test]
fn b22_15_zero_source_timeouts_are_rejected_when_the_builder_is_built() {
    let cases: Vec<(SourceRef, &str)> = vec![
        (rest("rest").with_timeout(Duration::ZERO).into(), "timeout"),
        (
            batch("batch").with_timeout(Duration::ZERO).into(),
            "timeout",
        ),
        (
            derived("derived").with_timeout(Duration::ZERO).into(),
            "timeout",
        ),
        (
            rest("rest").with_queue_timeout(Duration::ZERO).into(),
            "queue_timeout",
        ),
        (
            batch("batch").with_queue_timeout(Duration::ZERO).into(),
            "queue_timeout",
        ),
        (
            rest("rest").with_blocking_io(Some(Duration::ZERO)).into(),
            "transport_timeout",
        ),
    ];
    for (source, field) in cases {
        let name = source.name().to_owned();
        let text = rejected(vec![source]).to_string();
        assert!(
            text.contains(field) && text.contains("must be positive"),
            "{name}: {field:?} not reported in {text:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_zero_build_deadline_is_a_configuration_error() {
    let builder = SnapshotBuilder::builder([rest("rest").into()])
        .build()
        .expect("valid builder");

    let error = builder
        .build_with(
            [key("market:price:BTC")],
            BuildOptions::new().deadline(Duration::ZERO),
        )
        .await
        .expect_err("zero deadline");

    assert!(error.is_config(), "{error:?}");
    assert!(error.to_string().contains("deadline"), "{error}");
}

// ------------------------------------------------------ accepted configs

#[tokio::test(start_paused = true)]
async fn valid_limits_are_applied_and_declared_source_limits_can_be_overridden() {
    let clock = ManualClock::new(1_000.0);
    let declared = rest("declared").with_max_concurrency(NonZeroUsize::new(3).expect("non-zero"));
    let overridden = rest("overridden")
        .with_max_concurrency(NonZeroUsize::new(5).expect("non-zero"))
        .with_priority(-1);
    let builder = SnapshotBuilder::builder([declared.into(), overridden.into()])
        .source(batch("plain").with_priority(-2))
        .clock(Arc::new(clock))
        .max_concurrency(2)
        .max_pending_tasks(1)
        .source_concurrency("overridden", 1)
        .support_cache(None)
        .build()
        .expect("valid builder");

    let capacity = builder.capacity();
    assert_eq!(capacity.global.limit, 2);
    assert_eq!(capacity.sources.get("declared").map(|l| l.limit), Some(3));
    assert_eq!(capacity.sources.get("overridden").map(|l| l.limit), Some(1));
    assert!(!capacity.sources.contains_key("plain"), "no limit declared");
    assert_eq!(
        builder.source_names(),
        vec!["declared", "overridden", "plain"]
    );
    let snapshot = builder
        .build([key("market:price:BTC")])
        .await
        .expect("builds");
    assert_eq!(snapshot.len(), 1);
    assert_eq!(builder.support_cache_entries(), 0, "support cache disabled");
}
