"""Shared helpers of the Python side of ``cargo xtask bench-compare``.

Every script in this directory implements some of the workloads of issue 9
with the Python original (``coalestra==0.6.4``), using the same keys,
latencies and policies as the Rust workloads in ``benches/src``, and prints
one JSON object per line:

    {"workload": "hot-cache-200", "implementation": "python",
     "median_ms": 104.2, "runs": 10, ...}

The number of timed runs is ``COALESTRA_PY_RUNS`` (default 10, never less
than 10 unless the variable says so explicitly, e.g. while iterating); one
untimed warm-up run precedes them.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from coalestra import CallableBatchSource, CallableSource, ResourceKey

NAMESPACE = "bench"
DEFAULT_RUNS = 10


def runs() -> int:
    """Timed runs per workload."""
    value = int(os.environ.get("COALESTRA_PY_RUNS", DEFAULT_RUNS))
    if value < 1:
        raise ValueError("COALESTRA_PY_RUNS must be at least 1")
    return value


def key(name: str, prefix: str, index: int) -> ResourceKey:
    """The key ``bench/<name>/<prefix><index:07d>`` (as ``benches/src/lib.rs``)."""
    return ResourceKey(NAMESPACE, name, f"{prefix}{index:07d}")


def keys(name: str, prefix: str, count: int) -> list[ResourceKey]:
    return [key(name, prefix, i) for i in range(count)]


def value_for(resource: ResourceKey) -> float:
    """The value every benchmark source returns: the subject's length."""
    return float(len(resource.subject))


def local_source(name: str) -> CallableSource:
    """A synchronous source called inline on the event loop (Rust: ``.inline()``)."""
    return CallableSource(
        name=name,
        priority=0,
        supports=lambda _key: True,
        fetcher=lambda resource, _context: value_for(resource),
        run_sync_in_thread=False,
    )


def local_batch_source(name: str) -> CallableBatchSource:
    """A synchronous batch source called inline on the event loop."""
    return CallableBatchSource(
        name=name,
        priority=0,
        supports=lambda _key: True,
        fetcher=lambda resources, _context: {r: value_for(r) for r in resources},
        run_sync_in_thread=False,
    )


def selected(name: str) -> bool:
    """Whether ``--only a,b`` on the command line (if any) selects ``name``."""
    if "--only" not in sys.argv:
        return True
    index = sys.argv.index("--only")
    wanted = sys.argv[index + 1].split(",") if index + 1 < len(sys.argv) else []
    return name in wanted


async def sample(once: Callable[[], Awaitable[float]], count: int) -> list[float]:
    """One warm-up call of ``once`` then ``count`` timed calls; seconds each.

    ``once`` returns the time it measured itself, so setup can be left out.
    """
    await once()
    return [await once() for _ in range(count)]


async def timed(awaitable: Awaitable[object]) -> float:
    started = time.perf_counter()
    await awaitable
    return time.perf_counter() - started


def record(workload: str, seconds: list[float], **extra: object) -> dict[str, object]:
    """A report line of ``workload`` from per-run times in seconds."""
    line: dict[str, object] = {
        "workload": workload,
        "implementation": "python",
        "median_ms": statistics.median(seconds) * 1e3,
        "min_ms": min(seconds) * 1e3,
        "max_ms": max(seconds) * 1e3,
        "runs": len(seconds),
        "iters_per_run": 1,
    }
    line.update(extra)
    return line


def emit(line: dict[str, object]) -> None:
    print(json.dumps(line, sort_keys=True), flush=True)
    print(f"python: {line['workload']}: median {line['median_ms']:.3f} ms", file=sys.stderr)
