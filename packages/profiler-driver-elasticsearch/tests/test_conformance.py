"""The core conformance suite, unmodified, against a real Elasticsearch server."""

from __future__ import annotations

import pytest

from xprofiler.core.testing import NetworkDriverConformance


class TestElasticsearchConformance(NetworkDriverConformance):
    @pytest.fixture
    def driver_url(self, es_url: str) -> str:
        return es_url

    @pytest.fixture
    def unreachable_url(self, unused_port: int) -> str:
        return f"elasticsearch://xp:s3cret@127.0.0.1:{unused_port}/xp_unreachable"
