"""Scheme -> driver: lazy loading, helpful errors, conflicts, hand registration.

Third-party drivers are made for real here: a ``*.dist-info`` directory with an
``entry_points.txt`` in a temporary directory put on ``sys.path``, exactly what pip writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from xprofiler.core import registry
from xprofiler.core.builtin.memory import MemoryDriver
from xprofiler.core.builtin.sqlite import SQLiteDriver
from xprofiler.core.errors import (
    DriverConflict,
    DriverError,
    DriverLibraryMissing,
    DriverNotFound,
)
from xprofiler.core.uri import URL, URLError

_FAKE_MODULE_PREFIX = "xpt_fake_"

GOOD_DRIVER = textwrap.dedent(
    """
    IMPORTS = globals().get("IMPORTS", 0) + 1

    class Driver:
        def __init__(self, url):
            self.url = url
        def notify(self, points): pass
        def get_report(self, base_id): return []
        def list_traces(self, filters=None): return []
        def list_error_traces(self, filters=None): return []
        def close(self): pass
    """
)


def make_dist(site: Path, name: str, entry_points: dict[str, str], version: str = "1.0") -> Path:
    """Write ``<name>-<version>.dist-info`` with driver entry points into ``site``."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[xprofiler.drivers]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return info


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    saved = dict(registry._manual)
    registry._reset_cache_for_tests()
    yield
    registry._manual.clear()
    registry._manual.update(saved)
    registry._reset_cache_for_tests()
    for mod in [m for m in sys.modules if m.startswith(_FAKE_MODULE_PREFIX)]:
        del sys.modules[mod]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> Path:
    """A directory on sys.path for fake distributions and their modules."""
    d = tmp_path / "site"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))
    return d


# -- built-ins and lazy loading --------------------------------------------------------------


def test_builtin_schemes_load_their_classes(fresh_registry: None) -> None:
    assert registry.get_driver_class("memory") is MemoryDriver
    assert registry.get_driver_class("SQLite") is SQLiteDriver  # schemes are case-insensitive
    d = registry.load_driver("memory://reg-test")
    assert isinstance(d, MemoryDriver)
    assert isinstance(d.url, URL) and d.url.host == "reg-test"


def test_available_lists_without_importing(site: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}boom.py").write_text("raise RuntimeError('imported!')\n")
    make_dist(site, "xpt-boom", {"boom": f"{_FAKE_MODULE_PREFIX}boom:Driver"})
    infos = registry.available()
    assert {"memory", "sqlite", "boom"} <= set(infos)
    assert infos["boom"].distribution == "xpt-boom" and infos["boom"].version == "1.0"
    assert infos["sqlite"].distribution == "profiler-core"
    assert f"{_FAKE_MODULE_PREFIX}boom" not in sys.modules
    # Asking for another scheme never imports the broken one.
    assert registry.get_driver_class("memory") is MemoryDriver
    assert f"{_FAKE_MODULE_PREFIX}boom" not in sys.modules


