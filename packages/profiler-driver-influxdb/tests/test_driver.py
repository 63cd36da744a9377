"""The InfluxDB driver's own behaviour, against the real influxd of the test session."""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

import pytest

from xprofiler.core.dispatcher import Dispatcher
from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import Point, TraceFilter
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_point, make_trace
from xprofiler.core.uri import URLError
from xprofiler.drivers.influxdb import InfluxDBDriver
from xprofiler.drivers.influxdb import driver as driver_module
from xprofiler.drivers.influxdb.lineproto import decode_tag, encode_tag, point_line

# Strings that line protocol or InfluxQL treat specially, and some that merely look like our
# own percent-encoding.
CORPUS = [
    "plain",
    "with space",
    " leading and trailing ",
    "comma,here",
    "equals=sign",
    'double "quotes"',
    "single 'quotes'",
    "new\nline",
    "carriage\rreturn",
    "tab\there",
    "back\\slash",
    "trailing backslash\\",
    "\\",
    "\\ ",
    '\\"',
    "%",
    "100%25 literal",
    "%0A",
    "unicode naïve ☃ 日本 🚀",
    "combining e\u0301",
    "zero\u200bwidth",
    "nul\x00byte",
    "del\x7fchar",
    ",",
    "=",
    " ",
    '"',
    "all: ,= \"'\\\n\r\t%",
    "x" * 2000,
]


def _key(points: list[Point]) -> list[tuple[Any, ...]]:
    return sorted(tuple((k, repr(p[k])) for k in sorted(p)) for p in points)  # type: ignore[literal-required]


@pytest.fixture
def url(influx_base: str, db_name: str) -> str:
    return f"{influx_base}/{db_name}"


@pytest.fixture
def drv(url: str) -> Any:
    d = load_driver(url)
    yield d
    d.close()


def _trace_of(text: str, base_id: str | None = None) -> list[Point]:
    base = base_id or uuid.uuid4().hex
    t0 = time.time_ns() - 60_000_000_000
    span = f"{base[:6]}-span"
    common = {"service": text, "project": text, "host": text}
    return [
        make_point(base, span, base, "start", text, t0, info={"v": text}, **common),
        make_point(base, span, base, "stop", text, t0 + 5, info={}, **common),
    ]


# -- escaping -----------------------------------------------------------------------------------
def test_tag_encoding_is_reversible_and_leaves_ordinary_text_alone() -> None:
    for text in CORPUS:
        stored = encode_tag(text)
        assert decode_tag(stored) == text
        assert "\n" not in stored and "\\" not in stored
    assert encode_tag("api worker, v2 ☃") == "api worker, v2 ☃"
    assert encode_tag("a\nb%c\\") == "a%0Ab%25c%5C"


@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_escaping_corpus_round_trips_exactly_and_filters(drv: Any, index: int) -> None:
    text = CORPUS[index]
    points = _trace_of(text)
    drv.notify(points)
    assert _key(drv.get_report(points[0]["base_id"])) == _key(points)
    (by_service,) = drv.list_traces(TraceFilter(service=text))
    (by_name,) = drv.list_traces(TraceFilter(name=text))
    assert by_service.base_id == by_name.base_id == points[0]["base_id"]
    assert by_name.name == text
    assert by_name.services == (text,)


def test_strange_base_and_span_ids_round_trip(drv: Any) -> None:
    base = 'b a,s=e"\n%41\\'
    points = _trace_of("n", base_id=base)
    for p in points:
        p["trace_id"] = "span id,=\\ \n"
        p["id"] = f"{p['trace_id']}-{p['event']}"
        p["parent_id"] = 'parent "x"\n'
    drv.notify(points)
    assert _key(drv.get_report(base)) == _key(points)
    assert drv.get_report('b a,s=e"\n%41') == []
    (row,) = drv.list_traces(TraceFilter())
    assert row.base_id == base and row.span_count == 1


def test_empty_service_host_and_project_round_trip(drv: Any) -> None:
    points = _trace_of("")
    drv.notify(points)
    assert _key(drv.get_report(points[0]["base_id"])) == _key(points)
    (row,) = drv.list_traces(TraceFilter(service=""))
    assert row.services == ("",)


