"""Fixtures for the InfluxDB driver tests: fresh databases on the session's real influxd."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from realservers._base import ServerError, free_port, is_ci
from realservers.influxdb_server import InfluxDBServer


def fresh_db() -> str:
    return f"xp_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def db_name() -> str:
    return fresh_db()


@pytest.fixture
def influx_base(influxdb_server: Any) -> str:
    """``influxdb://127.0.0.1:PORT`` of the session's server (no database)."""
    return f"influxdb://{influxdb_server.host}:{influxdb_server.port}"


@pytest.fixture
def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    return free_port()


@pytest.fixture
def influxql(influxdb_server: Any) -> Any:
    """``influxql(q, db=None)``: InfluxQL straight to the session's server, not via the driver."""

    def run(q: str, db: str | None = None) -> list[dict[str, Any]]:
        return raw_influxql(influxdb_server, q, db)

    return run


def raw_influxql(
    server: Any,
    q: str,
    db: str | None = None,
    auth: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run InfluxQL straight over HTTP (to check what the driver stored, not through it)."""
    form = {"q": q, "epoch": "ns"}
    if db:
        form["db"] = db
    creds = "?" + urllib.parse.urlencode({"u": auth[0], "p": auth[1]}) if auth else ""
    req = urllib.request.Request(
        f"http://{server.host}:{server.port}/query{creds}",
        data=urllib.parse.urlencode(form).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = json.loads(resp.read())
    return body["results"]


class _AuthInfluxDBServer(InfluxDBServer):
    """influxd with authentication on (the shared fixture runs it off)."""

    name = "influxdb"

    def _prepare(self) -> None:
        super()._prepare()
        assert self.workdir is not None
        conf = self.workdir / "influxdb.conf"
        conf.write_text(conf.read_text().replace("auth-enabled = false", "auth-enabled = true"))

    def _check_ready(self) -> None:
        # /ping needs no credentials; SHOW DATABASES would before the admin user exists.
        with urllib.request.urlopen(f"{self.http_url}/ping", timeout=2.0) as response:
            if response.status != 204:
                raise ConnectionError(f"/ping answered {response.status}")


@pytest.fixture(scope="module")
def auth_influxdb_server() -> Iterator[Any]:
    """A second influxd, with auth on: admin ``admin``/``adm1n-s3cret``, user ``reader``."""
    server = _AuthInfluxDBServer()
    try:
        server.start()
    except ServerError as exc:
        server.close()
        if is_ci():
            pytest.fail(f"influxdb (auth) server unavailable: {exc}", pytrace=False)
        pytest.skip(f"influxdb (auth) server unavailable: {exc}")
    try:
        raw_influxql(server, "CREATE USER admin WITH PASSWORD 'adm1n-s3cret' WITH ALL PRIVILEGES")
        raw_influxql(
            server,
            "CREATE USER reader WITH PASSWORD 'r3ader-s3cret'",
            auth=("admin", "adm1n-s3cret"),
        )
        yield server
    finally:
        server.close()


class _LimitedInfluxDBServer(InfluxDBServer):
    """influxd with a tiny max-values-per-tag, to see the driver meet the limit."""

    name = "influxdb"

    def _prepare(self) -> None:
        super()._prepare()
        assert self.workdir is not None
        conf = self.workdir / "influxdb.conf"
        conf.write_text(conf.read_text().replace("[data]\n", "[data]\n  max-values-per-tag = 20\n"))


@pytest.fixture(scope="module")
def limited_influxdb_server() -> Iterator[Any]:
    server = _LimitedInfluxDBServer()
    try:
        server.start()
    except ServerError as exc:
        server.close()
        if is_ci():
            pytest.fail(f"influxdb (limited) server unavailable: {exc}", pytrace=False)
        pytest.skip(f"influxdb (limited) server unavailable: {exc}")
    try:
        yield server
    finally:
        server.close()
