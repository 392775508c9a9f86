//! Test doubles of the fault-storm soak (`tests/soak.rs`): a seeded random
//! generator, chaotic mock sources with a per-key in-flight counter, and a
//! recording cache that keeps a shadow model of every write offered to the
//! cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use coalestra_cache::MemoryCache;
use coalestra_core::{
    CacheError, CacheHit, CacheRead, CacheStats, CacheWrite, Clock, FetchContext, FnBatchSource,
    FnDerivedSource, FnSource, ManualClock, ResourceKey, Snapshot, SnapshotCache, SnapshotValue,
    SourceError, SourceOptions, SourceOutput, Timestamp, WriteOutcome, WriteResult,
};

/// Locks a test mutex; the doubles never panic while holding one.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SplitMix64: small, seeded and reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The payload every source and publication produces: it names its key, so
/// a value served for the wrong key is caught.
pub fn payload_text(key: &ResourceKey, origin: &str, serial: u64) -> String {
    format!("{key}|{origin}|{serial}")
}

/// Whether a value's payload was produced for its own key.
pub fn payload_names_key(value: &SnapshotValue) -> bool {
    value
        .value::<String>()
        .is_ok_and(|text| text.split('|').next() == Some(&*value.key().to_string()))
}

/// The marker of injected panics (the soak's panic hook keeps them quiet).
pub const INJECTED_PANIC: &str = "soak: injected panic";

/// Counters of what the chaos injected, for the coverage check.
#[derive(Debug, Default)]
pub struct Injected {
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    pub slow: AtomicU64,
    pub panics: AtomicU64,
    pub stale: AtomicU64,
    pub future: AtomicU64,
}

/// One source call's fate, drawn from the shared generator.
#[derive(Debug, Clone, Copy)]
pub enum Fate {
    Ok {
        latency: Duration,
        age: Duration,
        stale_flag: bool,
        ahead: Option<Duration>,
    },
    Fail {
        latency: Duration,
        transient: bool,
    },
    Panic {
        latency: Duration,
    },
}

/// Shared chaos: the generator, the clock, and a switch to calm everything
/// down for the final usability check.
pub struct Chaos {
    rng: Mutex<Rng>,
    pub clock: ManualClock,
    pub calm: AtomicBool,
    pub injected: Injected,
    pub in_flight: InFlight,
    /// Values that carried another key's payload, seen by the derived source.
    pub lies: Mutex<Vec<String>>,
    serial: AtomicU64,
}

impl fmt::Debug for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos").finish_non_exhaustive()
    }
}

impl Chaos {
    pub fn new(seed: u64, clock: ManualClock) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(Rng::new(seed ^ 0x5EED_C4A0_5000_0001)),
            clock,
            calm: AtomicBool::new(false),
            injected: Injected::default(),
            in_flight: InFlight::default(),
            lies: Mutex::default(),
            serial: AtomicU64::new(0),
        })
    }

    pub fn serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed)
    }

    /// Draws one call: latency up to `max_latency_ms` (beyond the source
    /// timeout now and then), 10 % failures, 2 % panics, stale results
    /// (old observations or the stale flag), and observations slightly or
    /// far in the future.
    pub fn draw(&self, max_latency_ms: u64) -> Fate {
        let injected = &self.injected;
        injected.calls.fetch_add(1, Ordering::Relaxed);
        if self.calm.load(Ordering::SeqCst) {
            return Fate::Ok {
                latency: Duration::ZERO,
                age: Duration::ZERO,
                stale_flag: false,
                ahead: None,
            };
        }
        let mut rng = lock(&self.rng);
        let latency = if rng.chance(8) {
            injected.slow.fetch_add(1, Ordering::Relaxed);
            rng.millis(max_latency_ms * 3)
        } else {
            rng.millis(max_latency_ms)
        };
        let roll = rng.below(100);
        if roll < 10 {
            injected.failures.fetch_add(1, Ordering::Relaxed);
            return Fate::Fail {
                latency,
                transient: rng.chance(70),
            };
        }
        if roll < 12 {
            injected.panics.fetch_add(1, Ordering::Relaxed);
            return Fate::Panic { latency };
        }
        let (age, stale_flag) = match rng.below(100) {
            0..=4 => {
                injected.stale.fetch_add(1, Ordering::Relaxed);
                (Duration::from_millis(2_000 + rng.below(12_000)), false)
            }
            5..=7 => {
                injected.stale.fetch_add(1, Ordering::Relaxed);
                (rng.millis(500), true)
            }
            _ => (rng.millis(900), false),
        };
        let ahead = match rng.below(100) {
            0..=1 => Some(rng.millis(800)),
            2 => Some(Duration::from_millis(1_500 + rng.below(5_000))),
            _ => None,
        };
        if ahead.is_some() {
            injected.future.fetch_add(1, Ordering::Relaxed);
        }
        Fate::Ok {
            latency,
            age,
            stale_flag,
            ahead,
        }
    }

    /// The output of a successful fate.
    fn output(
        &self,
        key: &ResourceKey,
        origin: &str,
        age: Duration,
        stale: bool,
        ahead: Option<Duration>,
    ) -> SourceOutput {
        let now = self.clock.now();
        let observed = match ahead {
            Some(ahead) => Timestamp::from_secs(now.as_secs() + ahead.as_secs_f64()),
            None => Timestamp::from_secs(now.as_secs() - age.as_secs_f64()),
        };
        let output =
            SourceOutput::new(payload_text(key, origin, self.serial())).observed_at(observed);
        if stale {
            output.stale()
        } else {
            output
        }
    }
}