def test_line_protocol_escapes_tags_and_fields() -> None:
    p = make_point("b", "s", "b", "start", 'a b,c=d"\n', 7, service="x", info={"q": '"'})
    p["project"] = 'p"\\'
    line = point_line(p, "trace_points")
    assert line.startswith("trace_points,base_id=b,host=host-1,")
    assert r"name=a\ b\,c\=d\"%0A," not in line  # quotes are literal in tags
    assert r'name=a\ b\,c\=d"%0A,' in line
    assert r'start_project="p\"\\"' in line
    assert r'start_info="{\"q\":\"\\\"\"}"' in line
    assert "stop_" not in line and "event" not in line
    assert line.endswith(" 7")
    assert "\n" not in line


# -- timestamps ---------------------------------------------------------------------------------
def test_points_in_the_same_nanosecond_are_all_kept(drv: Any) -> None:
    base = uuid.uuid4().hex
    t = time.time_ns() - 1_000_000_000
    same = {"service": "api", "host": "h"}
    points = [
        # two sibling spans of one name starting in the same nanosecond ...
        make_point(base, "s1", base, "start", "db", t, **same),
        make_point(base, "s2", base, "start", "db", t, **same),
        # ... and a zero-length span whose start and stop share it too
        make_point(base, "s3", base, "start", "db", t, **same),
        make_point(base, "s3", base, "stop", "db", t, **same),
        # one nanosecond apart, within one microsecond: distinct and ordered
        make_point(base, "s1", base, "stop", "db", t + 1, **same),
        make_point(base, "s2", base, "stop", "db", t + 2, **same),
    ]
    drv.notify(points)
    got = drv.get_report(base)
    assert _key(got) == _key(points)
    assert sorted(p["timestamp"] for p in got) == [t, t, t, t, t + 1, t + 2]
    (row,) = drv.list_traces(TraceFilter())
    assert (row.start, row.end, row.span_count) == (t, t + 2, 3)


