"""The MongoDB driver passes core's conformance suite against a real MongoDB-wire server."""

from __future__ import annotations

import pytest

from xprofiler.core.testing import NetworkDriverConformance


class TestMongoDBConformance(NetworkDriverConformance):
    @pytest.fixture
    def driver_url(self, mongo_url: str) -> str:
        return mongo_url

    @pytest.fixture
    def unreachable_url(self, unused_port: int) -> str:
        return f"mongodb://tracer:s3cret@127.0.0.1:{unused_port}/xprofiler?authSource=admin"