/// Runs one fate for `keys` inside the source call (so that a call dropped
/// by a timeout or a cancelled owner also drops its in-flight guard).
async fn play(
    chaos: &Chaos,
    fate: Fate,
    origin: &'static str,
    keys: &[ResourceKey],
) -> Result<Vec<(ResourceKey, SourceOutput)>, SourceError> {
    let _guards: Vec<FetchGuard<'_>> = keys
        .iter()
        .map(|key| chaos.in_flight.enter(key, origin))
        .collect();
    match fate {
        Fate::Ok {
            latency,
            age,
            stale_flag,
            ahead,
        } => {
            tokio::time::sleep(latency).await;
            Ok(keys
                .iter()
                .map(|key| {
                    (
                        key.clone(),
                        chaos.output(key, origin, age, stale_flag, ahead),
                    )
                })
                .collect())
        }
        Fate::Fail { latency, transient } => {
            tokio::time::sleep(latency).await;
            if transient {
                Err(SourceError::unavailable(format!("{origin} is down")))
            } else {
                Err(SourceError::protocol(format!("{origin} sent garbage")))
            }
        }
        Fate::Panic { latency } => {
            tokio::time::sleep(latency).await;
            panic!("{INJECTED_PANIC} in {origin}");
        }
    }
}

/// A chaotic single-key source.
pub fn single(
    name: &'static str,
    chaos: &Arc<Chaos>,
    kinds: &'static [&'static str],
    max_latency_ms: u64,
) -> FnSource {
    let chaos = Arc::clone(chaos);
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        let chaos = Arc::clone(&chaos);
        async move {
            let fate = chaos.draw(max_latency_ms);
            let mut out = play(&chaos, fate, name, std::slice::from_ref(&key)).await?;
            Ok(out.pop().expect("one output per key").1)
        }
    })
    .with_supports(move |key| kinds.contains(&key.name()))
}

/// A chaotic batch source that also omits keys now and then.
pub fn batch(
    name: &'static str,
    chaos: &Arc<Chaos>,
    kinds: &'static [&'static str],
    max_latency_ms: u64,
) -> FnBatchSource {
    let chaos = Arc::clone(chaos);
    FnBatchSource::new(name, move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
        let chaos = Arc::clone(&chaos);
        async move {
            let fate = chaos.draw(max_latency_ms);
            let mut out = play(&chaos, fate, name, &keys).await?;
            if !chaos.calm.load(Ordering::SeqCst) && out.len() > 1 {
                let omit = (chaos.serial() % out.len() as u64) as usize;
                out.remove(omit);
            }
            Ok(out)
        }
    })
    .with_supports(move |key| kinds.contains(&key.name()))
}

