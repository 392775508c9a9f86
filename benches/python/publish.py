"""Publication workloads with the Python original: 10,000 ``publish`` calls
on distinct keys (a fresh builder per run, outside the measurement) and on
one key with increasing ``observed_at``. See ``benches/src/publish.rs``.

Each run takes seconds here, and builds its own builder, so there is no
separate warm-up run.

Usage: ``python publish.py [--only publish-distinct-10k,publish-one-key-10k]``
"""

from __future__ import annotations

import asyncio
import time

from _common import emit, key, keys, local_source, record, runs, selected
from coalestra import SnapshotBuilder

PUBLICATIONS = 10_000
SOURCE = "stream"
SERIES_START_AGO_SECONDS = 60.0
SERIES_STEP_SECONDS = 0.001


async def distinct_run(resources: list) -> float:
    builder = SnapshotBuilder([local_source("local")])
    publisher = builder.publisher
    started = time.perf_counter()
    for i, resource in enumerate(resources):
        await publisher.publish(resource, float(i), source=SOURCE)
    elapsed = time.perf_counter() - started
    await builder.aclose()
    return elapsed


async def one_key_run(resource) -> float:
    builder = SnapshotBuilder([local_source("local")])
    publisher = builder.publisher
    start = time.time() - SERIES_START_AGO_SECONDS
    started = time.perf_counter()
    for i in range(PUBLICATIONS):
        result = await publisher.publish(
            resource, float(i), source=SOURCE, observed_at=start + i * SERIES_STEP_SECONDS
        )
        assert result.published
    elapsed = time.perf_counter() - started
    await builder.aclose()
    return elapsed


def publish_record(workload: str, seconds: list[float]) -> dict[str, object]:
    line = record(workload, seconds, publications=PUBLICATIONS)
    line["us_per_publication"] = line["median_ms"] * 1e3 / PUBLICATIONS
    return line


async def main() -> None:
    if selected("publish-distinct-10k"):
        resources = keys("publish", "P", PUBLICATIONS)
        seconds = [await distinct_run(resources) for _ in range(runs())]
        emit(publish_record("publish-distinct-10k", seconds))
    if selected("publish-one-key-10k"):
        resource = key("publish-one", "P", 0)
        seconds = [await one_key_run(resource) for _ in range(runs())]
        emit(publish_record("publish-one-key-10k", seconds))


if __name__ == "__main__":
    asyncio.run(main())
