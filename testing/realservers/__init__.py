"""Throwaway real servers on 127.0.0.1 for the project's tests and benchmarks.

In pytest, load the plugin (``-p realservers.plugin``) and ask for a fixture:
``redis_server``, ``influxdb_server``, ``elasticsearch_server``, ``mongodb_server``,
``statsd_server``.

Outside pytest (bench scripts)::

    import realservers

    with realservers.running("redis") as server:
        client = redis.Redis.from_url(server.url)

    server = realservers.start("elasticsearch")
    ...
    server.stop()    # or server.close() to also delete its temporary directory

Software comes from ``python3 testing/provision.py`` (see testing/README.md).
Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

from realservers._base import (
    ProvisioningMissing,
    Server,
    ServerError,
    ServerStartError,
    is_ci,
)
from realservers.catalog import NAMES

__all__ = [
    "NAMES",
    "ProvisioningMissing",
    "Server",
    "ServerError",
    "ServerStartError",
    "is_ci",
    "running",
    "server_class",
    "start",
]

_LAUNCHERS = {
    "redis": ("realservers.redis_server", "RedisServer"),
    "influxdb": ("realservers.influxdb_server", "InfluxDBServer"),
    "elasticsearch": ("realservers.elasticsearch_server", "ElasticsearchServer"),
    "mongodb": ("realservers.mongodb_server", "MongoDBServer"),
    "statsd": ("realservers.statsd_server", "StatsdServer"),
}


def server_class(name: str) -> type[Server]:
    """The launcher class for ``name`` (one of ``realservers.NAMES``)."""
    try:
        module_name, class_name = _LAUNCHERS[name]
    except KeyError:
        raise ValueError(f"unknown server {name!r}; choose one of: {', '.join(NAMES)}") from None
    cls: type[Server] = getattr(importlib.import_module(module_name), class_name)
    return cls


def start(name: str) -> Server:
    """Start a fresh ``name`` server on a free loopback port and wait until it answers.

    Raises ProvisioningMissing when its software is not installed, ServerStartError
    (with the log tail) when it does not come up. Call ``.close()`` (or ``.stop()``)
    when done; it is also stopped when the interpreter exits.
    """
    server = server_class(name)()
    try:
        server.start()
    except BaseException:
        if server.workdir is None:
            server.close()
        raise
    return server


@contextlib.contextmanager
def running(name: str) -> Iterator[Server]:
    """Context manager: a started ``name`` server, closed (stopped and deleted) on exit."""
    server = start(name)
    try:
        yield server
    finally:
        server.close()
