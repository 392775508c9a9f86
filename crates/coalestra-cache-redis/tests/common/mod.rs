//! Shared helpers of the Redis integration tests: server discovery (skip
//! locally, fail in CI), unique key prefixes and value builders.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coalestra_cache_redis::{CodecRegistry, RedisCache, RedisCacheConfig};
use coalestra_core::value::ValueParts;
use coalestra_core::{
    CacheWrite, FreshnessPolicy, Payload, PolicyResolver, ResourceKey, SnapshotValue, Timestamp,
};

/// The server the tests use unless `COALESTRA_REDIS_URL` says otherwise.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6399/";

pub fn redis_url() -> String {
    std::env::var("COALESTRA_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// Whether the tests run in CI, where a missing server is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|value| !value.is_empty() && value != "false" && value != "0")
        .unwrap_or(false)
}

/// Sends one `PING` to `url`.
pub async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let attempt = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// The server URL, or `None` (with the reason printed) when no server
/// answers outside CI. In CI a missing server fails the test.
pub async fn server_or_skip(test: &str) -> Option<String> {
    let url = redis_url();
    match ping(&url).await {
        Ok(()) => Some(url),
        Err(error) if in_ci() => {
            panic!("{test}: no redis server at {url} in CI ({error}); .ci/run starts one")
        }
        Err(error) => {
            eprintln!(
                "skipping {test}: no redis server at {url} ({error}); start one with \
                 `redis-server --port 6399 --save '' --appendonly no --daemonize yes` \
                 or set COALESTRA_REDIS_URL"
            );
            None
        }
    }
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(test: &str) -> String {
    format!("coalestra-test:{test}:{:016x}", random_u64())
}

/// One minute fresh, two minutes usable: entries expire on the server.
pub fn minute_policy() -> FreshnessPolicy {
    FreshnessPolicy::new(Duration::from_secs(60), Duration::from_secs(120)).unwrap()
}

/// Codecs for the shared test resource types (other types stay local).
pub fn price_codecs() -> CodecRegistry {
    CodecRegistry::new()
        .with_json::<f64>("market", "price")
        .with_json::<f64>("market", "double")
        .with_json::<i64>("race", "item")
        .with_json::<i64>("rule", "item")
}

pub fn config(url: &str, prefix: &str) -> RedisCacheConfig {
    RedisCacheConfig::new(url)
        .key_prefix(prefix)
        .policies(PolicyResolver::new(minute_policy()))
        .codecs(price_codecs())
}

pub fn cache(url: &str, prefix: &str) -> RedisCache {
    RedisCache::new(config(url, prefix)).expect("valid config")
}

pub fn key(text: &str) -> ResourceKey {
    text.parse().expect("valid key")
}

pub fn at(secs: f64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// A ranked `i64` or `f64` revision.
pub fn ranked<T: std::any::Any + Send + Sync>(
    key: &ResourceKey,
    payload: T,
    source: &str,
    rank: i64,
    observed_at: f64,
) -> SnapshotValue {
    let mut parts = ValueParts::new(key.clone(), Payload::new(payload), source, at(observed_at));
    parts.authority_rank = rank;
    SnapshotValue::from_parts(parts)
}

pub fn write(value: SnapshotValue) -> CacheWrite {
    CacheWrite::new(value)
}

pub fn forced(value: SnapshotValue) -> CacheWrite {
    CacheWrite {
        value,
        force: true,
        replace_equal: false,
    }
}

pub fn flagged(value: SnapshotValue, force: bool, replace_equal: bool) -> CacheWrite {
    CacheWrite {
        value,
        force,
        replace_equal,
    }
}

/// A policy under which every stored entry is usable.
pub fn forever() -> FreshnessPolicy {
    FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED)
}

/// A deterministic pseudo-random sequence.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// A redis-server child process on a free loopback port, killed on drop.
pub struct OwnServer {
    pub port: u16,
    child: Option<Child>,
}

impl OwnServer {
    /// Starts a server on a free port; `None` when `redis-server` is missing.
    pub fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut server = Self { port, child: None };
        server.restart().then_some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// (Re)starts the process on the same port; `false` when it cannot run.
    pub fn restart(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                self.child = Some(child);
                true
            }
            Err(_) => false,
        }
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the server answers.
    pub async fn wait_ready(&self) -> bool {
        for _ in 0..100 {
            if ping(&self.url()).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}