def test_precision_option_truncates_and_keeps_points_apart(influx_base: str, db_name: str) -> None:
    drv = load_driver(f"{influx_base}/{db_name}?precision=u")
    try:
        base = uuid.uuid4().hex
        t = (time.time_ns() // 1000) * 1000 - 1_000_000_000
        points = [
            make_point(base, "s1", base, "start", "op", t + 123),
            make_point(base, "s2", base, "start", "op", t + 456),
        ]
        drv.notify(points)
        got = drv.get_report(base)
        assert sorted(p["timestamp"] for p in got) == [t, t]
        assert {p["trace_id"] for p in got} == {"s1", "s2"}
    finally:
        drv.close()


# -- retention ----------------------------------------------------------------------------------
def _policies(influxql: Any, db: str) -> dict[str, str]:
    (res,) = influxql(f'SHOW RETENTION POLICIES ON "{db}"')
    cols = res["series"][0]["columns"]
    rows = [dict(zip(cols, v, strict=True)) for v in res["series"][0]["values"]]
    return {r["name"]: r["duration"] for r in rows}


def test_retention_option_creates_then_alters_the_policy(
    influx_base: str, db_name: str, influxql: Any
) -> None:
    d7 = load_driver(f"{influx_base}/{db_name}?retention=7d")
    d7.notify(make_trace(1))
    assert _policies(influxql, db_name)["xprofiler"] == "168h0m0s"
    (res,) = influxql('SELECT COUNT("span") FROM "xprofiler"."trace_points"', db_name)
    assert res["series"][0]["values"][0][1] == 2
    d7.close()
    d14 = load_driver(f"{influx_base}/{db_name}?retention=14d")
    d14.notify(make_trace(1))
    assert _policies(influxql, db_name)["xprofiler"] == "336h0m0s"
    assert len(d14.list_traces()) == 2
    d14.close()
    inf = load_driver(f"{influx_base}/{db_name}?retention=inf&rp=forever")
    inf.notify(make_trace(1))
    assert _policies(influxql, db_name)["forever"] == "0s"
    assert len(inf.list_traces()) == 1  # each policy is its own store
    inf.close()


def test_points_older_than_the_policy_are_dropped_with_a_warning(
    influx_base: str, db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    drv = load_driver(f"{influx_base}/{db_name}?retention=1h")
    old = make_trace(1, start=time.time_ns() - 3 * 3600 * 10**9)
    new = make_trace(2)
    with caplog.at_level(logging.WARNING, logger="xprofiler.drivers.influxdb.driver"):
        drv.notify(old + new)  # no exception: retrying could never store the old points
    assert "older than the retention policy" in caplog.text
    assert drv.rejected == 4  # two points and their two trace-index entries
    assert _key(drv.get_report(new[0]["base_id"])) == _key(new)
    assert drv.get_report(old[0]["base_id"]) == []
    drv.close()


def test_expired_shards_take_their_series_with_them(
    influx_base: str, db_name: str, influxql: Any
) -> None:
    # What bounds series cardinality: when a shard group of the policy expires, influxd drops
    # its shards, and with them the series (span ids) only they held. DROP SHARD does now what
    # retention enforcement does at expiry.
    drv = load_driver(f"{influx_base}/{db_name}?retention=2h")  # shard groups of 1h
    hour = 3600 * 10**9
    now = time.time_ns()
    old_start = (now // hour - 1) * hour + 60 * 10**9  # in the previous hour's shard
    old = [p for i in range(20) for p in make_trace(2, start=old_start + i * 1000)]
    new = [p for _ in range(5) for p in make_trace(2, start=now - 1000)]
    drv.notify(old)
    drv.notify(new)

    def num_series() -> int:
        (res,) = influxql("SHOW STATS FOR 'database'")
        for series in res["series"]:
            if series["tags"]["database"] == db_name:
                return dict(zip(series["columns"], series["values"][0], strict=True))["numSeries"]
        raise AssertionError("no stats for the database")

    assert num_series() == 20 * 3 + 5 * 3  # per trace: a series per span + 1 index series
    (shards,) = influxql("SHOW SHARDS")
    (ours,) = [s for s in shards["series"] if s["name"] == db_name]
    cols = ours["columns"]
    oldest = min(ours["values"], key=lambda r: r[cols.index("start_time")])
    influxql(f"DROP SHARD {oldest[0]}")
    assert num_series() == 5 * 3
    assert drv.get_report(old[0]["base_id"]) == []
    assert len(drv.list_traces()) == 5
    drv.close()


def test_a_missing_named_policy_is_a_clear_error(influx_base: str, db_name: str) -> None:
    drv = load_driver(f"{influx_base}/{db_name}?rp=nosuch")
    with pytest.raises(DriverError, match="no retention policy 'nosuch'"):
        drv.notify(make_trace(1))
    drv.close()


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?bogus=1", "unknown option"),
        ("?precision=minutes", "precision"),
        ("?retention=10m", "at least 1h"),
        ("?retention=soon", "retention"),
        ("?timeout=fast", "timeout"),
        ("?timeout=0", "between 0 and 300"),
        ("?create_database=maybe", "create_database"),
        ("?max_scan=0", "max_scan"),
        ("?max_scan=lots", "max_scan"),
        ("?rp=bad%20name", "retention policy name"),
        ("?measurement=a,b", "measurement"),
        ("?ca_certs=/tmp/ca.pem", "influxdb+https"),
    ],
)
def test_bad_connection_strings_fail_at_construction(query: str, message: str) -> None:
    with pytest.raises((URLError, DriverError)) as info:
        load_driver(f"influxdb://tracer:s3cret@127.0.0.1:8086/traces{query}")
    assert message in str(info.value)
    assert "s3cret" not in str(info.value) and "s3cret" not in repr(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "influxdb://tracer:s3cret@h1:8086,h2:8086/traces",
        'influxdb://tracer:s3cret@127.0.0.1:8086/db"name',
        "influxdb://tracer:s3cret@127.0.0.1:8086/a%3Bb",
    ],
)
def test_bad_hosts_and_database_names_fail_at_construction(url: str) -> None:
    with pytest.raises((URLError, DriverError)) as info:
        load_driver(url)
    assert "s3cret" not in str(info.value)


