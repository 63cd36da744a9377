"""The Redis bus: publishing rate, per-span cost in the traced service, end-to-end points/s.

Starts the test harness's Redis (and, for ``--stores mongodb``, its MongoDB-wire server) on
127.0.0.1 and measures, in one run:

1. publishing (service -> Redis): ``Dispatcher`` -> ``MessagingDriver.notify`` of N points,
   one stream entry per batch (the shipped layout, ``entry_size=500``) next to one entry per
   point (``entry_size=1``, still pipelined), and a naive baseline of one XADD round trip per
   point (raw redis-py, ``--baseline`` points). Also Redis memory per point of both layouts.
2. per-span cost in the traced service: ``start()``+``stop()`` after ``setup()`` with the bus
   URI, next to the sqlite store and the memory driver: the caller's thread CPU per span (the
   hot path) and the whole process's CPU per span once the dispatcher delivered everything
   (JSON + XADD on the background thread included; Redis's own CPU is not the service's).
3. end to end (service -> Redis -> ``profiler collect`` -> store): K collector processes run;
   the clock starts at the first ``put`` and stops when the consumer group has read every entry
   and holds none unacknowledged (a collector acknowledges only after the store accepted the
   points; the store's count is checked afterwards). Baseline: the same dispatcher writing
   straight into the same kind of store.

Usage: python3 bench/bench_messaging.py [--points 100000] [--e2e-points 50000]
       [--stores sqlite,mongodb] [--collectors 1,2] [--quick]
(needs profiler-core, profiler-driver-messaging and redis installed, and for mongodb
profiler-driver-mongodb and pymongo; servers from ``python3 testing/provision.py --only
redis,mongodb``). Prints figures; asserts only that every point arrived.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "testing"))

import redis  # noqa: E402

import realservers  # noqa: E402
from xprofiler import core as profiler  # noqa: E402
from xprofiler.core.dispatcher import Dispatcher  # noqa: E402
from xprofiler.core.registry import load_driver  # noqa: E402
from xprofiler.core.testing import make_trace  # noqa: E402


def points(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        out.extend(make_trace(5, services=["api", "worker"]))
    return out[:n]


def bus_uri(srv: Any, stream: str, store: str | None = None, **opts: Any) -> str:
    q = {"stream": stream, **opts}
    if store:
        q["store"] = store
    return f"redis://{srv.host}:{srv.port}/0?" + "&".join(
        f"{k}={quote(str(v), safe='')}" for k, v in q.items()
    )


def deliver(url: str, data: list[dict[str, Any]], batch: int = 500) -> tuple[float, dict]:
    """Seconds from the first put() until flush() returns, and the dispatcher's stats."""
    d = Dispatcher(url, max_queue=len(data) + 1, batch_size=batch, flush_interval=0.05)
    t0 = time.perf_counter()
    for p in data:
        d.put(p)
    ok = d.flush(timeout=600)
    took = time.perf_counter() - t0
    stats = d.stats()
    d.close()
    assert ok and stats["delivered"] == len(data) and not stats["dropped"], stats
    return took, stats


# -- 1. publishing ----------------------------------------------------------------------------
def bench_publish(srv: Any, admin: redis.Redis, n: int, n_base: int) -> None:
    print(f"\n1. publishing to Redis (service -> stream), {n:,} points, batches of 500")
    data = points(n)
    rates = {}
    for label, size in (("one entry per batch (entry_size=500)", 500), ("one entry per point", 1)):
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        took, _ = deliver(bus_uri(srv, stream, entry_size=size, maxlen=0), data)
        added = admin.xinfo_stream(stream)["entries-added"]
        mem = admin.memory_usage(stream, samples=0) or 0
        rates[size] = n / took
        print(
            f"   {label:<38} {n / took:>10,.0f} points/s  ({added:,} entries, "
            f"Redis memory {mem / n:,.0f} B/point)"
        )
        admin.delete(stream)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    base = [json.dumps(p) for p in points(n_base)]
    t0 = time.perf_counter()
    for text in base:
        admin.xadd(stream, {"p": text})
    rate_base = n_base / (time.perf_counter() - t0)
    admin.delete(stream)
    print(f"   {'baseline: one XADD round trip/point':<38} {rate_base:>10,.0f} points/s")
    print(
        f"   ratios: per batch / per point = {rates[500] / rates[1]:.1f}x; "
        f"per batch / round trip per point = {rates[500] / rate_base:.1f}x"
    )


