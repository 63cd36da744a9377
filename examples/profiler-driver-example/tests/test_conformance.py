"""The core conformance suite, unmodified: the same tests every xprofiler driver passes.

The suite loads the driver through ``load_driver(url)``, so it runs against the installed
distribution and its entry point, the way core meets the driver in production.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xprofiler.core.testing import DriverConformance


class TestJsonLinesDriver(DriverConformance):
    @pytest.fixture
    def driver_url(self, tmp_path: Path) -> str:
        # A fresh, empty store per test: a directory that does not exist yet.
        return f"jsonl:///{tmp_path}/traces"
