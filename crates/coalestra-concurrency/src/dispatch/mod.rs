//! Bounded dispatch: run one future per item, at most N at a time, inside the
//! calling task.
//!
//! Unlike spawning, the item futures need be neither `Send` nor `'static`:
//! they are polled by the task that awaits the dispatch, may borrow from its
//! stack, and are dropped with it when it is cancelled.

mod ready;
mod run;

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::num::NonZeroUsize;

use run::BoundedRun;

/// Runs `f(item)` for every item with at most `max_workers` futures in flight,
/// and returns their outputs in input order.
///
/// Items are taken from `items` lazily: the next one is started as soon as a
/// running one finishes. All futures are polled inside the calling task (no
/// `tokio::spawn`), so they may borrow local data. Dropping the returned
/// future drops every item future still in flight and starts no more.
///
/// # Examples
///
/// ```
/// use std::num::NonZeroUsize;
///
/// use coalestra_concurrency::dispatch_bounded;
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     let prefix = String::from("source-");
///     let ids = [3, 1, 2];
///     // The futures borrow `prefix`: nothing is spawned.
///     let names = dispatch_bounded(ids, NonZeroUsize::new(2).unwrap(), |id| {
///         let prefix = &prefix;
///         async move { format!("{prefix}{id}") }
///     })
///     .await;
///     assert_eq!(names, ["source-3", "source-1", "source-2"]);
/// }
/// ```
pub async fn dispatch_bounded<I, F, Fut, T>(items: I, max_workers: NonZeroUsize, f: F) -> Vec<T>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = T>,
{
    let outputs = collect_in_order(items, max_workers, f, Ok::<T, Infallible>).await;
    match outputs {
        Ok(outputs) => outputs,
        Err(never) => match never {},
    }
}

/// Like [`dispatch_bounded`] for fallible work: stops at the first error.
///
/// As soon as one item's future returns `Err`, no further item is taken from
/// `items`, every other future still in flight is dropped, and that error is
/// returned. Otherwise the outputs are returned in input order.
///
/// # Errors
///
/// The first error returned by an item future, in completion order.
///
/// # Examples
///
/// ```
/// use std::num::NonZeroUsize;
///
/// use coalestra_concurrency::try_dispatch_bounded;
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() {
///     let parsed = try_dispatch_bounded(["1", "x", "3"], NonZeroUsize::MIN, |text| async move {
///         text.parse::<u32>()
///     })
///     .await;
///     assert!(parsed.is_err());
/// }
/// ```
pub async fn try_dispatch_bounded<I, F, Fut, T, E>(
    items: I,
    max_workers: NonZeroUsize,
    f: F,
) -> Result<Vec<T>, E>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    collect_in_order(items, max_workers, f, |output| output).await
}

/// Output slots reserved up front at most, whatever the input claims to hold.
const PRESIZE_LIMIT: usize = 1024;

/// Drives a [`BoundedRun`], placing each accepted output at its input position.
async fn collect_in_order<I, F, Fut, T, E>(
    items: I,
    max_workers: NonZeroUsize,
    mut f: F,
    mut accept: impl FnMut(Fut::Output) -> Result<T, E>,
) -> Result<Vec<T>, E>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future,
{
    let mut items = items.into_iter();
    // A single item runs in place: no worker slot and no waker.
    if items.size_hint() == (1, Some(1)) {
        if let Some(item) = items.next() {
            return Ok(vec![accept(f(item).await)?]);
        }
    }
    let mut run = BoundedRun::new(items, max_workers, f);
    let mut outputs: Vec<Option<T>> = Vec::with_capacity(run.size_hint().min(PRESIZE_LIMIT));
    poll_fn(|cx| {
        run.poll_run(cx, |index, output| {
            let value = accept(output)?;
            if outputs.len() <= index {
                outputs.resize_with(index + 1, || None);
            }
            outputs[index] = Some(value);
            Ok(())
        })
    })
    .await?;
    // Every started item finished, so every position holds an output.
    debug_assert!(outputs.iter().all(Option::is_some));
    Ok(outputs.into_iter().flatten().collect())
}
