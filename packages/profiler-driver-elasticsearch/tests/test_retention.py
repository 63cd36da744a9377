"""Retention deletes whole indices whose period ended more than N days ago, nothing else."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from elasticsearch import Elasticsearch

from xprofiler.core.errors import DriverError
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import make_trace
from xprofiler.drivers.elasticsearch.schema import index_for

DAY = 86_400 * 1_000_000_000


def test_retention_deletes_only_indices_older_than_the_period(
    es_url: str, prefix: str, es_admin: Elasticsearch
) -> None:
    drv = load_driver(es_url)
    now = time.time_ns()
    ages = (45, 31, 29, 3, 0)
    traces = {age: make_trace(2, start=now - age * DAY) for age in ages}
    drv.notify([p for t in traces.values() for p in t])
    # Indices of this prefix that are not the driver's daily indices are never touched.
    es_admin.indices.create(index=f"{prefix}-notes", settings={"number_of_replicas": 0})
    assert len(drv.indices()) == len(ages)

    deleted = drv.apply_retention(30)

    assert deleted == sorted(index_for(prefix, "day", now - a * DAY) for a in (45, 31))
    assert es_admin.indices.exists(index=f"{prefix}-notes")
    for age, trace in traces.items():
        got = drv.get_report(trace[0]["base_id"])
        assert len(got) == (0 if age > 30 else 4), age
    assert {r.base_id for r in drv.list_traces()} == {traces[a][0]["base_id"] for a in (29, 3, 0)}
    assert drv.apply_retention(30) == []  # nothing left to do
    drv.close()


def test_an_index_is_kept_until_its_whole_day_is_past_the_limit(es_url: str, prefix: str) -> None:
    drv = load_driver(es_url)
    drv.notify(
        make_trace(
            1, start=int(datetime(2024, 3, 1, 23, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
        )
    )
    name = f"{prefix}-2024.03.01"
    assert drv.indices() == [name]
    # Day 2024-03-01 ends at 03-02 00:00; with 10 days it may go from 03-12 00:00 on.
    assert drv.apply_retention(10, now=datetime(2024, 3, 11, 23, 59, tzinfo=timezone.utc)) == []
    assert drv.apply_retention(10, now=datetime(2024, 3, 12, 0, 0, tzinfo=timezone.utc)) == [name]
    assert drv.indices() == []
    drv.close()


def test_monthly_indices_go_when_their_month_is_past_the_limit(es_url: str, prefix: str) -> None:
    drv = load_driver(es_url + "&index_period=month")
    for day in (
        datetime(2024, 1, 31, tzinfo=timezone.utc),
        datetime(2024, 2, 10, tzinfo=timezone.utc),
    ):
        drv.notify(make_trace(1, start=int(day.timestamp()) * 1_000_000_000))
    assert drv.indices() == [f"{prefix}-2024.01", f"{prefix}-2024.02"]
    now = datetime(2024, 3, 5, tzinfo=timezone.utc)
    assert drv.apply_retention(31, now=now) == [f"{prefix}-2024.01"]
    assert drv.indices() == [f"{prefix}-2024.02"]
    drv.close()


def test_retention_days_option_drives_maintenance(es_url: str, prefix: str) -> None:
    drv = load_driver(es_url + "&retention_days=7")
    now = time.time_ns()
    old, new = make_trace(1, start=now - 20 * DAY), make_trace(1, start=now)
    drv.notify(old + new)
    result = drv.maintenance()
    assert result == {
        "retention_days": 7,
        "deleted_indices": [index_for(prefix, "day", now - 20 * DAY)],
    }
    assert drv.get_report(old[0]["base_id"]) == []
    assert len(drv.get_report(new[0]["base_id"])) == 2
    drv.close()


def test_maintenance_without_retention_deletes_nothing(es_url: str) -> None:
    drv = load_driver(es_url)
    drv.notify(make_trace(1, start=time.time_ns() - 400 * DAY))
    assert drv.maintenance() == {"retention_days": None, "deleted_indices": []}
    assert len(drv.indices()) == 1
    drv.close()


@pytest.mark.parametrize("days", [None, 0, -3, 2.5, True])
def test_bad_retention_periods_are_refused(es_url: str, days: object) -> None:
    drv = load_driver(es_url)
    with pytest.raises(DriverError, match="retention"):
        drv.apply_retention(days)  # type: ignore[arg-type]
    drv.close()


def test_profiler_maintenance_command_applies_retention(es_url: str, prefix: str) -> None:
    """What an operator's cron job runs: `profiler maintenance -c URI --retention-days N`."""
    import json
    import subprocess
    import sys

    drv = load_driver(es_url)
    now = time.time_ns()
    old, new = make_trace(1, start=now - 40 * DAY), make_trace(1, start=now)
    drv.notify(old + new)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "xprofiler.core.cli", "maintenance", "-c", es_url, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    res = run("--json")  # no retention configured: nothing deleted
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"retention_days": None, "deleted_indices": []}
    res = run("--retention-days", "30", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["deleted_indices"] == [index_for(prefix, "day", now - 40 * DAY)]
    assert drv.get_report(old[0]["base_id"]) == []
    assert len(drv.get_report(new[0]["base_id"])) == 2
    assert run("--retention-days", "0").returncode == 2
    drv.close()