def test_only_the_asked_scheme_is_imported(tmp_path: Path) -> None:
    # A fresh interpreter, so nothing else in this test session has imported a driver yet.
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{_FAKE_MODULE_PREFIX}other.py").write_text("raise RuntimeError('imported!')\n")
    make_dist(site, "xpt-other", {"other": f"{_FAKE_MODULE_PREFIX}other:Driver"})
    code = textwrap.dedent(
        """
        import json, sys
        from xprofiler.core import registry
        before = sorted(m for m in sys.modules if m.startswith("xprofiler.core.builtin."))
        cls = registry.get_driver_class("memory")
        after = sorted(m for m in sys.modules if m.startswith("xprofiler.core.builtin."))
        print(json.dumps({"before": before, "after": after, "cls": cls.__name__,
                          "other": "xpt_fake_other" in sys.modules}))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["before"] == []
    assert got["after"] == ["xprofiler.core.builtin.memory"]
    assert got["cls"] == "MemoryDriver"
    assert got["other"] is False


def test_driver_module_imported_once_and_cached(site: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}good.py").write_text(GOOD_DRIVER)
    make_dist(site, "xpt-good", {"good": f"{_FAKE_MODULE_PREFIX}good:Driver"})
    first = registry.get_driver_class("good")
    second = registry.get_driver_class("GOOD")
    assert first is second
    assert sys.modules[f"{_FAKE_MODULE_PREFIX}good"].IMPORTS == 1
    driver = registry.load_driver("good://u:pw@h/db")
    assert driver.url.password == "pw"


# -- unknown schemes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "extra", "dist"),
    [
        ("mongodb", "mongodb", "profiler-driver-mongodb"),
        ("mongodb+srv", "mongodb", "profiler-driver-mongodb"),
        ("elasticsearch", "elasticsearch", "profiler-driver-elasticsearch"),
        ("influxdb", "influxdb", "profiler-driver-influxdb"),
        ("redis", "messaging", "profiler-driver-messaging"),
    ],
)
def test_our_scheme_not_installed_names_the_extra(
    fresh_registry: None, monkeypatch: pytest.MonkeyPatch, scheme: str, extra: str, dist: str
) -> None:
    # Whatever this environment has installed, look at it without our own drivers.
    scanned = {k: v for k, v in registry._scan().items() if k not in registry.OUR_SCHEMES}
    monkeypatch.setattr(registry, "_scanned", scanned)
    with pytest.raises(DriverNotFound) as info:
        registry.load_driver(f"{scheme}://u:hunter2@h/db")
    msg = str(info.value)
    assert f"pip install 'profiler-core[{extra}]'" in msg
    assert dist in msg
    assert "hunter2" not in msg


def test_unknown_other_scheme_lists_installed_schemes(site: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}good.py").write_text(GOOD_DRIVER)
    make_dist(site, "xpt-good", {"cassandra2": f"{_FAKE_MODULE_PREFIX}good:Driver"})
    with pytest.raises(DriverNotFound) as info:
        registry.load_driver("couchdb://u:hunter2@h/db")
    msg = str(info.value)
    assert "no driver for scheme 'couchdb'" in msg
    assert "installed schemes:" in msg
    for scheme in ("memory", "sqlite", "cassandra2"):
        assert scheme in msg
    assert "xprofiler.drivers" in msg  # how a third party would add one
    assert "hunter2" not in msg


def test_malformed_string_fails_before_any_lookup(fresh_registry: None) -> None:
    with pytest.raises(URLError):
        registry.load_driver("memory:/nothing")


# -- installed but broken --------------------------------------------------------------------


def test_missing_client_library_is_driver_library_missing(site: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}needslib.py").write_text(
        "import xpt_no_such_client_library  # noqa\n" + GOOD_DRIVER
    )
    make_dist(site, "xpt-needslib", {"needslib": f"{_FAKE_MODULE_PREFIX}needslib:Driver"})
    with pytest.raises(DriverLibraryMissing) as info:
        registry.get_driver_class("needslib")
    msg = str(info.value)
    assert "'xpt_no_such_client_library'" in msg
    assert "xpt-needslib" in msg
    assert "pip install --force-reinstall xpt-needslib" in msg
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_missing_client_library_via_register(site: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}needslib2.py").write_text(
        "from xpt_absent_pkg.sub import thing  # noqa\n" + GOOD_DRIVER
    )
    registry.register("needslib2", f"{_FAKE_MODULE_PREFIX}needslib2:Driver")
    with pytest.raises(DriverLibraryMissing, match="'xpt_absent_pkg'"):
        registry.load_driver("needslib2://h")


def test_wrong_version_of_client_library_is_driver_library_missing(site: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}oldlib.py").write_text(
        "from json import xpt_name_json_never_had  # noqa\n" + GOOD_DRIVER
    )
    make_dist(site, "xpt-oldlib", {"oldlib": f"{_FAKE_MODULE_PREFIX}oldlib:Driver"})
    with pytest.raises(DriverLibraryMissing) as info:
        registry.get_driver_class("oldlib")
    assert "xpt_name_json_never_had" in str(info.value)
    assert "wrong version" in str(info.value)


def test_driver_module_itself_missing_says_reinstall(site: Path) -> None:
    make_dist(site, "xpt-gone", {"gone": f"{_FAKE_MODULE_PREFIX}gone.driver:Driver"})
    with pytest.raises(DriverNotFound) as info:
        registry.get_driver_class("gone")
    assert "reinstall xpt-gone" in str(info.value)
    assert not isinstance(info.value, DriverLibraryMissing)


def test_driver_module_that_crashes_on_import_is_named(site: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}crash.py").write_text("raise RuntimeError('bad plugin')\n")
    make_dist(site, "xpt-crash", {"crash": f"{_FAKE_MODULE_PREFIX}crash:Driver"})
    with pytest.raises(DriverError) as info:
        registry.get_driver_class("crash")
    msg = str(info.value)
    assert "xpt-crash" in msg and "bad plugin" in msg and "RuntimeError" in msg


# -- conflicts and duplicates -------------------------------------------------------------------


def test_two_distributions_for_one_scheme_is_a_conflict(site: Path, tmp_path: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}good.py").write_text(GOOD_DRIVER)
    (site / f"{_FAKE_MODULE_PREFIX}good2.py").write_text(GOOD_DRIVER)
    make_dist(site, "xpt-first", {"twice": f"{_FAKE_MODULE_PREFIX}good:Driver"})
    make_dist(site, "xpt-second", {"twice": f"{_FAKE_MODULE_PREFIX}good2:Driver"})
    with pytest.raises(DriverConflict) as info:
        registry.load_driver("twice://h")
    msg = str(info.value)
    assert "xpt-first" in msg and "xpt-second" in msg
    assert (
        f"{_FAKE_MODULE_PREFIX}good:Driver" in msg and f"{_FAKE_MODULE_PREFIX}good2:Driver" in msg
    )
    assert "Uninstall one" in msg
    assert f"{_FAKE_MODULE_PREFIX}good" not in sys.modules  # refused before importing either


def test_same_entry_point_listed_twice_is_not_a_conflict(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An editable install next to a regular one lists the same (name, value) twice.
    (site / f"{_FAKE_MODULE_PREFIX}good.py").write_text(GOOD_DRIVER)
    make_dist(site, "xpt-dup", {"dup": f"{_FAKE_MODULE_PREFIX}good:Driver"})
    other = tmp_path / "site2"
    make_dist(other, "xpt-dup", {"dup": f"{_FAKE_MODULE_PREFIX}good:Driver"})
    monkeypatch.syspath_prepend(str(other))
    registry._reset_cache_for_tests()
    assert registry.get_driver_class("dup").__name__ == "Driver"


def test_register_overrides_an_entry_point(fresh_registry: None) -> None:
    class Mine(MemoryDriver):
        pass

    registry.register("sqlite", Mine)
    assert isinstance(registry.load_driver("sqlite:///x.db"), Mine)
    registry.unregister("sqlite")
    assert registry.get_driver_class("sqlite") is SQLiteDriver


# -- not a driver -------------------------------------------------------------------------------


def test_a_class_that_is_not_a_driver_is_refused_by_name(fresh_registry: None) -> None:
    class NotADriver:
        def __init__(self, url: URL) -> None:
            self.url = url

        def notify(self, points: object) -> None:
            pass

    registry.register("notdriver", NotADriver)
    with pytest.raises(DriverError) as info:
        registry.load_driver("notdriver://h")
    msg = str(info.value)
    assert "NotADriver" in msg
    assert "get_report()" in msg
    assert "driver protocol" in msg
    # And it is not cached as if it were fine.
    with pytest.raises(DriverError):
        registry.get_driver_class("notdriver")


def test_entry_point_to_a_non_class_or_missing_attribute(site: Path) -> None:
    (site / f"{_FAKE_MODULE_PREFIX}funcs.py").write_text("def Driver(url):\n    return None\n")
    make_dist(
        site,
        "xpt-funcs",
        {
            "func": f"{_FAKE_MODULE_PREFIX}funcs:Driver",
            "noattr": f"{_FAKE_MODULE_PREFIX}funcs:Nothing",
        },
    )
    with pytest.raises(DriverError, match="is not a class"):
        registry.get_driver_class("func")
    with pytest.raises(DriverError, match="missing attribute") as info:
        registry.get_driver_class("noattr")
    assert "xpt-funcs" in str(info.value)


def test_register_refuses_things_that_are_not_classes(fresh_registry: None) -> None:
    with pytest.raises(TypeError, match="driver class"):
        registry.register("inst", MemoryDriver(URL(scheme="memory")))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="module:Class"):
        registry.register("bad", "just_a_module")
    assert "inst" not in registry.available() and "bad" not in registry.available()
