"""``/api/stats``: trace, error and span counts per service over a recent time window.

The counts come from ``list_traces`` (any driver), paged with a bounded number of rows so a
busy store cannot make one poll unbounded: at most ``max_traces`` traces (the newest) are
counted and ``truncated`` says when there were more. The window is capped at
``MAX_WINDOW_SECONDS``; the answer's ``window_seconds`` is the window actually used.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..points import TraceFilter, jsonable

__all__ = [
    "trace_stats",
    "DEFAULT_WINDOW_SECONDS",
    "MAX_WINDOW_SECONDS",
    "MAX_TRACES",
    "PAGE_SIZE",
]

log = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS = 3600
MAX_WINDOW_SECONDS = 7 * 86400
MAX_TRACES = 10_000
PAGE_SIZE = 500


def trace_stats(
    driver: Any,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    *,
    max_traces: int = MAX_TRACES,
    page_size: int = PAGE_SIZE,
) -> dict[str, Any]:
    """Counts over the traces that started within the last ``window_seconds`` (capped)."""
    window = max(1, min(int(window_seconds), MAX_WINDOW_SECONDS))
    now = time.time_ns()
    since = now - window * 1_000_000_000
    seen: set[str] = set()
    traces = errors = spans = 0
    services: dict[str, dict[str, int]] = {}
    truncated = False
    offset = 0
    while True:
        rows = driver.list_traces(
            TraceFilter(since=since, until=now, limit=page_size, offset=offset)
        )
        for row in rows:
            if row.base_id in seen:  # offsets shift when traces arrive while we page
                continue
            if len(seen) >= max_traces:
                truncated = True
                break
            seen.add(row.base_id)
            traces += 1
            errors += bool(row.error)
            spans += row.span_count
            for svc in row.services:
                entry = services.setdefault(svc, {"traces": 0, "errors": 0})
                entry["traces"] += 1
                entry["errors"] += bool(row.error)
        if truncated or len(rows) < page_size:
            break
        offset += len(rows)
        if len(seen) >= max_traces:
            # Full pages up to the cap: one more row tells whether anything was left out.
            more = driver.list_traces(TraceFilter(since=since, until=now, limit=1, offset=offset))
            truncated = any(r.base_id not in seen for r in more)
            break
    if truncated:
        log.info("stats: counted the newest %d traces of the window only", max_traces)
    out: dict[str, Any] = {
        "traces": traces,
        "errors": errors,
        "spans": spans,
        "services": dict(sorted(services.items())),
        "window_seconds": window,
        "truncated": truncated,
    }
    store_stats = getattr(driver, "stats", None)
    if callable(store_stats):
        try:
            out["store"] = jsonable(store_stats())
        except Exception as exc:  # noqa: BLE001 - a driver's counters must not break the endpoint
            log.warning("stats: the driver's stats() failed: %s", type(exc).__name__)
            out["store"] = {"error": f"stats() failed: {type(exc).__name__}"}
    return out
