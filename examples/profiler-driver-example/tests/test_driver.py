"""What the jsonl driver promises beyond the conformance suite: how core finds it, what it
refuses, what it does with a damaged file, and a whole trace through core's CLI."""

from __future__ import annotations

import json
import logging
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from profiler_driver_example.driver import JsonLinesDriver

from xprofiler.core import registry
from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import TraceFilter
from xprofiler.core.testing import make_trace


def _url(path: Path) -> str:
    return f"jsonl:///{path}"


def test_core_finds_the_driver_by_its_scheme_through_the_entry_point() -> None:
    info = registry.available()["jsonl"]
    assert info.distribution == "profiler-driver-example"
    assert info.value == "profiler_driver_example.driver:JsonLinesDriver"
    assert registry.get_driver_class("jsonl") is JsonLinesDriver


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("jsonl://somehost/traces", "not a server"),
        ("jsonl://user:s3cret@/traces", "not a server"),
        ("jsonl://", "needs a directory"),
        ("jsonl:///traces?flush=1&ttl=2", "remove flush, ttl"),
    ],
)
def test_a_bad_connection_string_is_refused_with_what_to_write(url: str, says: str) -> None:
    with pytest.raises(DriverError) as info:
        registry.load_driver(url)
    assert says in str(info.value)
    assert "s3cret" not in str(info.value)


def test_constructing_and_reading_touch_no_file(tmp_path: Path) -> None:
    store = tmp_path / "not-yet"
    driver = registry.load_driver(_url(store))
    assert driver.list_traces(TraceFilter()) == []
    assert driver.get_report("0123") == []
    driver.close()
    assert not store.exists()


def test_store_is_private_to_its_owner(tmp_path: Path) -> None:
    store = tmp_path / "traces"
    driver = registry.load_driver(_url(store))
    driver.notify(make_trace(1))
    assert stat.S_IMODE(store.stat().st_mode) & 0o077 == 0
    (file,) = store.iterdir()
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_torn_and_foreign_lines_are_skipped_and_later_points_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    driver = registry.load_driver(_url(tmp_path / "traces"))
    points = make_trace(3)
    driver.notify(points[:2])
    (file,) = (tmp_path / "traces").iterdir()
    with open(file, "a", encoding="utf-8") as fh:
        fh.write('{"id": "cut short by a cra')  # a writer that died mid-line
    assert len(driver.get_report(points[0]["base_id"])) == 2  # the torn tail is not read yet
    driver.notify(points[2:])
    with open(file, "a", encoding="utf-8") as fh:
        fh.write('\n["not", "a", "point"]\n{"id": "no other keys"}\n')
    with caplog.at_level(logging.WARNING, logger="profiler_driver_example.driver"):
        got = driver.get_report(points[0]["base_id"])
    assert sorted(p["id"] for p in got) == sorted(p["id"] for p in points)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "is not JSON" in warned and "is not a trace point" in warned
    (row,) = driver.list_traces(TraceFilter())
    assert row.span_count == 3


def test_a_store_that_cannot_be_written_raises_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    driver = registry.load_driver(_url(blocker / "traces"))
    points = make_trace(1)
    with pytest.raises(StoreUnavailable, match="cannot create the trace directory"):
        driver.notify(points)
    # The dispatcher keeps a failed batch and retries: once the store is back, it is stored.
    blocker.unlink()
    driver.notify(points)
    assert len(driver.get_report(points[0]["base_id"])) == len(points)


def _profiler(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("profiler", path=str(Path(sys.executable).parent))
    cmd = (
        [exe]
        if exe
        else [
            sys.executable,
            "-c",
            "import sys; from xprofiler.core.cli import main; sys.exit(main())",
        ]
    )
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, check=False)


def test_a_traced_multi_service_request_round_trips_through_core(tmp_path: Path) -> None:
    # core's demo: an api process and a worker subprocess, both writing into this store.
    url = _url(tmp_path / "traces")
    demo = _profiler("demo", "--requests", "2", "-c", url)
    assert demo.returncode == 0, demo.stderr
    listed = _profiler("trace", "list", "--json", "-c", url)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert rows, "the demo's traces were not listed"
    shown = _profiler("trace", "show", rows[0]["base_id"], "--json", "-c", url)
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    services = set(rows[0]["services"])
    assert len(services) >= 2, services  # the api and its worker wrote into one trace
    assert report
    drivers = _profiler("drivers", "--json")
    (row,) = [d for d in json.loads(drivers.stdout) if d["scheme"] == "jsonl"]
    assert row["distribution"] == "profiler-driver-example"
    assert row["status"] == "ok"
