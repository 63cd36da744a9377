"""Bus connection strings: options, nested store URIs, clear errors that never hold a password."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace
from xprofiler.core.uri import URLError
from xprofiler.drivers.messaging import MessagingDriver, parse_bus_url


def test_defaults() -> None:
    cfg = parse_bus_url("redis://bus.example")
    assert (cfg.host, cfg.port, cfg.db) == ("bus.example", 6379, 0)
    assert (cfg.stream, cfg.group, cfg.maxlen, cfg.entry_size) == (
        "xprofiler",
        "xprofiler-collectors",
        10_000,
        500,
    )
    assert cfg.store is None and not cfg.ssl
    assert cfg.dead_key == "xprofiler:dead"
    assert cfg.collectors_key == "xprofiler:collectors"


def test_options_are_read() -> None:
    cfg = parse_bus_url(
        "rediss://u:pw@h:6380/3?stream=s1&group=g1&maxlen=0&entry_size=50&timeout=2s"
        "&connect_timeout=500ms&ssl_cert_reqs=none&ssl_check_hostname=false"
    )
    assert (cfg.port, cfg.db, cfg.stream, cfg.group) == (6380, 3, "s1", "g1")
    assert (cfg.maxlen, cfg.entry_size, cfg.timeout, cfg.connect_timeout) == (0, 50, 2.0, 0.5)
    kwargs = cfg.client_kwargs()
    assert kwargs["ssl"] is True and kwargs["ssl_cert_reqs"] == "none"
    assert kwargs["ssl_check_hostname"] is False
    assert (kwargs["username"], kwargs["password"]) == ("u", "pw")


def test_nested_store_uri_with_its_own_options_round_trips() -> None:
    store = "mongodb://tracer:p%40ss@db1:27017,db2:27017/traces?replicaSet=rs0&authSource=admin"
    cfg = parse_bus_url(f"redis://h/0?stream=s&store={quote(store, safe='')}")
    assert cfg.store == store
    assert cfg.stream == "s"


def test_plus_in_the_store_uri_is_kept() -> None:
    cfg = parse_bus_url("redis://h/0?store=mongodb+srv://cluster.example/traces")
    assert cfg.store == "mongodb+srv://cluster.example/traces"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("redis://h/0?strem=x", "unknown option(s) strem"),
        ("redis://h/0?ssl_cert_reqs=none", "ssl_* options need rediss://"),
        ("redis://h/0?maxlen=lots", "'maxlen' must be an integer"),
        ("redis://h/0?maxlen=-1", "maxlen"),
        ("redis://h/0?entry_size=0", "entry_size"),
        ("redis://h/0?entry_size=100000", "entry_size"),
        ("redis://h/0?timeout=soon", "not a duration"),
        ("redis://h/0?stream=has%20space", "option 'stream'"),
        ("redis://h/0?group=", "option 'group'"),
        ("redis://h/x", "database number"),
        ("redis://", "exactly one host"),
        ("redis://a,b/0", "exactly one host"),
        ("redis://h/0?store=", "'store' is empty"),
        ("redis://h/0?store=nonsense", "not a connection string"),
        ("redis://h/0?store=redis%3A%2F%2Fother%2F0", "not another bus"),
        ("rediss://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
    ],
)
def test_bad_connection_strings_say_what_to_fix(url: str, fragment: str) -> None:
    with pytest.raises((DriverError, URLError)) as info:
        load_driver(url)
    assert fragment in str(info.value)


def test_errors_do_not_echo_passwords() -> None:
    bad = [
        "redis://u:s3cret@h/0?strem=1",
        "redis://u:s3cret@h/0?store=mongodb%3A%2F%2Fu%3As3cret%40%5Bbad",
        "redis://u:s3cret@a,b/0",
    ]
    for url in bad:
        with pytest.raises((DriverError, URLError)) as info:
            load_driver(url)
        assert "s3cret" not in str(info.value), url
        assert "s3cret" not in repr(info.value), url


def test_the_store_password_is_masked_in_repr_and_url() -> None:
    store = quote("mongodb://tracer:st0re-pw@db:27017/traces", safe="")
    drv = load_driver(f"redis://u:bus-pw@h:6379/0?store={store}")
    try:
        for text in (repr(drv), str(drv.url), repr(drv.url)):
            assert "bus-pw" not in text and "st0re-pw" not in text, text
        assert "db" in str(drv.url)  # still says which store it is
    finally:
        drv.close()


def test_reads_need_the_store_option() -> None:
    drv = load_driver("redis://127.0.0.1:1/0")
    with pytest.raises(DriverError, match=r"\?store="):
        drv.get_report("abc")
    with pytest.raises(DriverError, match=r"\?store="):
        drv.list_traces()
    drv.close()


def test_construction_does_not_contact_redis() -> None:
    drv = load_driver("redis://127.0.0.1:1/0?store=sqlite%3A%2F%2F%2F%2Fnowhere%2Fx.db")
    assert isinstance(drv, MessagingDriver)
    drv.close()


def test_reads_go_to_the_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/t.db"
    points = make_trace(2)
    direct = load_driver(store)
    direct.notify(points)
    direct.close()
    # Redis is not even running on port 1: reads never touch the bus.
    drv = load_driver(f"redis://127.0.0.1:1/0?store={quote(store, safe='')}")
    try:
        assert len(drv.get_report(points[0]["base_id"])) == len(points)
        assert [r.base_id for r in drv.list_traces()] == [points[0]["base_id"]]
        assert drv.list_error_traces() == []
    finally:
        drv.close()


def test_wrong_password_is_a_clear_error_without_the_password(redis_server: Any) -> None:
    # The test server has no password: Redis refuses AUTH, the message says to check it.
    drv = load_driver(f"redis://someone:s3cret@{redis_server.host}:{redis_server.port}/0")
    try:
        with pytest.raises(DriverError) as info:
            drv.notify(make_trace(1))
    finally:
        drv.close()
    assert not isinstance(info.value, StoreUnavailable)
    assert "s3cret" not in str(info.value)
