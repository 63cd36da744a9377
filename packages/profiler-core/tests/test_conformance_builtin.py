"""The built-in drivers pass the conformance suite that every driver runs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from xprofiler.core.testing import DriverConformance


class TestMemoryDriver(DriverConformance):
    @pytest.fixture
    def driver_url(self) -> str:
        return f"memory://{uuid.uuid4().hex}"


class TestSQLiteDriver(DriverConformance):
    @pytest.fixture
    def driver_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/traces.sqlite3"
