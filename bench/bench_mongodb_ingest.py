"""Points per second stored in MongoDB through the dispatcher, next to one insert per point.

Starts the test harness's MongoDB-wire server (FerretDB 1.x, SQLite backend) on 127.0.0.1 and
measures, in one run and against the same server:

* dispatcher: ``Dispatcher.put`` of N points (traces of 5 spans, 10 points each), then
  ``flush``; the count stored is checked on the server. Batches are one unordered
  ``insert`` plus one ``update`` of the trace summaries.
* baseline A: the raw pymongo client, ``insert_one`` per point (the naive exporter).
* baseline B: the driver's ``notify`` with one point at a time (insert + summary update).

Usage: python3 bench/bench_mongodb_ingest.py [--points 50000] [--baseline 2000]
(needs profiler-core, profiler-driver-mongodb and pymongo installed; the server from
``python3 testing/provision.py --only mongodb``). Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "testing"))

import pymongo  # noqa: E402

import realservers  # noqa: E402
from xprofiler.core.dispatcher import Dispatcher  # noqa: E402
from xprofiler.core.registry import load_driver  # noqa: E402
from xprofiler.core.testing import make_trace  # noqa: E402


def points(n: int) -> list[dict]:
    out: list[dict] = []
    while len(out) < n:
        out.extend(make_trace(5, services=["api", "worker"]))
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=50_000)
    ap.add_argument("--baseline", type=int, default=2_000)
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()

    with realservers.running("mongodb") as srv:
        base = f"mongodb://{srv.host}:{srv.port}"
        admin: pymongo.MongoClient = pymongo.MongoClient(base, directConnection=True)
        print(f"server: {srv.version} at {base} (SQLite backend)")

        # -- dispatcher ------------------------------------------------------------------------
        db = f"bench_{uuid.uuid4().hex[:8]}"
        url = f"{base}/{db}"
        data = points(args.points)
        warm = load_driver(url)
        warm.notify(points(10))  # creates the database, collections and indexes
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
        stored = admin[db]["points"].count_documents({}) - 10
        assert ok and stored == args.points, (ok, stored, stats)
        rate = args.points / t_all
        print(
            f"dispatcher: {args.points} points (batch {args.batch_size}) stored in {t_all:.2f}s"
            f" = {rate:,.0f} points/s; put() {t_put / args.points * 1e6:.2f} us/point;"
            f" failed batches {stats['failed_batches']}, dropped {stats['dropped']};"
            f" verified {stored} on the server"
        )

        # -- baseline A: raw insert_one per point --------------------------------------------
        n = args.baseline
        raw = points(n)
        col = admin[db]["baseline_raw"]
        col.insert_one({"_id": "warm"})
        t0 = time.perf_counter()
        for p in raw:
            doc = dict(p)
            doc["_id"] = doc.pop("id")
            col.insert_one(doc)
        t_raw = time.perf_counter() - t0
        assert col.count_documents({}) == n + 1
        raw_rate = n / t_raw
        print(f"baseline A: pymongo insert_one per point: {n} in {t_raw:.2f}s = {raw_rate:,.0f}/s")

        # -- baseline B: driver.notify with one point ------------------------------------------
        db_b = f"bench_{uuid.uuid4().hex[:8]}"
        drv = load_driver(f"{base}/{db_b}")
        drv.notify(points(10))
        single = points(n)
        t0 = time.perf_counter()
        for p in single:
            drv.notify([p])
        t_one = time.perf_counter() - t0
        drv.close()
        assert admin[db_b]["points"].count_documents({}) == n + 10
        one_rate = n / t_one
        print(
            f"baseline B: driver.notify one point at a time: {n} in {t_one:.2f}s"
            f" = {one_rate:,.0f}/s"
        )

        print(
            f"ratio: dispatcher / insert_one = {rate / raw_rate:.1f}x;"
            f" dispatcher / notify-per-point = {rate / one_rate:.1f}x"
        )
        admin.drop_database(db)
        admin.drop_database(db_b)
        admin.close()


if __name__ == "__main__":
    main()
