"""``session-revalidate`` with the Python original: a session of 200 pinned
keys revalidating 10 of them (inline source, no cache). See
``benches/src/session.rs``.

Usage: ``python session.py``
"""

from __future__ import annotations

import asyncio

from _common import emit, keys, local_source, record, runs, sample, selected, timed
from coalestra import FreshnessPolicy, SnapshotBuilder


async def main() -> None:
    if not selected("session-revalidate"):
        return
    builder = SnapshotBuilder([local_source("local")], default_policy=FreshnessPolicy(ttl_seconds=0.0))
    session = builder.session()
    resources = keys("session", "K", 200)
    pinned = await session.resolve(resources)
    assert len(pinned) == 200
    revalidated = resources[:10]
    seconds = await sample(lambda: timed(session.revalidate(revalidated)), runs())
    emit(record("session-revalidate", seconds))
    await session.close()
    await builder.aclose()


if __name__ == "__main__":
    asyncio.run(main())