def test_construction_does_not_contact_the_server(dead_port: int) -> None:
    drv = load_driver(f"influxdb://u:s3cret@127.0.0.1:{dead_port}/x?retention=7d")
    assert isinstance(drv, InfluxDBDriver)
    assert drv._client is None
    assert "s3cret" not in repr(drv)
    drv.close()
    drv.close()


def test_malformed_points_are_skipped_and_the_rest_stored(
    drv: Any, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_trace(2)
    bad_ts = dict(good[0], id="x-start", trace_id="x", timestamp="12")
    missing = {k: v for k, v in good[1].items() if k != "name"}
    nan_info = dict(good[1], id="y-stop", trace_id="y", info={"v": float("nan")})
    surrogate = dict(good[0], id="z-start", trace_id="z", name="bad \ud800")
    bad_event = dict(good[0], id="w-begin", trace_id="w", event="begin")
    with caplog.at_level(logging.WARNING, logger="xprofiler.drivers.influxdb.driver"):
        drv.notify([bad_ts, *good, missing, nan_info, surrogate, bad_event, "not a point"])
    assert drv.rejected == 6
    assert "skipped 6 malformed trace point(s)" in caplog.text
    assert _key(drv.get_report(good[0]["base_id"])) == _key(good)
    drv.notify([bad_ts])  # a batch of only bad points stores nothing and does not raise
    assert drv.rejected == 7


def test_filter_values_are_bound_not_spliced_into_queries(drv: Any, influxql: Any) -> None:
    points = make_trace(2, service="api")
    drv.notify(points)
    hostile = [
        'x\' OR "service" =~ /.*/ --',
        'api" OR 1=1',
        "'; DROP DATABASE \"" + drv.options.database + '"; --',
        "$since",
        "api' OR 'a'='a",
    ]
    for text in hostile:
        assert drv.get_report(text) == []
        assert drv.list_traces(TraceFilter(service=text)) == []
        assert drv.list_traces(TraceFilter(name=text)) == []
    assert _key(drv.get_report(points[0]["base_id"])) == _key(points)
    (res,) = influxql("SHOW DATABASES")
    assert [drv.options.database] in res["series"][0]["values"]


def test_create_database_false_with_a_missing_database_is_a_clear_error(
    influx_base: str, db_name: str
) -> None:
    drv = load_driver(f"{influx_base}/{db_name}?create_database=false")
    with pytest.raises(DriverError, match=f"no database '{db_name}'"):
        drv.notify(make_trace(1))
    assert drv.get_report("anything") == []  # reads of a missing database are empty
    assert drv.list_traces() == []
    drv.close()


def test_large_batches_are_split_under_the_body_limit(
    drv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real = InfluxDBDriver._write

    def counting(self: InfluxDBDriver, body: bytes) -> None:
        writes.append(len(body))
        real(self, body)

    monkeypatch.setattr(InfluxDBDriver, "_write", counting)
    drv.notify(make_trace(10))
    assert len(writes) == 1  # a batch is one request
    monkeypatch.setattr(driver_module, "MAX_BODY_BYTES", 2_000)
    points = make_trace(20)
    drv.notify(points)
    assert len(writes) > 3 and max(writes[1:]) <= 2_000
    assert _key(drv.get_report(points[0]["base_id"])) == _key(points)


# -- list_traces against the reference semantics -------------------------------------------------
def _random_traces(rng: random.Random, n: int) -> list[list[Point]]:
    t0 = time.time_ns() - 5 * 3600 * 10**9
    traces = []
    for i in range(n):
        spans = rng.randint(1, 4)
        services = rng.sample(["api", "worker", "db", "cache"], rng.randint(1, 3))
        trace = make_trace(
            spans,
            start=t0 + rng.randint(0, 10**12) + i,  # distinct starts
            step=rng.choice([1, 1_000, 10**6, 10**9]),
            services=services,
            name=rng.choice(["op", "wsgi", "rpc"]),
            error_at=rng.choice([None, None, 0, spans - 1]),
        )
        traces.append(trace)
    # one trace that starts early and ends late, across any `since` picked below
    traces.append(make_trace(3, start=t0 - 10**9, step=4 * 10**11, service="api"))
    return traces


def _filters(rng: random.Random, traces: list[list[Point]]) -> list[TraceFilter]:
    starts = sorted(min(p["timestamp"] for p in t) for t in traces)
    pick = lambda: rng.choice(starts)  # noqa: E731
    out = [
        TraceFilter(),
        TraceFilter(limit=5, offset=3),
        TraceFilter(service="worker"),
        TraceFilter(name="op1", limit=4),
        TraceFilter(errors=True),
        TraceFilter(min_duration=10**6),
        TraceFilter(min_duration=10**9, service="api"),
        TraceFilter(since=starts[5]),
        TraceFilter(since=starts[5], limit=3, offset=2),
        TraceFilter(until=starts[-6]),
        TraceFilter(since=starts[3], until=starts[-3], service="db", limit=100),
        TraceFilter(since=starts[2], min_duration=10**3, errors=True),
        TraceFilter(service="nope"),
        TraceFilter(limit=0),
        TraceFilter(offset=1000),
    ]
    for _ in range(6):
        a, b = sorted((pick(), pick()))
        out.append(
            TraceFilter(since=a, until=b, limit=rng.randint(1, 10), offset=rng.randint(0, 3))
        )
    return out


@pytest.mark.parametrize("small_chunks", [False, True])
def test_list_traces_matches_the_reference_driver(
    url: str, small_chunks: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if small_chunks:
        # Exercise the paths for many candidates and many statements with a small store.
        monkeypatch.setattr(driver_module, "IDS_PER_STATEMENT", 3)
        monkeypatch.setattr(driver_module, "MAX_OR_CANDIDATES", 4)
    rng = random.Random(7 if small_chunks else 11)
    traces = _random_traces(rng, 40)
    reference = load_driver(f"memory://influx-ref-{uuid.uuid4().hex}")
    drv = load_driver(url)
    try:
        for t in traces:
            reference.notify(t)
        drv.notify([p for t in traces for p in t])
        for f in _filters(rng, traces):
            assert drv.list_traces(f) == reference.list_traces(f), f
            assert drv.list_error_traces(f) == reference.list_error_traces(f), f
    finally:
        drv.close()
        reference.close()


def test_a_trace_that_started_before_since_is_not_listed(drv: Any) -> None:
    t0 = time.time_ns() - 3600 * 10**9
    long = make_trace(2, start=t0, step=10**10)  # t0 .. t0 + 40s
    short = make_trace(1, start=t0 + 5 * 10**9)
    drv.notify(long + short)
    since = t0 + 10**9
    assert [r.base_id for r in drv.list_traces(TraceFilter(since=since))] == [short[0]["base_id"]]
    rows = drv.list_traces(TraceFilter(until=since))
    assert [r.base_id for r in rows] == [long[0]["base_id"]]
    assert rows[0].end == t0 + 4 * 10**10  # the end is not cut at `until`


def test_max_scan_bounds_the_listing_with_advice(influx_base: str, db_name: str) -> None:
    drv = load_driver(f"{influx_base}/{db_name}?max_scan=3")
    drv.notify([p for _ in range(5) for p in make_trace(1)])
    with pytest.raises(DriverError, match="narrow the listing with since/until"):
        drv.list_traces(TraceFilter())
    t = time.time_ns() - 10**12
    drv.notify(make_trace(1, start=t))
    assert len(drv.list_traces(TraceFilter(until=t))) == 1
    drv.close()


# -- outages ------------------------------------------------------------------------------------
def test_notify_during_an_outage_fails_fast_then_recovers(
    influxdb_server: Any, influx_base: str, db_name: str
) -> None:
    drv = load_driver(
        f"influxdb://tracer:s3cret@{influxdb_server.host}:{influxdb_server.port}/{db_name}"
    )
    first = make_trace(1)
    drv.notify(first)
    second = make_trace(1)
    with influxdb_server.down():
        began = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            drv.notify(second)
        assert time.monotonic() - began < 10
        assert "s3cret" not in str(info.value) and "tracer:***@" in str(info.value)
        with pytest.raises(StoreUnavailable):
            drv.list_traces()
    drv.notify(second)  # the same driver instance reconnects
    assert {r.base_id for r in drv.list_traces()} == {first[0]["base_id"], second[0]["base_id"]}
    drv.close()


def test_server_goes_away_and_returns_through_the_dispatcher(
    influxdb_server: Any, url: str
) -> None:
    disp = Dispatcher(url, batch_size=50, flush_interval=0.05, retry_backoff_max=0.5)
    before = make_trace(5)
    for p in before:
        disp.put(p)
    assert disp.flush(20)
    during = [make_trace(5) for _ in range(10)]
    with influxdb_server.down():
        for t in during:
            for p in t:
                disp.put(p)
        deadline = time.monotonic() + 20
        while disp.stats()["failed_batches"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = disp.stats()
        assert stats["failed_batches"] >= 2
        assert stats["delivered"] == len(before)
        assert stats["queued"] == 100
        assert "InfluxDB" in (stats["last_error"] or "")
    assert disp.flush(30)
    assert disp.stats()["delivered"] == 110 and disp.stats()["dropped"] == 0
    disp.close()
    drv = load_driver(url)
    try:
        for t in [before, *during]:
            assert _key(drv.get_report(t[0]["base_id"])) == _key(t)  # each point exactly once
        assert len(drv.list_traces(TraceFilter(limit=100))) == 11
    finally:
        drv.close()


def test_https_against_a_plain_http_server_fails_clearly(influxdb_server: Any) -> None:
    drv = load_driver(
        f"influxdb+https://u:s3cret@{influxdb_server.host}:{influxdb_server.port}/x?verify=false"
    )
    with pytest.raises(StoreUnavailable) as info:
        drv.notify(make_trace(1))
    assert "s3cret" not in str(info.value)
    drv.close()


# -- authentication -----------------------------------------------------------------------------
def test_credentials_are_used_and_a_wrong_password_is_a_clear_error(
    auth_influxdb_server: Any,
) -> None:
    where = f"{auth_influxdb_server.host}:{auth_influxdb_server.port}"
    db = f"xp_{uuid.uuid4().hex[:12]}"
    admin = load_driver(f"influxdb://admin:adm1n-s3cret@{where}/{db}?retention=7d")
    points = make_trace(2)
    admin.notify(points)  # creates the database and the policy
    assert _key(admin.get_report(points[0]["base_id"])) == _key(points)
    admin.close()

    wrong = load_driver(f"influxdb://admin:wr0ng-s3cret@{where}/{db}")
    with pytest.raises(DriverError, match="refused the credentials") as info:
        wrong.notify(make_trace(1))
    assert "wr0ng-s3cret" not in str(info.value) and "wr0ng-s3cret" not in repr(info.value)
    with pytest.raises(DriverError, match="refused the credentials"):
        wrong.get_report(points[0]["base_id"])
    wrong.close()

    # A user who may not create databases: creation is skipped, the write says what is wrong.
    reader = load_driver(f"influxdb://reader:r3ader-s3cret@{where}/{db}")
    with pytest.raises(DriverError) as info:
        reader.notify(make_trace(1))
    assert "does not allow" in str(info.value)
    assert "r3ader-s3cret" not in str(info.value)
    reader.close()


def test_a_server_tag_value_limit_is_a_clear_error(limited_influxdb_server: Any) -> None:
    # influxd checks max-values-per-tag (20 here, 100,000 by default) against the values it
    # already holds, batch by batch.
    srv = limited_influxdb_server
    drv = load_driver(f"influxdb://u:s3cret@{srv.host}:{srv.port}/{uuid.uuid4().hex[:12]}")
    first = make_trace(1)
    drv.notify(first)
    with pytest.raises(DriverError, match="max-values-per-tag") as info:
        for _ in range(25):
            drv.notify(make_trace(1))
    assert "s3cret" not in str(info.value)
    assert "README" in str(info.value)
    assert len(drv.get_report(first[0]["base_id"])) == 2
    drv.close()
