"""Latency-bound workloads with the Python original: ``coalesce-1000``
(1,000 concurrent builds of one key, 10 ms source, no cache) and
``latency-20`` (20 keys, 25 ms source, ``max_concurrency=20``, no cache).
See ``benches/src/concurrency.rs``.

Usage: ``python concurrency.py [--only coalesce-1000,latency-20]``
"""

from __future__ import annotations

import asyncio
import time

from _common import emit, key, keys, record, runs, selected, value_for
from coalestra import CallableSource, FreshnessPolicy, ResourceKey, SnapshotBuilder

NO_CACHE = FreshnessPolicy(ttl_seconds=0.0)


class SleepingSource:
    """An async source sleeping ``latency`` seconds per call and counting calls."""

    def __init__(self, name: str, latency: float) -> None:
        self.calls = 0
        self.latency = latency

        async def fetch(resource: ResourceKey, _context: object) -> float:
            self.calls += 1
            await asyncio.sleep(self.latency)
            return value_for(resource)

        self.source = CallableSource(name=name, priority=0, supports=lambda _k: True, fetcher=fetch)


async def latency_bound(workload: str, latency: float, run) -> None:
    """A warm-up run, then timed runs: median wall, ratio, calls per run."""
    await run()
    walls: list[float] = []
    calls: list[int] = []
    for _ in range(runs()):
        wall, made = await run()
        walls.append(wall)
        calls.append(made)
    line = record(workload, walls, latency_ms=latency * 1e3)
    line["ratio_to_latency"] = line["median_ms"] / (latency * 1e3)
    line["source_calls_min"] = min(calls)
    line["source_calls_max"] = max(calls)
    emit(line)


async def coalesce() -> None:
    slow = SleepingSource("slow", 0.010)
    builder = SnapshotBuilder([slow.source], default_policy=NO_CACHE)
    resource = key("coalesce", "K", 0)

    async def run() -> tuple[float, int]:
        before = slow.calls
        started = time.perf_counter()
        snapshots = await asyncio.gather(*(builder.build([resource]) for _ in range(1_000)))
        wall = time.perf_counter() - started
        assert all(s.complete for s in snapshots)
        return wall, slow.calls - before

    await latency_bound("coalesce-1000", slow.latency, run)
    await builder.aclose()


async def latency() -> None:
    remote = SleepingSource("remote", 0.025)
    builder = SnapshotBuilder([remote.source], default_policy=NO_CACHE, max_concurrency=20)
    resources = keys("latency", "K", 20)

    async def run() -> tuple[float, int]:
        before = remote.calls
        started = time.perf_counter()
        snapshot = await builder.build(resources)
        wall = time.perf_counter() - started
        assert snapshot.complete and len(snapshot) == 20
        return wall, remote.calls - before

    await latency_bound("latency-20", remote.latency, run)
    await builder.aclose()


async def main() -> None:
    if selected("coalesce-1000"):
        await coalesce()
    if selected("latency-20"):
        await latency()


if __name__ == "__main__":
    asyncio.run(main())
