"""Fixtures: the session's real Redis, a fresh stream name per test, a sqlite store per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

# The helpers module is imported by tests and by their subprocesses (which get this directory
# on PYTHONPATH); its name is distinctive so that it cannot shadow another package's module.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def redis_admin(redis_server: Any) -> Iterator[redis.Redis]:
    """A plain client on the test server, to look behind the driver's back."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture
def stream() -> str:
    return f"xp-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "traces.sqlite3"


@pytest.fixture
def sqlite_store(sqlite_path: Path) -> str:
    return f"sqlite:///{sqlite_path}"


@pytest.fixture
def bus(redis_server: Any, stream: str, sqlite_store: str) -> str:
    """A bus on a fresh stream whose store is a fresh sqlite file."""
    from xp_messaging_helpers import bus_url

    return bus_url(redis_server, stream, sqlite_store)
