"""The operator's whole loop: traced services -> store -> web viewer /api/stats -> the StatsD
bridge -> the real StatsD daemon. Two distributions, their real processes, one contract."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

import statsd_bridge  # noqa: F401 - the core session installs it; the test needs it
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace
from xprofiler.core.web import make_app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[tuple[str, list[list[dict]]]]:
    store = f"sqlite:///{tmp_path}/traces.db"
    drv = load_driver(store)
    traces = [
        make_trace(3, services=["nova-api", "nova-compute"], start=time.time_ns() - 60 * 10**9),
        make_trace(2, service="nova-api", error_at=1, start=time.time_ns() - 30 * 10**9),
        make_trace(1, service="glance", start=time.time_ns() - 5 * 10**9),
    ]
    for t in traces:
        drv.notify(t)
    drv.close()
    server = make_server("127.0.0.1", 0, make_app(store), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", traces
    finally:
        server.shutdown()
        server.server_close()


def test_viewer_stats_reach_statsd_through_the_bridge(
    viewer: tuple[str, list], statsd_server: Any, tmp_path: Path
) -> None:
    url, _ = viewer
    statsd_server.reset()
    bad_before = statsd_server.stats()["messages.bad_lines_seen"]
    config = tmp_path / "bridge.toml"
    config.write_text(
        f"""
[statsd]
host = "127.0.0.1"
port = {statsd_server.udp_port}
prefix = "it"

[bridge]
self_prefix = ""

[[sources]]
name = "viewer"
kind = "profiler"
url = "{url}"
interval = "10s"
timeout = "5s"
prefix = "xp"
"""
    )
    res = subprocess.run(
        [sys.executable, "-m", "statsd_bridge", "once", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    expected = {
        "it.xp.traces": 3,
        "it.xp.errors": 1,
        "it.xp.spans": 6,
        "it.xp.services.nova-api.traces": 2,
        "it.xp.services.nova-api.errors": 1,
        "it.xp.services.nova-compute.traces": 1,
        "it.xp.services.nova-compute.errors": 0,
        "it.xp.services.glance.traces": 1,
    }
    deadline = time.monotonic() + 10
    while True:
        gauges = statsd_server.gauges()
        if all(k in gauges for k in expected) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {k: gauges.get(k) for k in expected} == expected
    assert statsd_server.stats()["messages.bad_lines_seen"] == bad_before
