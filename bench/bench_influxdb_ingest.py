#!/usr/bin/env python3
"""Trace points stored per second in InfluxDB 1.x: through the dispatcher vs one request each.

One run, one throwaway influxd on 127.0.0.1 (from testing/realservers), three parts:

1. Ingest: 50,000 points (5,000 traces of 5 spans) put into a ``Dispatcher`` in front of the
   influxdb driver (batches of 500, one line-protocol request per batch), flushed, and the
   stored count checked with ``SELECT COUNT``; then, in the same run, a baseline of 2,000
   points written one ``driver.notify([point])`` call (one HTTP request) per point; and, for
   information, the 50,000 points again through a dispatcher with batches of 5,000.
2. Reads: ``list_traces()`` over those 5,000 traces (time and Python peak memory, which is
   what the driver holds: one row per trace), and ``get_report`` of one trace.
3. Cardinality: 10,000 traces shaped like a web request (a wsgi span, two db spans: 3 spans,
   6 points) written with the driver's schema (span id as a tag: one series per span, plus
   one index series per trace) and, for comparison, the same points with the span id only
   as a field (one series per trace and span name); series counts, write rates (best of
   two), and the growth of influxd's live heap (smallest of two) once its write cache is on
   disk and after a forced GC.

Usage::

    python3 bench/bench_influxdb_ingest.py            # about two minutes
    python3 bench/bench_influxdb_ingest.py --tsi1     # the same with influxd's disk index
    python3 bench/bench_influxdb_ingest.py --quick    # a smoke run with fewer points

Needs profiler-core and profiler-driver-influxdb installed (editable, from packages/), and
influxd (``python3 testing/provision.py --only influxdb``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "testing"))

from realservers.influxdb_server import InfluxDBServer  # noqa: E402
from xprofiler.core.dispatcher import Dispatcher  # noqa: E402
from xprofiler.core.points import TraceFilter  # noqa: E402
from xprofiler.core.registry import load_driver  # noqa: E402
from xprofiler.core.testing import make_point, make_trace  # noqa: E402
from xprofiler.drivers.influxdb.lineproto import index_lines, point_line  # noqa: E402


class BenchInfluxDBServer(InfluxDBServer):
    """The test launcher's influxd; the write cache goes to disk after 2s without writes (so
    memory after a restart is the series index, not points waiting in the cache), and
    optionally the disk-based ``tsi1`` series index."""

    tsi1 = False

    def _prepare(self) -> None:
        super()._prepare()
        assert self.workdir is not None
        conf = self.workdir / "influxdb.conf"
        extra = '  cache-snapshot-write-cold-duration = "2s"\n'
        if self.tsi1:
            extra += '  index-version = "tsi1"\n'
        conf.write_text(conf.read_text().replace("[data]\n", "[data]\n" + extra))


def influxql(server: Any, q: str, db: str | None = None) -> list[dict[str, Any]]:
    form = {"q": q, "epoch": "ns"}
    if db:
        form["db"] = db
    req = urllib.request.Request(
        f"http://{server.host}:{server.port}/query",
        data=urllib.parse.urlencode(form).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["results"]


def scalar(server: Any, q: str, db: str) -> int:
    """The sum of the last column over every series of the answer (0 for none)."""
    res = influxql(server, q, db)[0]
    return sum(int(v[-1]) for series in res.get("series", ()) for v in series["values"])


def count_points(server: Any, db: str) -> int:
    """Stored trace points (a row holds a start, a stop, or both)."""
    q = 'SELECT COUNT("start_id"), COUNT("stop_id") FROM "trace_points"'
    res = influxql(server, q, db)[0]
    return sum(int(v[1]) + int(v[2]) for series in res.get("series", ()) for v in series["values"])


def cache_bytes(server: Any) -> int:
    res = influxql(server, "SHOW STATS FOR 'tsm1_cache'")[0]
    total = 0
    for series in res.get("series", ()):
        idx = series["columns"].index("memBytes")
        total += sum(int(v[idx]) for v in series["values"])
    return total


def live_heap(server: Any) -> int:
    """influxd's live heap once its write cache is on disk (the points are in TSM files), after
    a forced GC (``/debug/pprof/heap?gc=1``): ``HeapAlloc`` from ``/debug/vars``."""
    deadline = time.monotonic() + 60
    while cache_bytes(server) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    base = f"http://{server.host}:{server.port}"
    urllib.request.urlopen(f"{base}/debug/pprof/heap?gc=1", timeout=60).read()
    with urllib.request.urlopen(f"{base}/debug/vars", timeout=60) as resp:
        return int(json.loads(resp.read())["memstats"]["HeapAlloc"])


def traces(n: int, spans: int, start: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.extend(
            make_trace(spans, start=start + i * 10_000, services=["api", "worker", "db"], step=7)
        )
    return out


def ingest(server: Any, base: str, n_traces: int, n_baseline: int) -> dict[str, float]:
    now = time.time_ns() - 3600 * 10**9
    points = traces(n_traces, 5, now)
    url = f"{base}/bench_dispatch"
    disp = Dispatcher(url, max_queue=len(points) + 1, batch_size=500, flush_interval=0.05)
    load_driver(url).notify(make_trace(1, start=now - 10**9))  # create the database first
    began = time.perf_counter()
    for p in points:
        disp.put(p)  # type: ignore[arg-type]
    put_done = time.perf_counter()
    assert disp.flush(120), disp.stats()
    elapsed = time.perf_counter() - began
    stats = disp.stats()
    disp.close()
    stored = count_points(server, "bench_dispatch") - 2
    assert stored == len(points), (stored, len(points))
    assert stats["dropped"] == 0 and stats["failed_batches"] == 0, stats

    # The same through a dispatcher with batches of 5,000 (for information).
    big = traces(n_traces, 5, now)
    url5k = f"{base}/bench_dispatch_5k"
    load_driver(url5k).notify(make_trace(1, start=now - 10**9))
    disp = Dispatcher(url5k, max_queue=len(big) + 1, batch_size=5000, flush_interval=0.05)
    t5k = time.perf_counter()
    for p in big:
        disp.put(p)  # type: ignore[arg-type]
    assert disp.flush(120), disp.stats()
    elapsed_5k = time.perf_counter() - t5k
    disp.close()
    assert count_points(server, "bench_dispatch_5k") - 2 == len(big)

    single = traces(n_baseline // 10, 5, now)
    drv = load_driver(f"{base}/bench_single")
    drv.notify(make_trace(1, start=now - 10**9))
    b0 = time.perf_counter()
    for p in single:
        drv.notify([p])  # one HTTP request per point
    b_elapsed = time.perf_counter() - b0
    drv.close()
    b_stored = count_points(server, "bench_single") - 2
    assert b_stored == len(single), (b_stored, len(single))
    return {
        "points": len(points),
        "seconds": elapsed,
        "rate": len(points) / elapsed,
        "put_us": (put_done - began) / len(points) * 1e6,
        "rate_5k": len(big) / elapsed_5k,
        "baseline_points": len(single),
        "baseline_seconds": b_elapsed,
        "baseline_rate": len(single) / b_elapsed,
    }


def timed(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def reads(base: str, n_traces: int) -> dict[str, float]:
    drv = load_driver(f"{base}/bench_dispatch")
    list_s, rows = timed(lambda: drv.list_traces(TraceFilter(limit=50)))
    assert len(rows) == 50
    tracemalloc.start()
    drv.list_traces(TraceFilter(limit=50))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    filt_s, filtered = timed(
        lambda: drv.list_traces(TraceFilter(service="worker", limit=50, offset=100))
    )
    assert len(filtered) == 50
    since_s, since = timed(lambda: drv.list_traces(TraceFilter(since=rows[10].start, limit=50)))
    assert len(since) == 11, len(since)
    report_s, report = timed(lambda: drv.get_report(rows[0].base_id))
    assert len(report) == 10
    drv.close()
    return {
        "traces": n_traces + 1,
        "list_s": list_s,
        "list_peak": peak,
        "filtered_s": filt_s,
        "since_s": since_s,
        "report_s": report_s,
    }


def web_traces(n: int, start: int) -> list[dict[str, Any]]:
    """Traces shaped like a web request: a wsgi span with two db spans (same name) under it."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        base = uuid.uuid4().hex
        t = start + i * 10_000
        root, q1, q2 = f"{base[:8]}-r", f"{base[:8]}-q1", f"{base[:8]}-q2"
        out += [
            make_point(base, root, base, "start", "wsgi", t, service="api"),
            make_point(base, q1, root, "start", "db", t + 10, service="api"),
            make_point(base, q1, root, "stop", "db", t + 20, service="api"),
            make_point(base, q2, root, "start", "db", t + 30, service="api"),
            make_point(base, q2, root, "stop", "db", t + 40, service="api"),
            make_point(base, root, base, "stop", "wsgi", t + 50, service="api"),
        ]
    return out