/// A chaotic derived source: `spread:Kn` from `price:Kn` and `price:Kn+1`.
pub fn derived(
    name: &'static str,
    chaos: &Arc<Chaos>,
    inputs: fn(&ResourceKey) -> Vec<ResourceKey>,
) -> FnDerivedSource {
    let chaos = Arc::clone(chaos);
    FnDerivedSource::new(
        name,
        inputs,
        move |key: ResourceKey, deps: Snapshot, _ctx: FetchContext| {
            let chaos = Arc::clone(&chaos);
            async move {
                for dep in inputs(&key) {
                    let value = deps.get(&dep).ok_or_else(|| {
                        SourceError::protocol(format!("dependency {dep} missing"))
                    })?;
                    if !payload_names_key(value) {
                        lock(&chaos.lies)
                            .push(format!("dependency {dep} of {key} carries {value:?}"));
                    }
                }
                let fate = chaos.draw(20);
                let mut out = play(&chaos, fate, name, std::slice::from_ref(&key)).await?;
                Ok(out.pop().expect("one output per key").1)
            }
        },
    )
    .with_supports(|key| key.name() == "spread")
}

/// Per-key count of source calls in flight, and the largest ever seen.
#[derive(Debug, Default)]
pub struct InFlight {
    current: Mutex<HashMap<ResourceKey, (usize, &'static str)>>,
    max_seen: AtomicUsize,
    violations: Mutex<Vec<String>>,
    total: AtomicU64,
}

/// Leaves the in-flight count of one key when dropped.
pub struct FetchGuard<'a> {
    in_flight: &'a InFlight,
    key: ResourceKey,
}

impl InFlight {
    pub fn enter(&self, key: &ResourceKey, origin: &'static str) -> FetchGuard<'_> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut current = lock(&self.current);
        let slot = current.entry(key.clone()).or_insert((0, origin));
        slot.0 += 1;
        if slot.0 > 1 {
            lock(&self.violations).push(format!(
                "{} fetches of {key} in flight at once ({} and {origin})",
                slot.0, slot.1
            ));
        }
        slot.1 = origin;
        self.max_seen.fetch_max(slot.0, Ordering::SeqCst);
        FetchGuard {
            in_flight: self,
            key: key.clone(),
        }
    }

    pub fn max_seen(&self) -> usize {
        self.max_seen.load(Ordering::SeqCst)
    }

    pub fn now(&self) -> usize {
        lock(&self.current).values().map(|(n, _)| n).sum()
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }
}

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        let mut current = lock(&self.in_flight.current);
        if let Some(slot) = current.get_mut(&self.key) {
            slot.0 -= 1;
            if slot.0 == 0 {
                current.remove(&self.key);
            }
        }
    }
}

// ------------------------------------------------------------ the cache ----

/// The strength the write rule orders revisions by.
pub type Strength = (i64, f64);

pub fn strength(value: &SnapshotValue) -> Strength {
    (value.authority_rank(), value.observed_at().as_secs())
}

fn stronger(a: Strength, b: Strength) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
}

/// The documented write rule (`SnapshotCache`), written independently.
fn rule(candidate: &CacheWrite, previous: Option<Strength>) -> WriteOutcome {
    let Some(previous) = previous else {
        return WriteOutcome::Stored;
    };
    let own = strength(&candidate.value);
    if candidate.force || stronger(own, previous) {
        WriteOutcome::Stored
    } else if own.0 < previous.0 {
        WriteOutcome::IgnoredLowerAuthority
    } else if own.1 < previous.1 {
        WriteOutcome::IgnoredOlder
    } else if candidate.replace_equal {
        WriteOutcome::Stored
    } else {
        WriteOutcome::IgnoredDuplicate
    }
}

/// What the shadow model saw.
#[derive(Debug, Default)]
pub struct ShadowModel {
    /// Per key: the strength the cache must hold (`None`: nothing), i.e.
    /// the strongest revision offered since the key was last removed (or
    /// the last forced one).
    expected: HashMap<ResourceKey, Option<Strength>>,
    /// Forced writes the test itself asked for (publications with
    /// `force`), per key; any other forced write is a violation.
    force_allowed: HashMap<ResourceKey, u64>,
    pub offered: u64,
    pub forced: u64,
    pub removals: u64,
    pub violations: Vec<String>,
}

/// A [`SnapshotCache`] in front of a [`MemoryCache`] that records every
/// offered write and every removal in a [`ShadowModel`] and checks, after
/// each call, that the stored revision is the one the model expects.
///
/// The soak runs on one thread and `MemoryCache` never awaits inside a call,
/// so each call is atomic with respect to the model.
#[derive(Debug, Clone)]
pub struct RecordingCache {
    inner: MemoryCache,
    model: Arc<Mutex<ShadowModel>>,
}

