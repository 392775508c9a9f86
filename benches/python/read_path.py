"""Read-path workloads with the Python original: ``hot-cache-200``,
``cold-local-200`` and ``batch-1000`` (see ``benches/src/read_path.rs``).

Usage: ``python read_path.py [--only hot-cache-200,cold-local-200,batch-1000]``
"""

from __future__ import annotations

import asyncio

from _common import (
    emit,
    keys,
    local_batch_source,
    local_source,
    record,
    runs,
    sample,
    selected,
    timed,
)
from coalestra import FreshnessPolicy, SnapshotBuilder

HOT_TTL_SECONDS = 3_600.0
NO_CACHE = FreshnessPolicy(ttl_seconds=0.0)


async def hot_cache() -> None:
    builder = SnapshotBuilder(
        [local_source("local")],
        default_policy=FreshnessPolicy(ttl_seconds=HOT_TTL_SECONDS, max_stale_seconds=HOT_TTL_SECONDS),
    )
    resources = keys("hot", "K", 200)
    warm = await builder.build(resources)
    assert len(warm) == 200 and warm.complete
    seconds = await sample(lambda: timed(builder.build(resources)), runs())
    emit(record("hot-cache-200", seconds))
    await builder.aclose()


async def cold(workload: str, source: object, name: str, count: int) -> None:
    builder = SnapshotBuilder([source], default_policy=NO_CACHE)
    resources = keys(name, "K", count)
    snapshot = await builder.build(resources)
    assert len(snapshot) == count and snapshot.complete
    seconds = await sample(lambda: timed(builder.build(resources)), runs())
    emit(record(workload, seconds))
    await builder.aclose()


async def main() -> None:
    if selected("hot-cache-200"):
        await hot_cache()
    if selected("cold-local-200"):
        await cold("cold-local-200", local_source("local"), "cold", 200)
    if selected("batch-1000"):
        await cold("batch-1000", local_batch_source("batch"), "batch", 1_000)


if __name__ == "__main__":
    asyncio.run(main())
