#!/usr/bin/env python3
"""How many MagnetoDB tables per second one statsd-bridge process polls and pushes.

Setup, all on 127.0.0.1: a MagnetoDB-shaped monitoring API in a separate process
(stdlib HTTP server, responses pre-encoded so that it costs as little as it can), the
real Etsy StatsD daemon from ``testing/`` (``realservers.start("statsd")``), and the
bridge in this process. Each case polls one source back to back for a few seconds
(no interval waits: the figure is the ceiling of one process) and reports:

* tables/s: tables whose size and item_count were fetched, mapped and pushed;
* CPU ms per 1,000 tables in the bridge process;
* delivery: metric lines StatsD counted (``statsd.metrics_received``) against lines sent,
  i.e. how much UDP dropped on loopback at that rate.

Baselines in the same run: the same poll with the dry-run sender (HTTP + JSON + mapping,
no UDP), the same push unpaced (``max_rate = 0``: fastest, but the daemon drops much of a
large burst), and the ``statsd`` library alone pushing gauges in a loop.

Usage::

    PYTHONPATH=testing python3 bench/bench_statsd_bridge.py          # ~40 s
    PYTHONPATH=testing python3 bench/bench_statsd_bridge.py --quick  # ~10 s smoke run

Needs ``pip install -e packages/statsd-bridge`` and ``python3 testing/provision.py --only
statsd``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "testing"))

from statsd import StatsClient  # noqa: E402

import realservers  # noqa: E402
from statsd_bridge import config as cfg  # noqa: E402
from statsd_bridge.bridge import SourcePoller  # noqa: E402
from statsd_bridge.sender import RecordingSender, StatsdSender  # noqa: E402

API = "/v1/monitoring"


def build_api(projects: int, tables: int) -> dict[str, bytes]:
    """Pre-encoded responses of every endpoint the bridge calls."""
    rows = []
    routes: dict[str, bytes] = {}
    for p in range(projects):
        tenant = f"{p:08x}c0ffee"
        per_project = []
        for t in range(tables):
            name = f"table_{t:05d}"
            usage = {"size": 1_000_000 + p * 1000 + t, "item_count": 10 * t + p}
            rows.append(
                {"tenant": tenant, "name": name, "status": "ACTIVE", "usage_detailes": usage}
            )
            per_project.append({"table_name": name, "usage_detailes": usage})
            routes[f"{API}/projects/{quote(tenant)}/tables/{name}"] = json.dumps(usage).encode()
        routes[f"{API}/projects/{quote(tenant)}"] = json.dumps(per_project).encode()
    routes["__rows__"] = json.dumps(rows).encode()
    return routes


def serve(projects: int, tables: int, port_queue: Any) -> None:
    routes = build_api(projects, tables)
    rows = json.loads(routes.pop("__rows__"))
    pages: dict[tuple[str | None, str | None, int], bytes] = {}
    keys = [(r["tenant"], r["name"]) for r in rows]
    index = {k: i for i, k in enumerate(keys)}

    def listing(query: dict[str, list[str]]) -> bytes:
        limit = int(query.get("limit", ["1000"])[0])
        lp = query.get("last_evaluated_project", [None])[0]
        lt = query.get("last_evaluated_table", [None])[0]
        key = (lp, lt, limit)
        if key not in pages:
            start = index[(lp, lt)] + 1 if lp is not None and (lp, lt) in index else 0
            pages[key] = json.dumps(rows[start : start + limit]).encode()
        return pages[key]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path == f"{API}/projects":
                body = listing(parse_qs(parts.query))
            else:
                body = routes.get(parts.path)
            if body is None:
                self.send_response(404)
                body = b"{}"
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_port)
    server.serve_forever()


def config_text(statsd_port: int, api_port: int, walk: str, datagram: int, rate: int) -> str:
    return f"""
[statsd]
host = "127.0.0.1"
port = {statsd_port}
prefix = "bench"
max_datagram = {datagram}
max_rate = {rate}

