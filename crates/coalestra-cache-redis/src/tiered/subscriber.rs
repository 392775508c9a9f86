//! The subscriber task of a [`TieredCache`](super::TieredCache): receives
//! the other replicas' notifications and drops the matching L1 entries;
//! while it cannot, keeps L1 short-lived and keeps trying to resubscribe.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{ResourceKey, SnapshotCache};
use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Shared;
use crate::stats::bump;

/// A notification as published by the scripts.
#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(rename = "o")]
    origin: String,
    #[serde(rename = "k")]
    kind: String,
    #[serde(rename = "m", default)]
    members: Vec<String>,
}

/// Runs until `stop` turns true or its sender is dropped.
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = shared
        .config
        .reconnect_delay
        .min(shared.config.degraded_l1_ttl);
    let mut last_flush = Instant::now();
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok((sink, stream)) = subscribe(&shared).await {
            // Changes made while unsubscribed were not seen.
            shared.flush_l1();
            shared.pubsub_connected.store(true, Ordering::SeqCst);
            shared.changed.notify_waiters();
            tracing::debug!(target: "coalestra", channel = shared.l2.channel(), "subscribed to cache notifications");
            let stopped = listen(&shared, stream, &mut stop, period).await;
            drop(sink);
            // Flush first: whoever sees the subscription lost finds L1 empty.
            shared.flush_l1();
            shared.pubsub_connected.store(false, Ordering::SeqCst);
            last_flush = Instant::now();
            shared.changed.notify_waiters();
            if stopped {
                return;
            }
            tracing::warn!(target: "coalestra", "cache notifications lost; local tier degraded to a short ttl");
        }
        check_l2(&shared).await;
        if last_flush.elapsed() >= shared.config.degraded_l1_ttl {
            shared.flush_l1();
            bump(&shared.counters.flushes, 1);
            last_flush = Instant::now();
        }
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
            () = tokio::time::sleep(period) => {}
        }
    }
}

async fn subscribe(shared: &Shared) -> Result<(PubSubSink, PubSubStream), ()> {
    let link_timeout: Duration = shared.l2.inner().link.connect_timeout();
    let client = shared.l2.inner().link.client().clone();
    let channel = shared.l2.channel().to_owned();
    let attempt = async move {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    match tokio::time::timeout(link_timeout, attempt).await {
        Ok(Ok(split)) => Ok(split),
        Ok(Err(error)) => {
            tracing::debug!(target: "coalestra", %error, "cache notification subscription failed");
            Err(())
        }
        Err(_) => Err(()),
    }
}

/// Handles messages until the stream ends (`false`) or `stop` fires
/// (`true`).
async fn listen(
    shared: &Shared,
    mut stream: PubSubStream,
    stop: &mut watch::Receiver<bool>,
    period: Duration,
) -> bool {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => check_l2(shared).await,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return true;
                }
            }
            message = stream.next() => match message {
                Some(message) => handle(shared, message.get_payload_bytes()).await,
                None => return false,
            },
        }
    }
}

/// While L2 is unavailable, probes it (when its breaker allows); once it is
/// back, empties L1, which may hold revisions written while L2 could not
/// take them or miss changes made meanwhile by other replicas.
async fn check_l2(shared: &Shared) {
    if shared.l2.is_available() {
        return;
    }
    if shared.l2.recover().await {
        shared.flush_l1();
        shared.changed.notify_waiters();
        tracing::info!(target: "coalestra", "redis tier available again");
    }
}

async fn handle(shared: &Shared, payload: &[u8]) {
    let Ok(notification) = serde_json::from_slice::<Notification>(payload) else {
        tracing::debug!(target: "coalestra", "ignoring a malformed cache notification");
        return;
    };
    if notification.origin == shared.l2.instance_id() {
        return;
    }
    let dropped = match notification.kind.as_str() {
        "keys" => {
            let keys: Vec<ResourceKey> = notification
                .members
                .iter()
                .filter_map(|member| ResourceKey::parse(member).ok())
                .collect();
            for key in &keys {
                shared.epochs.bump(key);
            }
            shared
                .l1
                .invalidate_many(&keys)
                .await
                .map_or(0, |removed| removed.len() as u64)
        }
        "namespace" => {
            shared.epochs.bump_all();
            let mut dropped = 0;
            for namespace in &notification.members {
                dropped += shared
                    .l1
                    .invalidate_namespace(namespace)
                    .await
                    .map_or(0, |removed| removed.len() as u64);
            }
            dropped
        }
        "clear" => shared.flush_l1(),
        _ => return,
    };
    bump(&shared.counters.dropped, dropped);
    bump(&shared.counters.notifications, 1);
    shared.changed.notify_waiters();
}
