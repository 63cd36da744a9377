"""A driver that is installed but whose client library is not (``pip uninstall pymongo``).

The distributions are real to importlib.metadata: ``*.dist-info`` directories with METADATA
(``Requires-Dist``) and ``entry_points.txt`` in a temporary directory on ``sys.path``, as pip
writes them. The fake client is shaped like pymongo: the distribution ``xpt-wireclient``
installs the import package ``xpt_wirebson`` (pymongo installs ``bson``), so an error that
only repeats the failed import would name something the user never installed by that name.
``nox -s wheels`` does the same with the real profiler-driver-mongodb and pymongo.
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
from xprofiler.core.errors import DriverLibraryMissing

DRIVER_DIST = "xpt-driver-wire"
CLIENT_DIST = "xpt-wireclient"
CLIENT_REQUIREMENT = "xpt-wireclient<3,>=2.1"
CLIENT_MODULE = "xpt_wirebson"
DRIVER_MODULE = "xpt_fake_wiredriver"

DRIVER_SOURCE = textwrap.dedent(
    f"""
    from {CLIENT_MODULE} import encode  # what the driver needs from its client library

    class Driver:
        def __init__(self, url):
            self.url = url
        def notify(self, points): encode(points)
        def get_report(self, base_id): return []
        def list_traces(self, filters=None): return []
        def list_error_traces(self, filters=None): return []
        def close(self): pass
    """
)


def write_dist(
    site: Path,
    name: str,
    version: str,
    *,
    requires: list[str] = (),  # type: ignore[assignment]
    drivers: dict[str, str] | None = None,
) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    if drivers:
        eps = ["[xprofiler.drivers]"] + [f"{k} = {v}" for k, v in drivers.items()]
        (info / "entry_points.txt").write_text("\n".join(eps) + "\n")


def install_driver(site: Path) -> None:
    """The driver distribution, depending on core and on the client library."""
    (site / f"{DRIVER_MODULE}.py").write_text(DRIVER_SOURCE)
    write_dist(
        site,
        DRIVER_DIST,
        "2.0.0",
        requires=["profiler-core>=0.1", CLIENT_REQUIREMENT, 'xpt-docs-only; extra == "docs"'],
        drivers={"wire": f"{DRIVER_MODULE}:Driver", "wire+tls": f"{DRIVER_MODULE}:Driver"},
    )


def install_client(site: Path) -> None:
    (site / CLIENT_MODULE).mkdir()
    (site / CLIENT_MODULE / "__init__.py").write_text("def encode(points):\n    return points\n")
    write_dist(site, CLIENT_DIST, "2.4.0")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "site"
    d.mkdir()
    monkeypatch.syspath_prepend(str(d))
    registry._reset_cache_for_tests()
    yield d
    registry._reset_cache_for_tests()
    for mod in [m for m in sys.modules if m in (DRIVER_MODULE, CLIENT_MODULE)]:
        del sys.modules[mod]


def run_cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from xprofiler.core.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_driver_loads_while_its_client_library_is_installed(site: Path) -> None:
    install_driver(site)
    install_client(site)
    driver = registry.load_driver("wire://u:pw@db1/traces")
    driver.notify([])
    assert registry.available()["wire"].distribution == DRIVER_DIST


def test_missing_client_library_is_its_own_error_naming_the_driver_distribution(
    site: Path,
) -> None:
    install_driver(site)  # the client library is not installed (or was uninstalled)
    with pytest.raises(DriverLibraryMissing) as info:
        registry.load_driver("wire://u:s3cret@db1/traces")
    msg = str(info.value)
    assert "'wire'" in msg
    assert DRIVER_DIST in msg
    assert "reinstall" in msg
    assert CLIENT_MODULE in msg  # what failed to import
    assert "s3cret" not in msg
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    # Not cached as loaded: installing the library afterwards makes the scheme work.
    install_client(site)
    registry._reset_cache_for_tests()
    assert registry.get_driver_class("wire").__name__ == "Driver"


def test_missing_client_library_is_named_as_the_distribution_to_install(site: Path) -> None:
    install_driver(site)
    with pytest.raises(DriverLibraryMissing) as info:
        registry.get_driver_class("wire")
    msg = str(info.value)
    assert CLIENT_DIST in msg  # the name pip knows, which the user uninstalled
    assert CLIENT_REQUIREMENT in msg or "xpt-wireclient>=2.1,<3" in msg  # what to install
    assert DRIVER_DIST in msg  # and the distribution that needs it
    assert "xpt-docs-only" not in msg  # an extra's requirement is not missing


def test_cli_exits_5_naming_the_library_and_distribution_without_a_traceback(
    site: Path,
) -> None:
    install_driver(site)
    proc = run_cli(site, "trace", "list", "-c", "wire://u:s3cret@127.0.0.1:9/traces")
    assert proc.returncode == 5, proc.stderr
    assert DRIVER_DIST in proc.stderr
    assert CLIENT_MODULE in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout


def test_profiler_drivers_lists_the_broken_driver_and_still_succeeds(site: Path) -> None:
    install_driver(site)
    proc = run_cli(site, "drivers", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["scheme"]: r for r in json.loads(proc.stdout)}
    for scheme in ("wire", "wire+tls"):
        assert rows[scheme]["distribution"] == DRIVER_DIST
        assert rows[scheme]["version"] == "2.0.0"
        assert rows[scheme]["status"].startswith("broken:")
        assert CLIENT_MODULE in rows[scheme]["status"]
    assert rows["sqlite"]["status"] == "ok"  # the others are unaffected