[[sources]]
name = "mdb"
kind = "magnetodb"
url = "http://127.0.0.1:{api_port}"
interval = "1h"
timeout = "60s"
max_body = "64MiB"
walk = "{walk}"
"""


def metrics_received(statsd: Any) -> int:
    return int(statsd.counters()["statsd.metrics_received"])


def wait_quiet(statsd: Any, target: int, timeout: float = 10.0) -> int:
    """Wait until StatsD counted ``target`` lines or its count stops growing."""
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < deadline:
        now = metrics_received(statsd)
        if now >= target:
            return now
        still = still + 1 if now == last else 0
        if still >= 5:
            return now
        last = now
        time.sleep(0.1)
    return metrics_received(statsd)


def run_case(
    label: str,
    statsd: Any,
    api_port: int,
    walk: str,
    datagram: int,
    seconds: float,
    dry: bool = False,
    rate: int = 10000,
) -> dict[str, Any]:
    c = cfg.loads(config_text(statsd.udp_port, api_port, walk, datagram, rate))
    sender = RecordingSender(c.statsd) if dry else StatsdSender(c.statsd)
    poller = SourcePoller(c.sources[0], c.bridge, sender)
    assert poller.poll().ok  # warm up: connection, caches
    if dry:
        sender.client.sent.clear()
    before = metrics_received(statsd)
    polls = tables = lines = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    while True:
        out = poller.poll()
        if not out.ok:
            raise SystemExit(f"{label}: poll failed: {out.reason}: {out.message}")
        polls += 1
        tables += out.units
        lines += out.sent + len(poller.self_samples(out, 0, 0.0))
        if dry:
            sender.client.sent.clear()
        if time.perf_counter() - t0 >= seconds and polls >= 2:
            break
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    poller.close()
    sender.close()
    delivered = None if dry else wait_quiet(statsd, before + lines) - before
    return {
        "case": label,
        "polls": polls,
        "tables": tables,
        "seconds": elapsed,
        "tables_per_s": tables / elapsed,
        "cpu_ms_per_1k_tables": 1e6 * cpu / tables,
        "lines": lines,
        "delivered": delivered,
    }


def raw_statsd_push(statsd: Any, lines: int, datagram: int) -> dict[str, Any]:
    """The statsd library alone: ``lines`` gauges through one pipeline per 2,000 lines."""
    client = StatsClient("127.0.0.1", statsd.udp_port, prefix="benchraw", maxudpsize=datagram)
    before = metrics_received(statsd)
    t0 = time.perf_counter()
    sent = 0
    while sent < lines:
        with client.pipeline() as pipe:
            for i in range(min(2000, lines - sent)):
                pipe.gauge(f"p.table_{i:05d}.size", 1_000_000 + i)
        sent += min(2000, lines - sent)
    elapsed = time.perf_counter() - t0
    client.close()
    delivered = wait_quiet(statsd, before + lines) - before
    return {
        "lines": lines,
        "seconds": elapsed,
        "lines_per_s": lines / elapsed,
        "delivered": delivered,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run")
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--tables", type=int, default=500, help="tables per project")
    args = ap.parse_args()
    seconds = 1.5 if args.quick else 6.0

    print(
        f"statsd-bridge throughput bench  python {platform.python_version()}  "
        f"{os.cpu_count()} cpu(s)  {platform.machine()}"
    )
    print(
        f"MagnetoDB-shaped API: {args.projects} projects x {args.tables} tables "
        f"= {args.projects * args.tables} tables per poll; polls back to back for {seconds:g} s"
    )
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    api = ctx.Process(target=serve, args=(args.projects, args.tables, q), daemon=True)
    api.start()
    api_port = q.get(timeout=60)
    small_q = ctx.Queue()
    small = ctx.Process(target=serve, args=(1, 200, small_q), daemon=True)
    small.start()
    small_port = small_q.get(timeout=60)
    cases: list[tuple[str, int, str, int, bool, int]] = [
        ("walk=project, dry-run sender (no UDP)", api_port, "project", 512, True, 0),
        ("walk=project, UDP 512 B, unpaced (max_rate=0)", api_port, "project", 512, False, 0),
        (
            "walk=project, UDP 512 B, max_rate=10000 (default)",
            api_port,
            "project",
            512,
            False,
            10000,
        ),
        ("walk=project, UDP 1432 B, max_rate=10000", api_port, "project", 1432, False, 10000),
        ("walk=project, UDP 1432 B, max_rate=20000", api_port, "project", 1432, False, 20000),
        ("walk=table (1 HTTP call per table), UDP 512 B", small_port, "table", 512, False, 10000),
    ]
    try:
        with realservers.running("statsd") as statsd:
            results = [
                run_case(label, statsd, port, walk, size, seconds, dry=dry, rate=rate)
                for label, port, walk, size, dry, rate in cases
            ]
            raw = raw_statsd_push(statsd, 50_000 if args.quick else 200_000, 512)
            bad = statsd.stats()["messages.bad_lines_seen"]
    finally:
        api.terminate()
        small.terminate()

    print()
    print(f"{'case':50} {'polls':>5} {'tables/s':>10} {'CPU ms/1k tables':>17} {'delivered':>10}")
    for r in results:
        d = "n/a" if r["delivered"] is None else f"{100 * r['delivered'] / r['lines']:.1f}%"
        print(
            f"{r['case']:50} {r['polls']:>5} {r['tables_per_s']:>10,.0f} "
            f"{r['cpu_ms_per_1k_tables']:>17.1f} {d:>10}"
        )
    base = results[0]["tables_per_s"]
    print()
    for r in results[1:5]:
        print(f"{r['case']}: {r['tables_per_s'] / base:.2f}x the dry-run rate")
    print(
        f"statsd library alone, unpaced 512 B pipeline: {raw['lines_per_s']:,.0f} lines/s "
        f"(= {raw['lines_per_s'] / 2:,.0f} tables/s at 2 lines per table), "
        f"delivered {100 * raw['delivered'] / raw['lines']:.1f}%"
    )
    print(f"StatsD bad_lines_seen: {bad}")


if __name__ == "__main__":
    main()
