"""End to end: MagnetoDB-shaped HTTP servers -> the bridge -> the real Etsy StatsD daemon.

Values are read back through the daemon's admin interface; every test checks
that the daemon saw no bad line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sbtest_http import HttpSource, MagnetoDB, Reply, Table

from statsd_bridge import config as cfg
from statsd_bridge.bridge import Bridge
from statsd_bridge.sender import RecordingSender


@pytest.fixture
def statsd(statsd_server: Any) -> Iterator[Any]:
    """The session's StatsD daemon, with a check that this test sent no bad line."""
    before = statsd_server.stats()["messages.bad_lines_seen"]
    yield statsd_server
    after = statsd_server.stats()["messages.bad_lines_seen"]
    assert after == before, "the daemon saw malformed StatsD lines"


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


def bridge_toml(statsd: Any, prefix: str, sources: str, datagram: int = 512) -> str:
    return f"""
[statsd]
host = "127.0.0.1"
port = {statsd.udp_port}
prefix = "{prefix}"
max_datagram = {datagram}

{sources}
"""


def magnetodb_source(url: str, name: str = "mdb", extra: str = "", timeout: str = "800ms") -> str:
    return f"""
[[sources]]
name = "{name}"
kind = "magnetodb"
url = "{url}"
interval = "1s"
timeout = "{timeout}"
{extra}
"""


def under(snapshot: dict[str, Any], kind: str, prefix: str) -> dict[str, Any]:
    return {k: v for k, v in snapshot[kind].items() if k.startswith(prefix + ".")}


def wait_for_gauges(statsd: Any, prefix: str, count: int) -> dict[str, Any]:
    snap = statsd.wait_for(lambda s: len(under(s, "gauges", prefix)) >= count, timeout=10)
    return snap


def internal(statsd: Any) -> tuple[int, int]:
    c = statsd.counters()
    return int(c["statsd.packets_received"]), int(c["statsd.metrics_received"])


PROJECTS = {
    "acme": {
        "users": Table(1003432, 3000),
        "orders": Table(52000, 120),
        "gone": Table(status="DELETING"),
        "new": Table(status="CREATING"),
    },
    "globex": {"events": Table(7, 1)},
}


