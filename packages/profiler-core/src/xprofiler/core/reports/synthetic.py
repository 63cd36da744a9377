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
    # Parent of span k (k >= 1) in a complete ``fanout``-ary tree; times nest inside parents.
    begin = [0] * spans
    finish = [0] * spans
    begin[0], finish[0] = 0, 50 * spans + 10_000
    children_seen = [0] * spans
    points: list[Point] = []
    open_spans = (
        set(rnd.sample(range(1, spans), min(unfinished, spans - 1))) if spans > 1 else set()
    )
    for k in range(spans):
        parent = (k - 1) // fanout if k else -1
        if parent >= 0:
            slot = children_seen[parent]
            children_seen[parent] += 1
            width = max(1, (finish[parent] - begin[parent]) // (fanout + 1))
            begin[k] = begin[parent] + slot * width + rnd.randrange(1, max(2, width // 4))
            finish[k] = begin[k] + rnd.randrange(1, max(2, width - width // 4))
        tid = f"{base_id}-{k:x}"
        ptid = f"{base_id}-{parent:x}" if parent >= 0 else base_id
        name = "api" if k == 0 else _NAMES[k % len(_NAMES)]
        service = _SERVICES[0] if k == 0 else _SERVICES[(k // fanout) % len(_SERVICES)]
        common: dict[str, Any] = {
            "base_id": base_id,
            "trace_id": tid,
            "parent_id": ptid,
            "name": name,
            "service": service,
            "project": "synthetic",
            "host": f"node-{(k // 64) % 16}",
        }
        info = {"function": {"name": f"app.{name}.call", "args": f"({k},)", "kwargs": "{}"}}
        points.append(
            {
                **common,
                "id": f"{tid}-start",
                "event": "start",
                "timestamp": start_ns + begin[k] * 1000,
                "error": False,
                "info": info,
            }  # type: ignore[typeddict-item]
        )
        if k in open_spans:
            continue
        failed = k > 0 and rnd.random() < 0.001
        stop_info: dict[str, Any] = (
            {"etype": "TimeoutError", "message": f"call {k} timed out"}
            if failed
            else {"function": {"result": f"'ok-{k}'"}}
        )
        points.append(
            {
                **common,
                "id": f"{tid}-stop",
                "event": "stop",
                "timestamp": start_ns + finish[k] * 1000,
                "error": failed,
                "info": stop_info,
            }  # type: ignore[typeddict-item]
        )
    return points
