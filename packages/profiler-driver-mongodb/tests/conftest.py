"""Fixtures: a fresh, empty database per test on the session's real MongoDB-wire server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def mongo_admin(mongodb_server: Any) -> Iterator[pymongo.MongoClient[dict[str, Any]]]:
    """A plain pymongo client on the test server, to look behind the driver's back."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongodb_server.url, serverSelectionTimeoutMS=5000, directConnection=True
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def server_is_ferretdb(mongo_admin: pymongo.MongoClient[dict[str, Any]]) -> bool:
    return "ferretdbVersion" in mongo_admin.admin.command("buildInfo")


@pytest.fixture
def database_name(mongo_admin: pymongo.MongoClient[dict[str, Any]]) -> Iterator[str]:
    name = f"xp_{uuid.uuid4().hex[:16]}"
    yield name
    try:
        mongo_admin.drop_database(name)
    except pymongo.errors.PyMongoError:
        pass  # the server may be down in a failing test; its directory is thrown away anyway


@pytest.fixture
def mongo_url(mongodb_server: Any, database_name: str) -> str:
    return f"mongodb://{mongodb_server.host}:{mongodb_server.port}/{database_name}"


@pytest.fixture
def unused_port() -> int:
    return _free_port()
