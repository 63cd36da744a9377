"""Core's conformance suite, run through the bus: notify -> stream -> collector -> store.

The bus alone cannot pass the suite as it stands: ``notify`` returns when Redis has the points,
and they are readable once a collector stored them (read-your-writes holds for the store, not for
the bus). So the ``driver`` fixture pairs the real driver with an in-process collector that
drains the stream after every ``notify``. What the suite then proves is what matters here:
points cross the bus exactly as given (types, unicode, big ints, nested info), re-delivery is
idempotent end to end, reads through the bus URI see the store, and an unreachable Redis fails
fast without leaking the password.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from xp_messaging_helpers import bus_url

from xprofiler.core.points import Point
from xprofiler.core.registry import load_driver
from xprofiler.core.testing import NetworkDriverConformance
from xprofiler.drivers.messaging import Collector, CollectorOptions, MessagingDriver


class DrainingDriver:
    """The bus driver; each notify is followed by a collector draining the stream."""

    def __init__(self, url: str) -> None:
        self.inner: MessagingDriver = load_driver(url)
        self.url = self.inner.url
        self.collector = Collector(url, options=CollectorOptions(block=0.05, heartbeat=0.2))
        self._lock = threading.Lock()  # one collector, drained by one thread at a time

    def notify(self, points: Sequence[Point]) -> None:
        self.inner.notify(points)
        with self._lock:
            self.collector.drain(timeout=60)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()
        self.collector.close()


class TestThroughTheBus(NetworkDriverConformance):
    @pytest.fixture
    def driver_url(self, redis_server: Any, tmp_path: Any) -> str:
        store = f"sqlite:///{tmp_path}/{uuid.uuid4().hex}.db"
        return bus_url(redis_server, f"xp-{uuid.uuid4().hex[:12]}", store)

    @pytest.fixture
    def driver(self, driver_url: str) -> Iterator[Any]:
        drv = DrainingDriver(driver_url)
        try:
            yield drv
        finally:
            drv.close()

    @pytest.fixture
    def unreachable_url(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"redis://tracer:s3cret@127.0.0.1:{port}/0?store=sqlite%3A%2F%2F%2Fx.db"