# -- 2. per-span cost -------------------------------------------------------------------------
def _span_costs(url: str, spans: int, repeats: int) -> tuple[list[float], list[float]]:
    hot: list[float] = []
    total: list[float] = []
    profiler.setup(url, service="bench", max_queue=2 * spans + 1)  # 2 points a span
    try:
        for _ in range(repeats + 1):  # the first round warms up (connection, tables)
            profiler.init("key")
            p0, t0 = time.process_time(), time.thread_time()
            for _ in range(spans):
                profiler.start("db", None)
                profiler.stop()
            t1 = time.thread_time()
            assert profiler.flush(120), profiler.dispatcher_stats()
            p1 = time.process_time()
            profiler.clean()
            hot.append((t1 - t0) / spans * 1e9)
            total.append((p1 - p0) / spans * 1e9)
        stats = profiler.dispatcher_stats()
        assert stats["dropped"] == 0, stats
    finally:
        profiler.shutdown()
    return hot[1:], total[1:]


def bench_span_cost(srv: Any, tmp: Path, spans: int, repeats: int) -> None:
    print(
        f"\n2. per-span cost in the traced service (start+stop, {spans:,} spans x {repeats} "
        "repeats; CPU ns per span, median / min)"
    )
    cases = [
        ("redis bus (publish only)", bus_uri(srv, f"bench-{uuid.uuid4().hex[:8]}", maxlen=0)),
        ("sqlite store, direct", f"sqlite:///{tmp}/span-cost.db"),
        ("memory driver (reference)", "memory://bench"),
    ]
    print(f"   {'':<28} {'caller thread (hot path)':>26} {'whole process, delivered':>26}")
    for label, url in cases:
        hot, total = _span_costs(url, spans, repeats)
        print(
            f"   {label:<28} {statistics.median(hot):>14,.0f} / {min(hot):>7,.0f}"
            f" {statistics.median(total):>16,.0f} / {min(total):>7,.0f}"
        )


