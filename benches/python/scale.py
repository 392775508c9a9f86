"""``scale-1m`` with the Python original, scaled down: distinct keys
streamed in builds of 1,000 through an inline batch source into an
``AsyncMemoryCache`` with a size bound, with a one-hour TTL so every key is
cached. See ``benches/src/scale.rs``.

The Python original needs about a millisecond per key here, so a million
keys would take a quarter of an hour per run: the key count and the bound
are ``COALESTRA_PY_SCALE_KEYS`` (default 20,000) and
``COALESTRA_PY_SCALE_BOUND`` (default 10,000). The report compares time per
key, and states both sizes next to the figures. One run (the workload is
its own warm-up: see the RSS figures).

Usage: ``python scale.py``
"""

from __future__ import annotations

import asyncio
import os
import time

from _common import emit, key, local_batch_source, record, selected
from coalestra import AsyncMemoryCache, FreshnessPolicy, SnapshotBuilder

BATCH = 1_000
MAX_RSS_GROWTH = 0.10


def memory_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB from /proc/self/status; zeros when unavailable."""
    fields = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                parts = line.split()
                if len(parts) >= 2 and parts[0] in fields:
                    fields[parts[0]] = int(parts[1])
    except OSError:
        pass
    return fields["VmRSS:"], fields["VmHWM:"]


async def main() -> None:
    if not selected("scale-1m"):
        return
    total = int(os.environ.get("COALESTRA_PY_SCALE_KEYS", "20000"))
    bound = int(os.environ.get("COALESTRA_PY_SCALE_BOUND", "10000"))
    cache = AsyncMemoryCache(max_entries=bound)
    builder = SnapshotBuilder(
        [local_batch_source("batch")],
        cache=cache,
        default_policy=FreshnessPolicy(ttl_seconds=3_600.0, max_stale_seconds=3_600.0),
    )
    warm_up = min(2 * bound, total // 2)
    build_time = 0.0
    max_size = 0
    rss_warm = rss_max_after = 0
    builds = 0
    start = 0
    while start < total:
        end = min(start + BATCH, total)
        resources = [key("scale", "S", i) for i in range(start, end)]
        started = time.perf_counter()
        snapshot = await builder.build(resources)
        build_time += time.perf_counter() - started
        assert snapshot.complete and len(snapshot) == end - start
        del snapshot
        crossed = start < warm_up <= end
        start = end
        builds += 1
        max_size = max(max_size, (await cache.stats()).size)
        if builds % 10 == 0 or crossed or start == total:
            rss, _ = memory_kib()
            if crossed:
                rss_warm = rss
            elif start > warm_up:
                rss_max_after = max(rss_max_after, rss)
    rss_final, peak = memory_kib()
    rss_max_after = max(rss_max_after, rss_final)
    growth = (rss_max_after / rss_warm - 1.0) if rss_warm else 0.0
    line = record("scale-1m", [build_time], keys=total, bound=bound, warm_up_keys=warm_up)
    line.update(
        us_per_key=build_time * 1e6 / total,
        keys_per_sec=total / build_time,
        max_cache_size=max_size,
        bound_respected=max_size <= bound,
        rss_after_warm_up_mib=rss_warm / 1024,
        rss_max_after_warm_up_mib=rss_max_after / 1024,
        rss_final_mib=rss_final / 1024,
        peak_rss_mib=peak / 1024,
        rss_growth_pct=growth * 100,
        memory_flat=growth <= MAX_RSS_GROWTH,
    )
    emit(line)
    await builder.aclose()


if __name__ == "__main__":
    asyncio.run(main())