def write_lines(server: Any, db: str, lines: list[str]) -> None:
    for i in range(0, len(lines), 10_000):
        body = ("\n".join(lines[i : i + 10_000]) + "\n").encode()
        req = urllib.request.Request(
            f"http://{server.host}:{server.port}/write?db={db}&precision=n", data=body
        )
        urllib.request.urlopen(req, timeout=60).close()


def cardinality(server: Any, base: str, n_traces: int) -> dict[str, float]:
    """Series, write rate and influxd live heap: the driver's schema vs the span id as a field.

    Each schema is written twice, interleaved, into a fresh database that is dropped after;
    the best rate and the smallest heap growth of the two are kept (2 shared cores: noisy).
    """
    points = web_traces(n_traces, time.time_ns() - 2 * 3600 * 10**9)
    out: dict[str, float] = {"traces": n_traces, "spans": n_traces * 3, "points": len(points)}
    index = list(index_lines(points, "trace_points_by_trace"))
    tag_lines = [point_line(p, "trace_points") for p in points]
    # The span id only as a field: fewer series, but two points of one trace with the same
    # name, service, host and timestamp would overwrite each other (the reason it is a tag).
    field_lines = []
    for line in tag_lines:
        head, fields, ts = line.split(" ")
        tags = [t for t in head.split(",") if not t.startswith("trace_id=")]
        field_lines.append(f"{','.join(tags)} {fields} {ts}")
    variants = {"tags": tag_lines + index, "fields": field_lines + index}

    warm = "card_warmup"  # first-use allocations of influxd are not the schema's cost
    influxql(server, f'CREATE DATABASE "{warm}"')
    write_lines(server, warm, variants["fields"][:20_000])
    live_heap(server)
    influxql(server, f'DROP DATABASE "{warm}"')

    for round_ in range(2):
        for key, lines in variants.items():
            db = f"card_{key}_{round_}"
            heap0 = live_heap(server)
            influxql(server, f'CREATE DATABASE "{db}"')
            t0 = time.perf_counter()
            write_lines(server, db, lines)
            rate = len(lines) / (time.perf_counter() - t0)
            out[key + "_series"] = scalar(server, "SHOW SERIES EXACT CARDINALITY", db)
            heap = live_heap(server) - heap0
            out[key + "_rate"] = max(out.get(key + "_rate", 0.0), rate)
            out[key + "_heap"] = min(out.get(key + "_heap", float("inf")), heap)
            influxql(server, f'DROP DATABASE "{db}"')
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points (a smoke run)")
    parser.add_argument(
        "--tsi1", action="store_true", help='run influxd with index-version = "tsi1" (disk index)'
    )
    args = parser.parse_args()
    n_traces, n_baseline, n_card = (500, 500, 2000) if args.quick else (5000, 2000, 10000)

    server = BenchInfluxDBServer()
    server.tsi1 = args.tsi1
    with server:
        base = f"influxdb://{server.host}:{server.port}"
        index = "tsi1" if args.tsi1 else "inmem"
        print(
            f"influxd {server.version} on 127.0.0.1:{server.port} "
            f"(index: {index}; cache to disk after 2s cold; other settings default)"
        )
        r = ingest(server, base, n_traces, n_baseline)
        print("\n== ingest (stored and counted back with SELECT COUNT)")
        print(
            f"dispatcher, batches of 500:   {r['points']:>7,} points in {r['seconds']:6.2f}s "
            f"= {r['rate']:>9,.0f} points/s   (put(): {r['put_us']:.2f} us/point)"
        )
        print(
            f"one request per point:        {r['baseline_points']:>7,} points in "
            f"{r['baseline_seconds']:6.2f}s = {r['baseline_rate']:>9,.0f} points/s"
        )
        print(f"ratio (dispatcher / one-per-point): {r['rate'] / r['baseline_rate']:.1f}x")
        print(f"(for information: dispatcher with batches of 5,000: {r['rate_5k']:,.0f} points/s)")

        q = reads(base, n_traces)
        print(f"\n== reads over {q['traces']:,} traces ({q['traces'] * 10:,} points)")
        print(
            f"list_traces(limit=50):                    {q['list_s'] * 1000:7.1f} ms   "
            f"(Python peak {q['list_peak'] / 1024:,.0f} KiB = "
            f"{q['list_peak'] / q['traces']:.0f} B per trace scanned)"
        )
        print(f"list_traces(service=worker, offset=100):  {q['filtered_s'] * 1000:7.1f} ms")
        print(f"list_traces(since=<11th newest>):         {q['since_s'] * 1000:7.1f} ms")
        print(f"get_report (10 points):                   {q['report_s'] * 1000:7.1f} ms")

        c = cardinality(server, base, n_card)
        print(
            f"\n== cardinality: {c['traces']:,} traces, {c['spans']:,} spans, "
            f"{c['points']:,} points"
        )
        for key, label in (("tags", "span id as a tag"), ("fields", "span id as a field")):
            print(
                f"{label:<20} {int(c[key + '_series']):>8,} series   influxd live heap "
                f"{c[key + '_heap'] / 2**20:+7.1f} MiB "
                f"({c[key + '_heap'] / c[key + '_series']:,.0f} B/series)   "
                f"write {c[key + '_rate']:>7,.0f} lines/s (10,000 per request)"
            )
        extra = c["tags_series"] - c["fields_series"]
        heap = c["tags_heap"] - c["fields_heap"]
        print(
            f"the driver's schema: {extra:,.0f} more series ({extra / c['traces']:.0f} per "
            f"trace of {c['spans'] / c['traces']:.0f} spans), live heap {heap / 2**20:+.1f} MiB"
        )


if __name__ == "__main__":
    main()
