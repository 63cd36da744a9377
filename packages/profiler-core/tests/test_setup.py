"""Process set-up: where points go, what fails at set-up, and replacing the configuration."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from xprofiler.core import profiler, registry
from xprofiler.core.builtin.memory import MemoryDriver
from xprofiler.core.errors import DriverError, DriverNotFound
from xprofiler.core.tracing import Trace
from xprofiler.core.uri import URLError, parse_url


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    profiler.clean()
    profiler.shutdown()
    yield
    profiler.clean()
    profiler.shutdown()


def test_bad_connection_strings_fail_at_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    registry._reset_cache_for_tests()
    scanned = {k: v for k, v in registry._scan().items() if k not in registry.OUR_SCHEMES}
    monkeypatch.setattr(registry, "_scanned", scanned)
    with pytest.raises(URLError):
        profiler.setup("mongodb//nohost", service="x")
    with pytest.raises(DriverNotFound, match=r"pip install 'profiler-core\[mongodb\]'"):
        profiler.setup("mongodb://u:pw@127.0.0.1/db", service="x")
    with pytest.raises(DriverError, match="no host"):
        profiler.setup("sqlite://host/x.db", service="x")
    assert not profiler.is_setup()
    registry._reset_cache_for_tests()


def test_environment_variable_chooses_the_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = tmp_path / "env.sqlite3"
    monkeypatch.setenv("PROFILER_CONNECTION_STRING", f"sqlite:///{db}")
    profiler.setup(service="from-env")
    base = profiler.init("k").get_base_id()
    with Trace("x"):
        pass
    assert profiler.flush(10)
    rows = sqlite3.connect(db).execute("SELECT service FROM points WHERE base_id=?", (base,))
    assert [r[0] for r in rows] == ["from-env", "from-env"]


def test_setup_again_delivers_the_old_points_and_switches_store() -> None:
    first, second = f"memory://{uuid.uuid4().hex}", f"memory://{uuid.uuid4().hex}"
    profiler.setup(first, service="one", flush_interval=3600, batch_size=10**6)
    base = profiler.init("k").get_base_id()
    with Trace("before"):
        pass
    profiler.setup(second, service="two", flush_interval=3600, batch_size=10**6)
    with Trace("after"):
        pass
    assert profiler.flush(10)
    old = MemoryDriver(parse_url(first)).get_report(base)
    new = MemoryDriver(parse_url(second)).get_report(base)
    assert {(p["name"], p["service"]) for p in old} == {("before", "one")}
    assert {(p["name"], p["service"]) for p in new} == {("after", "two")}


def test_stats_and_flush_without_setup() -> None:
    assert not profiler.is_setup()
    assert profiler.flush(0.1) is True
    assert profiler.dispatcher_stats()["queued"] == 0


def test_hmac_keys_as_one_string() -> None:
    profiler.setup(f"memory://{uuid.uuid4().hex}", hmac_keys="only-key")
    from xprofiler.core.profiler import configured_hmac_keys

    assert configured_hmac_keys() == ("only-key",)
