"""``protocol = "tcp"``: the same daemon, started with its TCP server as well.

The session fixture runs StatsD with UDP only, so this module starts its own
instance through a subclass of the fixture's launcher that adds
``./servers/tcp`` to the daemon's config.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sbtest_http import HttpSource, MagnetoDB, Table

from statsd_bridge import config as cfg
from statsd_bridge.bridge import Bridge


@pytest.fixture(scope="module")
def tcp_statsd() -> Iterator[Any]:
    from realservers import ServerError, is_ci
    from realservers._base import HOST, free_port
    from realservers.statsd_server import StatsdServer

    class TcpStatsd(StatsdServer):
        tcp_port = 0

        def _allocate_ports(self) -> None:
            super()._allocate_ports()
            self.tcp_port = free_port()

        def _prepare(self) -> None:
            super()._prepare()
            assert self.workdir is not None
            path = self.workdir / "config.js"
            conf = json.loads(path.read_text())
            conf["servers"] = [
                {"server": "./servers/udp", "address": HOST, "port": self.port},
                {"server": "./servers/tcp", "address": HOST, "port": self.tcp_port},
            ]
            path.write_text(json.dumps(conf, indent=2) + "\n")

    server = TcpStatsd()
    try:
        server.start()
    except ServerError as exc:
        if is_ci():
            pytest.fail(f"statsd (tcp) unavailable: {exc}", pytrace=False)
        pytest.skip(f"statsd (tcp) unavailable: {exc}")
    yield server
    server.close()


def test_tcp_target_delivers_every_line(
    tcp_statsd: Any, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    magnetodb({"p": {f"t{i}": Table(i, 2 * i) for i in range(300)}})
    text = f"""
[statsd]
host = "127.0.0.1"
port = {tcp_statsd.tcp_port}
protocol = "tcp"
prefix = "tcp"

[[sources]]
name = "mdb"
kind = "magnetodb"
url = "{http_source.url}"
interval = "1s"
"""
    bridge = Bridge(cfg.loads(text))
    try:
        assert bridge.once()[0].ok
        assert bridge.once()[0].ok  # the connection is reused
    finally:
        bridge.close()
    snap = tcp_statsd.wait_for(
        lambda s: len([k for k in s["gauges"] if k.startswith("tcp.magnetodb.")]) >= 607
    )
    g = snap["gauges"]
    assert g["tcp.magnetodb.p.t299.item_count"] == 598
    assert g["tcp.magnetodb.p.size"] == sum(range(300))
    assert snap["counters"]["tcp.statsd_bridge.mdb.polls"] == 2
    assert tcp_statsd.stats()["messages.bad_lines_seen"] == 0


def test_tcp_target_down_is_a_send_error_and_recovers(
    tcp_statsd: Any, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    magnetodb({"p": {"t": Table(3, 4)}})
    text = f"""
[statsd]
port = {tcp_statsd.tcp_port}
protocol = "tcp"
prefix = "tcpdown"
timeout = "1s"

[[sources]]
name = "mdb"
kind = "magnetodb"
url = "{http_source.url}"
"""
    bridge = Bridge(cfg.loads(text))
    try:
        with tcp_statsd.down():
            out = bridge.once()[0]
            assert (out.ok, out.reason) == (False, "send")
        out = bridge.once()[0]
        assert out.ok, out.message
    finally:
        bridge.close()
    snap = tcp_statsd.wait_for(lambda s: s["gauges"].get("tcpdown.magnetodb.p.t.size") == 3)
    assert snap["gauges"]["tcpdown.magnetodb.p.item_count"] == 4
