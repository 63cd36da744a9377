"""Synthetic traces of any size, for benchmarks and for trying a report on a huge trace.

``synthetic_points(100_000)`` returns the points of one trace shaped like a busy request: an
``api`` span calling ``rpc`` spans in a few services, each fanning out into ``db`` and
``cache`` calls, a few levels deep, with arguments and results recorded, about one span in
a thousand failing and a handful left unfinished. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import random
from typing import Any

from ..points import Point

__all__ = ["synthetic_points"]

_SERVICES = ("api", "scheduler", "compute", "network", "volume", "identity")
_NAMES = ("rpc", "db", "cache", "http", "render", "queue")


def synthetic_points(
    spans: int,
    *,
    base_id: str = "synthetic-trace",
    seed: int = 1,
    start_ns: int = 1_790_000_000_000_000_000,
    fanout: int = 8,
    unfinished: int = 5,
) -> list[Point]:
    """The start/stop points of one trace with ``spans`` spans (breadth-first tree)."""
    if spans < 1:
        raise ValueError("spans must be at least 1")
    rnd = random.Random(seed)
    salt = rnd.getrandbits(32)

    def jitter(k: int, m: int) -> int:  # cheap deterministic spread in [0, m)
        return ((k ^ salt) * 2654435761 >> 7) % m if m > 1 else 0

    # Parent of span k (k >= 1) in a complete ``fanout``-ary tree; times nest inside parents
    # (in ns; a leaf lasts at least a microsecond).
    begin = [0] * spans
    finish = [0] * spans
    finish[0] = 50_000 * spans + 10_000_000
    children_seen = [0] * spans
    open_spans = (
        set(rnd.sample(range(1, spans), min(unfinished, spans - 1))) if spans > 1 else set()
    )
    failing = {k for k in range(1, spans) if jitter(k * 7919, 1000) == 0}
    points: list[Point] = []
    append = points.append
    for k in range(spans):
        parent = (k - 1) // fanout if k else -1
        if parent >= 0:
            slot = children_seen[parent]
            children_seen[parent] += 1
            width = max(1_000, (finish[parent] - begin[parent]) // (fanout + 1))
            begin[k] = begin[parent] + slot * width + jitter(k, width // 4)
            finish[k] = begin[k] + width // 4 + jitter(k + 1, width // 2)
        tid = f"{base_id}-{k:x}"
        name = "api" if k == 0 else _NAMES[k % len(_NAMES)]
        service = _SERVICES[0] if k == 0 else _SERVICES[(k // fanout) % len(_SERVICES)]
        host = f"node-{(k // 64) % 16}"
        ptid = f"{base_id}-{parent:x}" if parent >= 0 else base_id
        common: dict[str, Any] = {
            "base_id": base_id,
            "trace_id": tid,
            "parent_id": ptid,
            "name": name,
            "service": service,
            "project": "synthetic",
            "host": host,
        }
        start: dict[str, Any] = dict(common)
        start.update(
            id=f"{tid}-start",
            event="start",
            timestamp=start_ns + begin[k],
            error=False,
            info={"function": {"name": f"app.{name}.call", "args": f"({k},)", "kwargs": "{}"}},
        )
        append(start)  # type: ignore[arg-type]
        if k in open_spans:
            continue
        failed = k in failing
        stop = common
        stop.update(
            id=f"{tid}-stop",
            event="stop",
            timestamp=start_ns + finish[k],
            error=failed,
            info={"etype": "TimeoutError", "message": f"call {k} timed out"}
            if failed
            else {"function": {"result": f"'ok-{k}'"}},
        )
        append(stop)  # type: ignore[arg-type]
    return points
