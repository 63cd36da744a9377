"""``list_traces`` on Elasticsearch with aggregations only (no scripts, no pipeline aggs).

A row summarizes a whole trace (first/last point, distinct spans, services, error), while the
filters ("a point of the trace has service S", "the trace STARTS in [since, until]",
"last - first >= min_duration") are properties of the whole trace. Elasticsearch can filter
aggregation buckets only with ``bucket_selector`` (painless scripting and the aggregations
module), which minimal distributions lack, and sorting buckets by their min is inexact across
shards. So the driver walks back in time instead, touching only what one page needs:

1. An *anchor* is a point-level condition every matching trace has at least one point for:
   ``error: true`` (errors filter), else ``name``, else ``service``, else "any point" (the
   trace's first point, which lies in [since, until]). An anchor point is never older than its
   trace's start.
2. Windows ``[lo, hi]`` go back in time from the newest anchor point. For each window a
   ``composite`` aggregation lists the base_ids with an anchor point in it (paged, 500 at a
   time), and a ``terms`` aggregation over exactly those base_ids (all indices) computes their
   exact summaries: first/last point via ``top_hits`` sort values (``min``/``max`` return
   doubles, which cannot hold nanoseconds), ``cardinality`` of trace_id, ``terms`` of service,
   ``max`` of error, and ``filter`` counts for the service/name filters. The filters are then
   applied in Python to these few rows.
3. After a window, every matching trace starting at or after ``lo`` is known (its anchor point
   is at or after its start, so inside a window already walked). Once ``offset + limit`` such
   rows exist, the page is cut from them; otherwise the walk goes on (jumping over gaps with no
   anchor points, widening windows where data is sparse, narrowing where it is dense).

The work is proportional to the traces near the page asked for, not to the store's size; a
rare filter (say, a service that never occurs) walks the whole time range once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from xprofiler.core.points import TraceFilter, TraceSummary

__all__ = ["TraceLister", "SPAN_COUNT_EXACT_BELOW", "RECOUNT_ABOVE", "MAX_SERVICES_PER_ROW"]

log = logging.getLogger(__name__)

Search = Callable[[dict[str, Any]], dict[str, Any]]

# The cardinality aggregation estimates the span count (exact for small traces; off by a few
# in ten thousand for big ones). Rows on the returned page with more than RECOUNT_ABOVE spans
# are recounted exactly up to SPAN_COUNT_EXACT_BELOW spans; above that the estimate stays.
SPAN_COUNT_EXACT_BELOW = 40_000
RECOUNT_ABOVE = 1_000
_RECOUNT_PAGE = 10_000
MAX_SERVICES_PER_ROW = 64
_BATCH = 500
_INITIAL_WINDOW_NS = 60 * 1_000_000_000
_MIN_WINDOW_NS = 1_000
_TS_SORT_ASC = {"timestamp": {"order": "asc", "unmapped_type": "long"}}
_TS_SORT_DESC = {"timestamp": {"order": "desc", "unmapped_type": "long"}}


class TraceLister:
    """One ``list_traces`` call. ``search(body)`` runs a search on all of the store's indices."""

    def __init__(self, search: Search, initial_window_ns: int = _INITIAL_WINDOW_NS) -> None:
        self._search = search
        self._initial_window = initial_window_ns
        self.requests = 0  # searches made (for tests and debugging)

    # -- the walk -----------------------------------------------------------------------------
    def run(self, f: TraceFilter) -> list[TraceSummary]:
        need = f.offset + f.limit
        if f.limit == 0:
            return []
        if f.since is not None and f.until is not None and f.since > f.until:
            return []
        anchor = self._anchor(f)
        # Anchor points of matching traces: at or after since; "any point" anchors (the first
        # point) are also at or before until, selective ones may come after it.
        upper = f.until if anchor is None else None
        top = self._newest_anchor(anchor, f.since, upper)
        if top is None:
            return []
        newest_start = top if f.until is None else min(top, f.until)
        width = self._initial_window
        hi: int | None = upper
        lo = self._clip(newest_start - width + 1, f.since)
        rows: dict[str, TraceSummary] = {}
        seen: set[str] = set()
        exhausted = False
        while True:
            new_ids = 0
            before = len(rows)
            for ids in self._candidates(anchor, lo, hi):
                fresh = [i for i in ids if i not in seen]
                seen.update(fresh)
                new_ids += len(fresh)
                for row in self._summaries(fresh, f):
                    rows[row.base_id] = row
            complete = sum(1 for r in rows.values() if r.start >= lo)
            if complete >= need:
                break
            if f.since is not None and lo <= f.since:
                exhausted = True
                break
            nxt = self._newest_anchor(anchor, f.since, lo - 1)
            if nxt is None:
                exhausted = True
                break
            width = self._next_width(width, len(rows) - before, new_ids, need - complete)
            hi = lo - 1
            lo = self._clip(min(nxt, hi) - width + 1, f.since)
        kept = [r for r in rows.values() if exhausted or r.start >= lo]
        kept.sort(key=lambda r: (r.start, r.base_id), reverse=True)
        page = [self._exact_spans(r) for r in kept[f.offset : f.offset + f.limit]]
        log.debug("list_traces: %d searches, %d candidate traces", self.requests, len(seen))
        return page

    def _exact_spans(self, row: TraceSummary) -> TraceSummary:
        """Recount the spans of a big trace exactly (the cardinality aggregation's hashes can
        be off by a few in ten thousand); beyond SPAN_COUNT_EXACT_BELOW the estimate stays."""
        if not RECOUNT_ABOVE < row.span_count <= SPAN_COUNT_EXACT_BELOW:
            return row
        count = 0
        after: dict[str, Any] | None = None
        while True:
            comp: dict[str, Any] = {
                "size": _RECOUNT_PAGE,
                "sources": [{"t": {"terms": {"field": "trace_id"}}}],
            }
            if after is not None:
                comp["after"] = after
            resp = self._run(
                {
                    "size": 0,
                    "query": {"term": {"base_id": row.base_id}},
                    "aggs": {"spans": {"composite": comp}},
                    "track_total_hits": False,
                }
            )
            agg = resp.get("aggregations", {}).get("spans", {})
            buckets = agg.get("buckets", [])
            count += len(buckets)
            after = agg.get("after_key")
            if len(buckets) < _RECOUNT_PAGE or after is None:
                return replace(row, span_count=count)

    @staticmethod
    def _clip(lo: int, since: int | None) -> int:
        lo = max(lo, 0)
        return max(lo, since) if since is not None else lo

    @staticmethod
    def _next_width(width: int, new_rows: int, new_ids: int, missing: int) -> int:
        if new_rows > 0:
            factor = 2.0 * missing / new_rows
        else:
            factor = 8.0
        factor = min(8.0, max(0.25, factor))
        return max(_MIN_WINDOW_NS, int(width * factor))

    # -- queries ------------------------------------------------------------------------------
    @staticmethod
    def _anchor(f: TraceFilter) -> dict[str, Any] | None:
        if f.errors:
            return {"term": {"error": True}}
        if f.name is not None:
            return {"term": {"name": f.name}}
        if f.service is not None:
            return {"term": {"service": f.service}}
        return None

    @staticmethod
    def _where(anchor: dict[str, Any] | None, lo: int | None, hi: int | None) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = []
        if anchor is not None:
            clauses.append(anchor)
        bounds: dict[str, int] = {}
        if lo is not None:
            bounds["gte"] = lo
        if hi is not None:
            bounds["lte"] = hi
        if bounds:
            clauses.append({"range": {"timestamp": bounds}})
        return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}

    def _run(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        return self._search(body)

    def _newest_anchor(
        self, anchor: dict[str, Any] | None, lo: int | None, hi: int | None
    ) -> int | None:
        """The exact timestamp of the newest anchor point in [lo, hi] (sort values are exact
        longs; a max aggregation would be a double)."""
        resp = self._run(
            {
                "size": 1,
                "query": self._where(anchor, lo, hi),
                "sort": [_TS_SORT_DESC],
                "_source": False,
                "track_total_hits": False,
            }
        )
        hits = resp.get("hits", {}).get("hits", [])
        if not hits:
            return None
        return int(hits[0]["sort"][0])

    def _candidates(
        self, anchor: dict[str, Any] | None, lo: int, hi: int | None
    ) -> Iterator[list[str]]:
        after: dict[str, Any] | None = None
        while True:
            comp: dict[str, Any] = {
                "size": _BATCH,
                "sources": [{"b": {"terms": {"field": "base_id"}}}],
            }
            if after is not None:
                comp["after"] = after
            resp = self._run(
                {
                    "size": 0,
                    "query": self._where(anchor, lo, hi),
                    "aggs": {"ids": {"composite": comp}},
                    "track_total_hits": False,
                }
            )
            agg = resp.get("aggregations", {}).get("ids", {})
            buckets = agg.get("buckets", [])
            if buckets:
                yield [b["key"]["b"] for b in buckets]
            after = agg.get("after_key")
            if len(buckets) < _BATCH or after is None:
                return

    def _summaries(self, ids: list[str], f: TraceFilter) -> list[TraceSummary]:
        if not ids:
            return []
        sub: dict[str, Any] = {
            "first": {
                "top_hits": {
                    "size": 1,
                    # "start" sorts before "stop": a start wins a tie, as in summarize().
                    "sort": [_TS_SORT_ASC, {"event": {"order": "asc"}}],
                    "_source": {"includes": ["name"]},
                }
            },
            "last": {"top_hits": {"size": 1, "sort": [_TS_SORT_DESC], "_source": False}},
            "spans": {
                "cardinality": {
                    "field": "trace_id",
                    "precision_threshold": SPAN_COUNT_EXACT_BELOW,
                }
            },
            "services": {"terms": {"field": "service", "size": MAX_SERVICES_PER_ROW}},
            "error": {"max": {"field": "error"}},
        }
        if f.service is not None:
            sub["has_service"] = {"filter": {"term": {"service": f.service}}}
        if f.name is not None:
            sub["has_name"] = {"filter": {"term": {"name": f.name}}}
        resp = self._run(
            {
                "size": 0,
                "query": {"terms": {"base_id": ids}},
                "aggs": {"t": {"terms": {"field": "base_id", "size": len(ids)}, "aggs": sub}},
                "track_total_hits": False,
            }
        )
        out: list[TraceSummary] = []
        for b in resp.get("aggregations", {}).get("t", {}).get("buckets", []):
            first = b["first"]["hits"]["hits"][0]
            last = b["last"]["hits"]["hits"][0]
            row = TraceSummary(
                base_id=b["key"],
                start=int(first["sort"][0]),
                end=int(last["sort"][0]),
                span_count=int(b["spans"]["value"]),
                services=tuple(sorted(s["key"] for s in b["services"]["buckets"])),
                error=(b["error"].get("value") or 0) >= 1,
                name=first.get("_source", {}).get("name", ""),
            )
            if f.since is not None and row.start < f.since:
                continue
            if f.until is not None and row.start > f.until:
                continue
            if f.min_duration is not None and row.duration < f.min_duration:
                continue
            if f.errors and not row.error:
                continue
            if f.service is not None and b["has_service"]["doc_count"] == 0:
                continue
            if f.name is not None and b["has_name"]["doc_count"] == 0:
                continue
            out.append(row)
        return out
