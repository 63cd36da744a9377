"""Points per second stored in Elasticsearch through the dispatcher, next to one request per point.

Starts the test harness's Elasticsearch 8.x (integ-test-zip, single node, small heap) on
127.0.0.1 and measures, in one run and against the same server:

* dispatcher: ``Dispatcher.put`` of N points (traces of 5 spans, 10 points each), then
  ``flush``; the count stored is checked on the server. Each batch is one bulk request of
  ``create`` actions into the day's index.
* baseline A: the raw elasticsearch client, one ``index`` request (op_type=create) per point
  (the naive exporter).
* baseline B: the driver's ``notify`` with one point at a time (one bulk request per point).

A warm-up of 10,000 points (not counted) comes first: a fresh server's JVM indexes several
times slower until its code is compiled.

Usage: python3 bench/bench_elasticsearch_ingest.py [--points 50000] [--baseline 2000]
(needs profiler-core, profiler-driver-elasticsearch and elasticsearch 8.x installed; the server
from ``python3 testing/provision.py --only elasticsearch``). Prints figures; asserts nothing
about speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "testing"))

from elasticsearch import Elasticsearch  # noqa: E402

import realservers  # noqa: E402
from xprofiler.core.dispatcher import Dispatcher  # noqa: E402
from xprofiler.core.registry import load_driver  # noqa: E402
from xprofiler.core.testing import make_trace  # noqa: E402
from xprofiler.drivers.elasticsearch.schema import IndexNamer, to_document  # noqa: E402


def points(n: int) -> list[dict]:
    out: list[dict] = []
    while len(out) < n:
        out.extend(make_trace(5, services=["api", "worker"]))
    return out[:n]


def count(es: Elasticsearch, prefix: str) -> int:
    es.indices.refresh(index=f"{prefix}-*", allow_no_indices=True)
    return int(es.count(index=f"{prefix}-*", allow_no_indices=True)["count"])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--points", type=int, default=50_000)
    ap.add_argument("--baseline", type=int, default=2_000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=10_000)
    args = ap.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, load average {load:.1f}; "
        f"python {platform.python_version()}"
    )
    with realservers.running("elasticsearch") as srv:
        base = f"elasticsearch://{srv.host}:{srv.port}"
        es = Elasticsearch(f"http://{srv.host}:{srv.port}", request_timeout=60)
        print(f"server: Elasticsearch {srv.version} at {srv.host}:{srv.port}, heap {srv.heap}")
        options = "replicas=0"

        # -- warm-up: a fresh JVM indexes several times slower until its code is compiled ------
        prefix_w = f"bench_{uuid.uuid4().hex[:8]}"
        warm = load_driver(f"{base}/{prefix_w}?{options}")
        t0 = time.perf_counter()
        warm_points = points(args.warmup)
        for i in range(0, len(warm_points), args.batch_size):
            warm.notify(warm_points[i : i + args.batch_size])
        warm.close()
        print(f"warm-up: {args.warmup} points in {time.perf_counter() - t0:.2f}s (not counted)")

        # -- dispatcher ------------------------------------------------------------------------
        prefix = f"bench_{uuid.uuid4().hex[:8]}"
        url = f"{base}/{prefix}?{options}"
        data = points(args.points)
        warm = load_driver(url)
        warm.notify(points(10))  # installs the template and creates today's index
        warm.close()
        d = Dispatcher(
            url, max_queue=args.points + 1, batch_size=args.batch_size, flush_interval=0.05
        )
        t0 = time.perf_counter()
        for p in data:
            d.put(p)
        t_put = time.perf_counter() - t0
        ok = d.flush(timeout=600)
        t_all = time.perf_counter() - t0
        stats = d.stats()
        d.close()
        stored = count(es, prefix) - 10
        assert ok and stored == args.points, (ok, stored, stats)
        rate = args.points / t_all
        print(
            f"dispatcher: {args.points} points (batch {args.batch_size}) stored in {t_all:.2f}s"
            f" = {rate:,.0f} points/s; put() {t_put / args.points * 1e6:.2f} us/point;"
            f" failed batches {stats['failed_batches']}, dropped {stats['dropped']};"
            f" verified {stored} on the server"
        )

        # -- baseline A: raw client, one index request per point --------------------------------
        n = args.baseline
        prefix_a = f"bench_{uuid.uuid4().hex[:8]}"
        warm = load_driver(f"{base}/{prefix_a}?{options}")
        warm.notify(points(10))  # same template, same index layout
        warm.close()
        namer = IndexNamer(prefix_a, "day")
        raw = [to_document(p, namer) for p in points(n)]
        t0 = time.perf_counter()
        for index, pid, doc in raw:
            es.index(index=index, id=pid, document=doc, op_type="create")
        t_raw = time.perf_counter() - t0
        assert count(es, prefix_a) == n + 10
        raw_rate = n / t_raw
        print(f"baseline A: client.index per point: {n} in {t_raw:.2f}s = {raw_rate:,.0f} points/s")

        # -- baseline B: driver.notify with one point -------------------------------------------
        prefix_b = f"bench_{uuid.uuid4().hex[:8]}"
        drv = load_driver(f"{base}/{prefix_b}?{options}")
        drv.notify(points(10))
        single = points(n)
        t0 = time.perf_counter()
        for p in single:
            drv.notify([p])
        t_one = time.perf_counter() - t0
        drv.close()
        assert count(es, prefix_b) == n + 10
        one_rate = n / t_one
        print(
            f"baseline B: driver.notify one point at a time: {n} in {t_one:.2f}s"
            f" = {one_rate:,.0f} points/s"
        )

        print(
            f"ratio: dispatcher / index-per-point = {rate / raw_rate:.1f}x;"
            f" dispatcher / notify-per-point = {rate / one_rate:.1f}x"
        )
        for pfx in (prefix_w, prefix, prefix_a, prefix_b):
            names = list(es.indices.get(index=f"{pfx}-*", allow_no_indices=True))
            es.indices.delete(index=",".join(names))  # wildcard deletes are refused
        es.close()


if __name__ == "__main__":
    main()
