"""pytest plugin: session-scoped real servers on 127.0.0.1.

Load with ``pytest -p realservers.plugin`` (with ``testing/`` on PYTHONPATH).

Fixtures: ``redis_server``, ``influxdb_server``, ``elasticsearch_server``,
``mongodb_server``, ``statsd_server``. Each starts one instance per test session, the first
time a test asks for it, and stops it when the session ends.

When a server's software is missing or it does not start: with ``CI=true`` every test
that uses it errors (the message has the server's log tail); otherwise those tests are
skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import realservers
from realservers import catalog
from realservers._base import ServerError, is_ci


def _launch(name: str) -> realservers.Server:
    try:
        return realservers.start(name)
    except ServerError as exc:
        message = f"{name} server unavailable: {exc}"
        if is_ci():
            pytest.fail(
                message + "\n(CI=true: a server that cannot start fails the run)", pytrace=False
            )
        pytest.skip(message)
    raise AssertionError("unreachable")  # pragma: no cover


def _session_server(name: str):  # noqa: ANN202 - builds a fixture
    def fixture() -> Iterator[realservers.Server]:
        server = _launch(name)
        try:
            yield server
        finally:
            server.close()

    fixture.__name__ = f"{name}_server"
    fixture.__doc__ = f"A throwaway {name} server on 127.0.0.1 for the whole test session."
    return pytest.fixture(scope="session", name=f"{name}_server")(fixture)


redis_server = _session_server("redis")
influxdb_server = _session_server("influxdb")
elasticsearch_server = _session_server("elasticsearch")
mongodb_server = _session_server("mongodb")
statsd_server = _session_server("statsd")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"realservers: cache {catalog.cache_dir()}; CI={'true' if is_ci() else 'false'} "
        f"({'unavailable servers fail' if is_ci() else 'unavailable servers skip'})"
    ]
