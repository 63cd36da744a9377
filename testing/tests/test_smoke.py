"""One smoke test per real server: write through the real Python client, read it back."""

from __future__ import annotations

import socket
import uuid


def test_statsd_client_metrics_arrive_in_the_daemon(statsd_server):
    import statsd

    statsd_server.reset()
    before = statsd_server.stats()["messages.bad_lines_seen"]
    client = statsd.StatsClient(statsd_server.host, statsd_server.udp_port, prefix="smoke")
    client.incr("requests", 3)
    client.incr("requests")
    client.gauge("table.size_bytes", 123456)
    client.timing("latency", 12.5)
    client.timing("latency", 7)

    snapshot = statsd_server.wait_for(
        lambda s: (
            s["counters"].get("smoke.requests") == 4
            and "smoke.table.size_bytes" in s["gauges"]
            and len(s["timers"].get("smoke.latency", [])) == 2
        )
    )
    assert snapshot["gauges"]["smoke.table.size_bytes"] == 123456
    assert sorted(snapshot["timers"]["smoke.latency"]) == [7, 12.5]

    # A malformed line is counted, not stored.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"smoke.broken:notanumber|zz", (statsd_server.host, statsd_server.udp_port))
    statsd_server.wait_for(
        lambda _s: statsd_server.stats()["messages.bad_lines_seen"] == before + 1
    )
    assert not any(key.startswith("smoke.broken") for key in statsd_server.counters())

    statsd_server.reset()
    assert "smoke.requests" not in statsd_server.counters()
    assert statsd_server.gauges() == {}
    assert statsd_server.timers() == {}


def test_statsd_server_binds_loopback_only(statsd_server):
    sockets = statsd_server.listening_sockets()
    assert ("udp", "127.0.0.1", statsd_server.udp_port) in sockets
    assert ("tcp", "127.0.0.1", statsd_server.admin_port) in sockets
    assert {address for _proto, address, _port in sockets} == {"127.0.0.1"}


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
