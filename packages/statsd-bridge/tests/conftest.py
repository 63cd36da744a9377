from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# pytest runs in importlib mode: make the helper module beside this file importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sbtest_http import HttpSource, MagnetoDB, Table  # noqa: E402


@pytest.fixture
def http_source() -> Iterator[HttpSource]:
    src = HttpSource()
    yield src
    src.close()


@pytest.fixture
def magnetodb(http_source: HttpSource) -> Callable[[dict[str, dict[str, Table]]], MagnetoDB]:
    def make(projects: dict[str, dict[str, Table]]) -> MagnetoDB:
        return MagnetoDB(http_source, projects)

    return make