def test_magnetodb_tables_and_totals_arrive_exactly(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    magnetodb(PROJECTS)
    c = cfg.loads(bridge_toml(statsd, prefix, magnetodb_source(http_source.url)))
    bridge = Bridge(c)
    try:
        [out] = bridge.once()
    finally:
        bridge.close()
    assert out.ok, out.message
    m = f"{prefix}.magnetodb"
    expected = {
        f"{m}.acme.users.size": 1003432,
        f"{m}.acme.users.item_count": 3000,
        f"{m}.acme.orders.size": 52000,
        f"{m}.acme.orders.item_count": 120,
        f"{m}.acme.size": 1055432,
        f"{m}.acme.item_count": 3120,
        f"{m}.acme.tables_active": 2,
        f"{m}.acme.tables_creating": 1,
        f"{m}.acme.tables_deleting": 1,
        f"{m}.acme.tables_create_failed": 0,
        f"{m}.acme.tables_delete_failed": 0,
        f"{m}.globex.events.size": 7,
        f"{m}.globex.events.item_count": 1,
        f"{m}.globex.size": 7,
        f"{m}.globex.item_count": 1,
        f"{m}.globex.tables_active": 1,
        f"{m}.globex.tables_creating": 0,
        f"{m}.globex.tables_deleting": 0,
        f"{m}.globex.tables_create_failed": 0,
        f"{m}.globex.tables_delete_failed": 0,
    }
    snap = wait_for_gauges(statsd, m, len(expected))
    assert under(snap, "gauges", m) == expected
    # Non-ACTIVE tables are skipped, not sent as zeros.
    assert not any(".gone." in k or ".new." in k for k in snap["gauges"])
    # It walked per project: one listing, one call per project.
    paths = http_source.paths()
    assert paths.count("/v1/monitoring/projects") == 1
    assert "/v1/monitoring/projects/acme" in paths and "/v1/monitoring/projects/globex" in paths


def test_gauges_go_down_and_to_zero(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    db = magnetodb({"p": {"t": Table(5000, 50)}})
    c = cfg.loads(bridge_toml(statsd, prefix, magnetodb_source(http_source.url)))
    bridge = Bridge(c)
    name = f"{prefix}.magnetodb.p.t"
    try:
        assert bridge.once()[0].ok
        statsd.wait_for(lambda s: s["gauges"].get(f"{name}.size") == 5000)
        db.projects["p"]["t"] = Table(100, 0)
        assert bridge.once()[0].ok
        snap = statsd.wait_for(lambda s: s["gauges"].get(f"{name}.size") == 100)
    finally:
        bridge.close()
    assert snap["gauges"][f"{name}.item_count"] == 0


def test_table_walk_uses_the_per_table_endpoint(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    magnetodb(PROJECTS)
    src = magnetodb_source(http_source.url, extra='walk = "table"')
    c = cfg.loads(bridge_toml(statsd, prefix, src))
    bridge = Bridge(c)
    try:
        assert bridge.once()[0].ok
    finally:
        bridge.close()
    m = f"{prefix}.magnetodb"
    snap = wait_for_gauges(statsd, m, 20)
    assert snap["gauges"][f"{m}.acme.users.size"] == 1003432
    assert snap["gauges"][f"{m}.acme.size"] == 1055432
    paths = http_source.paths()
    assert "/v1/monitoring/projects/acme/tables/users" in paths
    # Not-ACTIVE tables are not asked for.
    assert "/v1/monitoring/projects/acme/tables/gone" not in paths


def test_listing_paging_is_followed_and_loops_are_cut(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    projects = {f"p{i}": {f"t{j}": Table(i * 100 + j, j) for j in range(3)} for i in range(5)}
    magnetodb(projects)
    src = magnetodb_source(http_source.url, extra="page_size = 4")
    c = cfg.loads(bridge_toml(statsd, prefix, src))
    bridge = Bridge(c)
    try:
        assert bridge.once()[0].ok
    finally:
        bridge.close()
    m = f"{prefix}.magnetodb"
    snap = wait_for_gauges(statsd, m, 5 * (3 * 2 + 2 + 5))
    assert snap["gauges"][f"{m}.p4.t2.size"] == 402
    assert snap["gauges"][f"{m}.p4.tables_active"] == 3
    listing = [r for r in http_source.requests if r.path == "/v1/monitoring/projects"]
    assert len(listing) == 4  # 15 rows, 4 per page

    # A server whose paging ignores the cursor returns page one forever:
    # the bridge stops at the first page with nothing new.
    rows = MagnetoDB(http_source, projects).rows()[:4]
    http_source.route("/v1/monitoring/projects", Reply.json(rows))
    before = len(http_source.requests)
    bridge = Bridge(c)
    try:
        assert bridge.once()[0].ok
    finally:
        bridge.close()
    listing = [r for r in http_source.requests[before:] if r.path == "/v1/monitoring/projects"]
    assert len(listing) == 2


HOSTILE = {
    "evil|proj": {
        "x:1|c\nother.metric:999": Table(11, 1),
        "a.b": Table(12, 2),
        "a_b": Table(13, 3),
        "spa ce/sl@sh": Table(14, 4),
        "ünï": Table(15, 5),
        "L" * 300: Table(16, 6),
    },
    "../..": {"t": Table(17, 7)},
}


def test_hostile_names_cannot_inject_or_move_values(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    magnetodb(HOSTILE)
    c = cfg.loads(bridge_toml(statsd, prefix, magnetodb_source(http_source.url)))
    bridge = Bridge(c)
    try:
        [out] = bridge.once()
    finally:
        bridge.close()
    assert out.ok, out.message
    m = f"{prefix}.magnetodb"
    snap = wait_for_gauges(statsd, m, 2 * 6 + 2 + 5 + 2 + 2 + 5 - 2)
    g = under(snap, "gauges", m)
    assert g[f"{m}.evil_proj.x_1_c_other_metric_999.size"] == 11
    assert g[f"{m}.evil_proj.a_b.size"] == 12  # first of the two names that collide
    assert g[f"{m}.evil_proj.spa_ce_sl_sh.size"] == 14
    assert g[f"{m}.evil_proj._n_.size"] == 15
    assert g[f"{m}._____.t.size"] == 17
    [long_size] = [k for k in g if k.startswith(f"{m}.evil_proj.LLLL") and k.endswith(".size")]
    assert g[long_size] == 16 and len(long_size.split(".")[3]) == 64
    # totals still count every table, including the one whose name collided
    assert g[f"{m}.evil_proj.size"] == 11 + 12 + 13 + 14 + 15 + 16
    # Every name is dot-separated safe parts, each at most 64 characters.
    for key in g:
        parts = key.split(".")
        assert all(p and len(p) <= 64 for p in parts), key
        assert all(ch.isascii() and (ch.isalnum() or ch in "_-") for p in parts for ch in p)
    # Nothing escaped into another metric or type.
    assert not any("other" in k and not k.startswith(m) for k in statsd.counters())
    assert f"{prefix}.other.metric" not in snap["gauges"]
    # The collision was counted as a rejected value (size and item_count).
    assert out.rejected == 2


def test_failed_poll_sends_nothing_but_self_metrics(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    magnetodb(PROJECTS)
    # The listing works, one project call fails: all or nothing.
    http_source.route("/v1/monitoring/projects/globex", Reply(status=500))
    c = cfg.loads(bridge_toml(statsd, prefix, magnetodb_source(http_source.url)))
    bridge = Bridge(c)
    try:
        [out] = bridge.once()
    finally:
        bridge.close()
    assert (out.ok, out.reason) == (False, "http_status")
    base = f"{prefix}.statsd_bridge.mdb"
    snap = statsd.wait_for(lambda s: f"{base}.poll_errors.http_status" in s["counters"])
    assert snap["counters"][f"{base}.poll_errors.http_status"] == 1
    assert snap["counters"][f"{base}.polls"] == 1
    assert f"{base}.metrics_sent" not in snap["counters"]
    assert snap["gauges"][f"{base}.consecutive_failures"] == 1
    assert under(snap, "gauges", f"{prefix}.magnetodb") == {}


def test_self_metrics(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    magnetodb({"p": {"t": Table(1, None), "u": Table("12", 2)}})
    c = cfg.loads(bridge_toml(statsd, prefix, magnetodb_source(http_source.url)))
    bridge = Bridge(c)
    try:
        assert bridge.once()[0].ok
        assert bridge.once()[0].ok
    finally:
        bridge.close()
    base = f"{prefix}.statsd_bridge.mdb"
    snap = statsd.wait_for(lambda s: s["counters"].get(f"{base}.polls") == 2)
    cnt = snap["counters"]
    # per poll: t.size, u.item_count, 2 totals, 5 status counts = 9 sent; 2 rejected
    assert cnt[f"{base}.metrics_sent"] == 18
    assert cnt[f"{base}.values_rejected"] == 4
    assert len(snap["timers"][f"{base}.poll_duration"]) == 2
    assert 0 <= snap["gauges"][f"{base}.last_success_age"] < 5
    assert snap["gauges"][f"{prefix}.magnetodb.p.size"] == 1  # the string "12" is not summed
    assert snap["gauges"][f"{prefix}.magnetodb.p.item_count"] == 2


def test_datagrams_are_batched_up_to_the_configured_size(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    projects = {"big": {f"table_{i:03d}": Table(i, i) for i in range(150)}}
    magnetodb(projects)
    n_lines = 150 * 2 + 2 + 5
    for size in (512, 1432):
        p = f"{prefix}{size}"
        c = cfg.loads(
            bridge_toml(
                statsd,
                p,
                magnetodb_source(http_source.url, extra="").replace(
                    "[[sources]]", '[bridge]\nself_prefix = ""\n[[sources]]'
                ),
                datagram=size,
            )
        )
        # What the library's pipeline packs, datagram by datagram:
        rec = RecordingSender(c.statsd)
        dry = Bridge(c, sender=rec)
        try:
            assert dry.once()[0].ok
        finally:
            dry.close()
        sizes = [len(d.encode()) for d in rec.datagrams]
        assert max(sizes) <= size
        assert sum(d.count("\n") + 1 for d in rec.datagrams) == n_lines
        assert len(sizes) < n_lines / 5  # really batched

        packets0, metrics0 = internal(statsd)
        bridge = Bridge(c)
        try:
            assert bridge.once()[0].ok
        finally:
            bridge.close()
        m = f"{p}.magnetodb"
        snap = wait_for_gauges(statsd, m, n_lines)
        assert under(snap, "gauges", m)[f"{m}.big.table_149.size"] == 149
        packets1, metrics1 = internal(statsd)
        assert metrics1 - metrics0 == n_lines
        assert packets1 - packets0 == len(sizes)


def test_a_large_poll_arrives_whole_at_the_default_pace(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    # 3 x 1,500 tables = 9,000+ lines in one poll. Unpaced, the daemon's receive
    # buffer overflows and most of it is dropped; paced, every line arrives.
    magnetodb({f"p{p}": {f"t{t}": Table(t, p) for t in range(1500)} for p in range(3)})
    src = magnetodb_source(http_source.url, timeout="950ms")
    c = cfg.loads(bridge_toml(statsd, prefix, src))
    _packets0, metrics0 = internal(statsd)
    bridge = Bridge(c)
    try:
        [out] = bridge.once()
    finally:
        bridge.close()
    assert out.ok, out.message
    n = 3 * (1500 * 2 + 2 + 5)
    assert out.sent == n
    m = f"{prefix}.magnetodb"
    snap = wait_for_gauges(statsd, m, n)
    g = under(snap, "gauges", m)
    assert len(g) == n
    assert g[f"{m}.p2.t1499.size"] == 1499 and g[f"{m}.p1.size"] == sum(range(1500))
    _packets1, metrics1 = internal(statsd)
    self_lines = 5  # polls, metrics_sent, poll_duration, last_success_age, consecutive_failures
    assert metrics1 - metrics0 == n + self_lines


def test_generic_http_source_types_scale_and_negative_gauges(
    statsd: Any, prefix: str, http_source: HttpSource
) -> None:
    http_source.route(
        "/stats",
        Reply.json(
            {
                "queues": [{"name": "in.box", "depth": -5}, {"name": "out", "depth": 7}],
                "latency_s": 0.25,
                "requests": 40,
                "healthy": True,
            }
        ),
    )
    src = f"""
[[sources]]
name = "app"
kind = "http"
url = "{http_source.url}/stats"
interval = "1s"

[[sources.metrics]]
each = "$.queues[*]"
value = "depth"
name = "queue.{{name}}.depth"

[[sources.metrics]]
value = "$.latency_s"
name = "latency"
type = "timer"
scale = 1000

[[sources.metrics]]
value = "$.requests"
name = "requests"
type = "counter"

[[sources.metrics]]
value = "$.healthy"
name = "healthy"
"""
    c = cfg.loads(bridge_toml(statsd, prefix, src))
    bridge = Bridge(c)
    try:
        assert bridge.once()[0].ok
    finally:
        bridge.close()
    a = f"{prefix}.app"
    snap = statsd.wait_for(
        lambda s: f"{a}.requests" in s["counters"] and f"{a}.latency" in s["timers"]
    )
    assert snap["gauges"][f"{a}.queue.in_box.depth"] == -5  # a negative gauge is not a delta
    assert snap["gauges"][f"{a}.queue.out.depth"] == 7
    assert snap["gauges"][f"{a}.healthy"] == 1
    assert snap["counters"][f"{a}.requests"] == 40
    assert snap["timers"][f"{a}.latency"] == [250]


def test_profiler_source(statsd: Any, prefix: str, http_source: HttpSource) -> None:
    http_source.route(
        "/api/stats",
        Reply.json(
            {
                "traces": 42,
                "errors": 3,
                "spans": 900,
                "services": {
                    "nova-api": {"traces": 40, "errors": 3},
                    "nova.compute": {"traces": 2, "errors": 0},
                },
            }
        ),
    )
    src = f"""
[[sources]]
name = "viewer"
kind = "profiler"
url = "{http_source.url}"
interval = "1s"
"""
    c = cfg.loads(bridge_toml(statsd, prefix, src))
    bridge = Bridge(c)
    try:
        assert bridge.once()[0].ok
    finally:
        bridge.close()
    p = f"{prefix}.profiler"
    snap = wait_for_gauges(statsd, p, 7)
    assert under(snap, "gauges", p) == {
        f"{p}.traces": 42,
        f"{p}.errors": 3,
        f"{p}.spans": 900,
        f"{p}.services.nova-api.traces": 40,
        f"{p}.services.nova-api.errors": 3,
        f"{p}.services.nova_compute.traces": 2,
        f"{p}.services.nova_compute.errors": 0,
    }


def _cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statsd_bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def test_once_dry_run_prints_exactly_what_once_sends(
    statsd: Any,
    prefix: str,
    tmp_path: Path,
    http_source: HttpSource,
    magnetodb: Callable[..., MagnetoDB],
) -> None:
    magnetodb(PROJECTS)
    toml = tmp_path / "bridge.toml"
    body = bridge_toml(statsd, prefix, magnetodb_source(http_source.url))
    toml.write_text(body.replace("[[sources]]", '[bridge]\nself_prefix = ""\n[[sources]]', 1))
    dry = _cli("once", "--dry-run", "-c", str(toml))
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert f"{prefix}.magnetodb.acme.users.size:1003432|g" in lines
    assert len(lines) == 20
    time.sleep(0.2)
    assert under({"g": statsd.gauges()}, "g", f"{prefix}.magnetodb") == {}  # sent nothing

    real = _cli("once", "-c", str(toml))
    assert real.returncode == 0, real.stderr
    snap = wait_for_gauges(statsd, f"{prefix}.magnetodb", 20)
    from_dry = {ln.split(":")[0]: int(ln.split(":")[1].split("|")[0]) for ln in lines}
    assert under(snap, "gauges", f"{prefix}.magnetodb") == from_dry


def test_once_exits_1_when_a_source_fails(statsd: Any, prefix: str, tmp_path: Path) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text(bridge_toml(statsd, prefix, magnetodb_source("http://127.0.0.1:9")))
    res = _cli("once", "-c", str(toml))
    assert res.returncode == 1
    assert "mdb: FAILED (connection)" in res.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_run_stops_on_a_signal_after_finishing_the_poll_in_flight(
    statsd: Any, prefix: str, tmp_path: Path, http_source: HttpSource, signum: int
) -> None:
    polls = {"n": 0}
    lock = threading.Lock()

    def stats(_req: Any) -> Reply:
        with lock:
            polls["n"] += 1
            n = polls["n"]
        # The 3rd poll is slow: SIGTERM arrives while it is in flight.
        return Reply.json({"traces": n, "errors": 0, "services": {}}, delay=0.3 if n == 3 else 0)

    http_source.route("/api/stats", stats)
    src = f"""
[[sources]]
name = "viewer"
kind = "profiler"
url = "{http_source.url}"
interval = "500ms"
timeout = "450ms"
"""
    toml = tmp_path / "bridge.toml"
    toml.write_text(bridge_toml(statsd, prefix, src))
    proc = subprocess.Popen(
        [sys.executable, "-m", "statsd_bridge", "run", "-c", str(toml)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while polls["n"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert polls["n"] >= 3, "the bridge never polled three times"
        time.sleep(0.05)  # the third poll is now in flight (the server delays 0.3 s)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"{signal.Signals(signum).name} received" in err
    # The poll in flight finished and was sent before the exit.
    g = f"{prefix}.profiler.traces"
    snap = statsd.wait_for(lambda s: s["gauges"].get(g) == 3)
    assert snap["gauges"][g] == 3
    assert polls["n"] == 3  # and no poll started after the signal


def test_slow_source_does_not_delay_a_fast_one(
    statsd: Any, prefix: str, http_source: HttpSource
) -> None:
    http_source.route("/slow/api/stats", Reply(delay=5.0, body=b"{}"))
    http_source.route("/fast/api/stats", Reply.json({"traces": 1, "errors": 0, "services": {}}))
    src = f"""
[[sources]]
name = "slow"
kind = "profiler"
url = "{http_source.url}/slow"
interval = "1s"
timeout = "900ms"

[[sources]]
name = "fast"
kind = "profiler"
prefix = "fastp"
url = "{http_source.url}/fast"
interval = "100ms"
timeout = "80ms"
"""
    c = cfg.loads(bridge_toml(statsd, prefix, src))
    bridge = Bridge(c)
    stop = threading.Event()
    t = threading.Thread(target=bridge.run, args=(stop,))
    t0 = time.monotonic()
    t.start()
    time.sleep(1.5)
    stop.set()
    t.join(10)
    elapsed = time.monotonic() - t0
    bridge.close()
    assert not t.is_alive()
    slow, fast = bridge.pollers
    # The slow source timed out on each of its polls; the fast one kept its pace.
    assert slow.stats.errors["timeout"] >= 1 and slow.stats.successes == 0
    assert fast.stats.successes >= 10, fast.stats
    assert elapsed < 3.0  # the stop waited at most for the slow poll's timeout
    base = f"{prefix}.statsd_bridge"
    snap = statsd.wait_for(lambda s: s["counters"].get(f"{base}.fast.polls", 0) >= 10)
    assert snap["counters"][f"{base}.slow.poll_errors.timeout"] >= 1


def test_statsd_down_does_not_break_the_bridge(
    statsd: Any, prefix: str, http_source: HttpSource, magnetodb: Callable[..., MagnetoDB]
) -> None:
    magnetodb({"p": {"t": Table(9, 9)}})
    c = cfg.loads(bridge_toml(statsd, prefix, magnetodb_source(http_source.url)))
    bridge = Bridge(c)
    try:
        with statsd.down():
            assert bridge.once()[0].ok  # UDP: fire and forget
        assert bridge.once()[0].ok
    finally:
        bridge.close()
    snap = statsd.wait_for(lambda s: s["gauges"].get(f"{prefix}.magnetodb.p.t.size") == 9)
    assert snap["gauges"][f"{prefix}.magnetodb.p.size"] == 9


def test_unresolvable_statsd_host_is_a_clear_error(tmp_path: Path, http_source: HttpSource) -> None:
    toml = tmp_path / "bridge.toml"
    toml.write_text('[statsd]\nhost = "no-such-host.invalid"\n' + magnetodb_source(http_source.url))
    res = _cli("once", "-c", str(toml))
    assert res.returncode == 2
    assert "cannot use StatsD at no-such-host.invalid:8125" in res.stderr
    assert "Traceback" not in res.stderr


def test_json_body_in_env_is_never_logged(
    statsd: Any, prefix: str, tmp_path: Path, http_source: HttpSource
) -> None:
    http_source.route("/api/stats", Reply(status=401, body=b'{"token": "leaked-in-body"}'))
    toml = tmp_path / "bridge.toml"
    src = f"""
[[sources]]
name = "viewer"
kind = "profiler"
url = "http://admin:pa55word@127.0.0.1:{http_source.server.server_port}"
headers_env = {{ "X-Auth-Token" = "VIEWER_TOKEN" }}
"""
    toml.write_text(bridge_toml(statsd, prefix, src))
    env = {**os.environ, "VIEWER_TOKEN": "tok-9f8e7d"}
    res = _cli("once", "--log-level", "DEBUG", "-c", str(toml), env=env)
    assert res.returncode == 1
    text = res.stdout + res.stderr
    assert "HTTP 401" in text
    for secret in ("pa55word", "tok-9f8e7d", "leaked-in-body"):
        assert secret not in text