impl RecordingCache {
    pub fn new() -> Self {
        Self {
            inner: MemoryCache::unbounded(),
            model: Arc::default(),
        }
    }

    pub fn model(&self) -> MutexGuard<'_, ShadowModel> {
        lock(&self.model)
    }

    /// Announces a forced publication of `key` (only those may force).
    pub fn allow_force(&self, key: &ResourceKey) {
        *self.model().force_allowed.entry(key.clone()).or_insert(0) += 1;
    }

    /// The strength the model expects for `key`.
    pub fn expected(&self, key: &ResourceKey) -> Option<Strength> {
        self.model().expected.get(key).copied().flatten()
    }

    fn check(&self, model: &mut ShadowModel, key: &ResourceKey, when: &str) {
        let stored = self.inner.peek(key).map(|v| strength(&v));
        let expected = model.expected.get(key).copied().flatten();
        if stored != expected {
            model.violations.push(format!(
                "after {when}: {key} holds {stored:?}, the shadow model expects {expected:?}"
            ));
        }
    }

    fn removed(&self, keys: &[ResourceKey], when: &str) {
        let mut model = self.model();
        for key in keys {
            model.removals += 1;
            model.expected.insert(key.clone(), None);
            self.check(&mut model, key, when);
        }
    }
}

#[async_trait]
impl SnapshotCache for RecordingCache {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        let before: Vec<bool> = reads
            .iter()
            .map(|r| self.inner.peek(&r.key).is_some())
            .collect();
        let hits = self.inner.get_many(reads, now).await?;
        // Reads remove expired entries and derived entries whose inputs
        // changed; the model follows.
        let gone: Vec<ResourceKey> = reads
            .iter()
            .zip(before)
            .filter(|(read, was)| *was && self.inner.peek(&read.key).is_none())
            .map(|(read, _)| read.key.clone())
            .collect();
        self.removed(&gone, "a read removed an entry");
        Ok(hits)
    }

    async fn write_many(&self, writes: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError> {
        let candidates = writes.clone();
        let results = self.inner.write_many(writes).await?;
        let mut model = self.model();
        // Per key: forced candidates leave the strongest forced one; other
        // candidates only ever raise the expected strength.
        let mut forced: HashMap<ResourceKey, Strength> = HashMap::new();
        for candidate in &candidates {
            model.offered += 1;
            let own = strength(&candidate.value);
            let key = candidate.value.key().clone();
            if candidate.force {
                model.forced += 1;
                match model.force_allowed.get_mut(&key) {
                    Some(allowed) if *allowed > 0 => *allowed -= 1,
                    _ => model.violations.push(format!(
                        "a forced write of {key} nobody asked for: {:?}",
                        candidate.value
                    )),
                }
                let best = forced.entry(key).or_insert(own);
                if stronger(own, *best) {
                    *best = own;
                }
            } else if !forced.contains_key(&key) {
                let slot = model.expected.entry(key).or_insert(None);
                if slot.is_none_or(|held| stronger(own, held)) {
                    *slot = Some(own);
                }
            }
        }
        for (key, best) in forced {
            model.expected.insert(key, Some(best));
        }
        for (candidate, result) in candidates.iter().zip(&results) {
            let previous = result.previous.as_ref().map(strength);
            let expected = rule(candidate, previous);
            if result.outcome != expected {
                model.violations.push(format!(
                    "write of {} {:?} against {previous:?} reported {:?}, the rule says {expected:?}",
                    candidate.value.key(),
                    strength(&candidate.value),
                    result.outcome
                ));
            }
        }
        for candidate in &candidates {
            self.check(&mut model, candidate.value.key(), "a write");
        }
        Ok(results)
    }

    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        let removed = self.inner.invalidate_many(keys).await?;
        self.removed(keys, "an invalidation");
        Ok(removed)
    }

    async fn invalidate_namespace(&self, namespace: &str) -> Result<Vec<ResourceKey>, CacheError> {
        let removed = self.inner.invalidate_namespace(namespace).await?;
        self.removed(&removed, "a namespace invalidation");
        Ok(removed)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let keys = self.inner.keys();
        let removed = self.inner.clear().await?;
        self.removed(&keys, "a clear");
        Ok(removed)
    }

    fn stats(&self) -> CacheStats {
        self.inner.stats()
    }

    fn validates_dependency_versions(&self) -> bool {
        self.inner.validates_dependency_versions()
    }
}
