"""Fixtures: a fresh index prefix per test on the session's real Elasticsearch server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch

# Daily indices of many tests add up on the test server's small heap: one shard, no replica,
# and every test's indices are deleted afterwards.
TEST_OPTIONS = "replicas=0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def es_admin(elasticsearch_server: Any) -> Iterator[Elasticsearch]:
    """A plain client on the test server, to look behind the driver's back."""
    client = Elasticsearch(
        f"http://{elasticsearch_server.host}:{elasticsearch_server.port}", request_timeout=30
    )
    yield client
    client.close()


def drop_store(es: Elasticsearch, prefix: str) -> None:
    try:
        names = list(
            es.indices.get(index=f"{prefix}-*", expand_wildcards="all", allow_no_indices=True)
        )
        if names:  # by name: the server refuses wildcard deletes
            es.indices.delete(index=",".join(names))
        es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-template")
    except Exception:  # noqa: BLE001 - the server may be down in a failing test
        pass


@pytest.fixture
def prefix(es_admin: Elasticsearch) -> Iterator[str]:
    name = f"xp_{uuid.uuid4().hex[:16]}"
    yield name
    drop_store(es_admin, name)


@pytest.fixture
def es_url(elasticsearch_server: Any, prefix: str) -> str:
    """A connection string to a fresh, empty store (its own index prefix)."""
    return (
        f"elasticsearch://{elasticsearch_server.host}:{elasticsearch_server.port}/{prefix}"
        f"?{TEST_OPTIONS}"
    )


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def dropper() -> Any:
    """``drop_store`` for module-scoped fixtures (conftest is not importable as a module)."""
    return drop_store
