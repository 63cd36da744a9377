"""The core conformance suite against a real influxd, unmodified, in two configurations."""

from __future__ import annotations

from typing import Any

import pytest

from xprofiler.core.testing import NetworkDriverConformance, make_trace


class TestInfluxDBConformance(NetworkDriverConformance):
    """Default options: nanosecond precision, the database's default retention policy."""

    @pytest.fixture
    def driver_url(self, influx_base: str, db_name: str) -> str:
        return f"{influx_base}/{db_name}"

    @pytest.fixture
    def unreachable_url(self, dead_port: int) -> str:
        return f"influxdb://tracer:s3cret@127.0.0.1:{dead_port}/traces"


class TestInfluxDBConformanceWithRetention(NetworkDriverConformance):
    """Writing into (and reading from) a retention policy the driver creates."""

    @pytest.fixture
    def driver_url(self, influx_base: str, db_name: str) -> str:
        return f"{influx_base}/{db_name}?retention=7d&rp=traces_7d"

    @pytest.fixture
    def unreachable_url(self, dead_port: int) -> str:
        return f"influxdb://tracer:s3cret@127.0.0.1:{dead_port}/traces?retention=7d"

    def test_points_land_in_the_policy(self, driver: Any, influxql: Any, db_name: str) -> None:
        points = make_trace(2)
        driver.notify(points)
        res = influxql('SELECT COUNT("span") FROM "traces_7d"."trace_points"', db_name)
        assert res[0]["series"][0]["values"][0][1] == len(points)
        assert (
            "series"
            not in influxql('SELECT COUNT("span") FROM "autogen"."trace_points"', db_name)[0]
        )