# -- 3. end to end ----------------------------------------------------------------------------
def _collector(bus: str, store: str, name: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.pop("PROFILER_CONNECTION_STRING", None)
    return subprocess.Popen(
        [sys.executable, "-m", "xprofiler.core.cli", "collect", "--from", bus, "--to", store,
         "--name", name, "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait(what: str, check: Callable[[], bool], timeout: float, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)


StoreFactory = Callable[[], tuple[str, Callable[[], int]]]


def _drained(admin: redis.Redis, stream: str) -> bool:
    (group,) = admin.xinfo_groups(stream)
    if group["lag"] is None:  # Redis could not tell: compare the last ids instead
        last = admin.xinfo_stream(stream)["last-generated-id"]
        return group["last-delivered-id"] == last and group["pending"] == 0
    return group["lag"] == 0 and group["pending"] == 0


def bench_end_to_end(
    srv: Any,
    admin: redis.Redis,
    store_kind: str,
    store_url: StoreFactory,
    n: int,
    collectors: list[int],
    poll: float,
) -> None:
    print(f"\n3. end to end into {store_kind}: {n:,} points (service -> Redis -> collect -> store)")
    data = points(n)
    url, count = store_url()
    took, _ = deliver(url, data)
    assert count() == n
    direct = n / took
    print(f"   {'baseline: dispatcher straight into the store':<46} {direct:>9,.0f} points/s")
    for k in collectors:
        url, count = store_url()
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        bus = bus_uri(srv, stream, maxlen=0)
        procs = [_collector(bus, url, f"c{i}") for i in range(k)]
        try:
            # Warm up: every collector connected and its store set up (indexes...), as in a
            # running fleet; those points are not timed.
            _wait("the collectors", lambda: admin.hlen(f"{stream}:collectors") == k, 60)  # noqa: B023
            warm = load_driver(bus)
            for _ in range(4 * k):
                warm.notify(make_trace(1))
            warm.close()
            _wait("the warm-up points", lambda: count() == 8 * k, 120)  # noqa: B023
            count0 = 8 * k
            t0 = time.perf_counter()
            d = Dispatcher(bus, max_queue=n + 1, batch_size=500, flush_interval=0.05)
            for p in data:
                d.put(p)
            assert d.flush(600)
            t_pub = time.perf_counter() - t0
            d.close()
            # Done when the group has read everything and holds nothing unacknowledged: an entry
            # is acknowledged only after the store accepted it. (Counting on the store while it
            # is written competes with the writes: a count on FerretDB takes seconds.)
            _wait("every entry acknowledged", lambda: _drained(admin, stream), 600, poll)  # noqa: B023
            took = time.perf_counter() - t0
            assert count() == n + count0  # checked once, untimed
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
        records = [json.loads(v) for v in admin.hgetall(f"{stream}:collectors").values()]
        shares = "/".join(f"{r['points']:,}" for r in records)  # warm-up points included
        print(
            f"   {k} collector{'s' if k > 1 else ' '} {'':<34} {n / took:>9,.0f} points/s"
            f"  ({n / took / direct:.2f}x direct; published in {t_pub:.1f}s, stored in "
            f"{took:.1f}s; per collector {shares})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000, help="publishing benchmark")
    ap.add_argument("--baseline", type=int, default=2_000, help="round-trip-per-point baseline")
    ap.add_argument("--spans", type=int, default=10_000, help="spans per repeat (span cost)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--e2e-points", type=int, default=50_000)
    ap.add_argument("--mongodb-points", type=int, default=20_000)
    ap.add_argument("--stores", default="sqlite,mongodb")
    ap.add_argument("--collectors", default="1,2")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.points, args.baseline, args.spans, args.repeats = 10_000, 500, 2_000, 2
        args.e2e_points = args.mongodb_points = 5_000
    collectors = [int(k) for k in args.collectors.split(",")]
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; Python {platform.python_version()};"
        f" redis-py {redis.__version__}"
    )
    with realservers.running("redis") as srv, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        admin = redis.Redis(host=srv.host, port=srv.port)
        print(f"redis: {srv.version} at {srv.host}:{srv.port}")
        bench_publish(srv, admin, args.points, args.baseline)
        bench_span_cost(srv, tmp, args.spans, args.repeats)

        if "sqlite" in stores:

            def sqlite_store() -> tuple[str, Callable[[], int]]:
                path = tmp / f"e2e-{uuid.uuid4().hex[:8]}.db"

                def count() -> int:
                    if not path.exists():
                        return 0
                    conn = sqlite3.connect(str(path), timeout=30)
                    try:
                        return int(conn.execute("SELECT COUNT(*) FROM points").fetchone()[0])
                    except sqlite3.OperationalError:
                        return 0
                    finally:
                        conn.close()

                return f"sqlite:///{path}", count

            bench_end_to_end(
                srv, admin, "sqlite", sqlite_store, args.e2e_points, collectors, poll=0.02
            )

        if "mongodb" in stores:
            import pymongo

            with realservers.running("mongodb") as mongo:
                client: pymongo.MongoClient[Any] = pymongo.MongoClient(
                    f"mongodb://{mongo.host}:{mongo.port}", directConnection=True
                )
                print(f"\nmongodb: {mongo.version} at {mongo.host}:{mongo.port}")

                def mongo_store() -> tuple[str, Callable[[], int]]:
                    db = f"bench_{uuid.uuid4().hex[:8]}"
                    url = f"mongodb://{mongo.host}:{mongo.port}/{db}"
                    warm = load_driver(url)  # indexes and collections, as a running store has
                    warm.notify(make_trace(1))
                    warm.close()
                    client[db]["points"].delete_many({})
                    return url, lambda: client[db]["points"].count_documents({})

                bench_end_to_end(
                    srv,
                    admin,
                    "mongodb (FerretDB)",
                    mongo_store,
                    args.mongodb_points,
                    collectors,
                    poll=0.02,
                )
                client.close()
        admin.close()


if __name__ == "__main__":
    main()
