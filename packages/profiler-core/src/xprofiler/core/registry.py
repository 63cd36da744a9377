"""Scheme -> driver class, over the ``xprofiler.drivers`` entry point group.

The metadata scan happens once per process and is cached; only the driver asked for is
imported. ``register()`` adds a driver by hand (tests, frozen applications without dist-info).
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from dataclasses import dataclass

# The standard library's importlib.metadata has entry_points(group=...) and EntryPoint.dist
# from Python 3.10 on, which is all we need: no backport dependency.
from importlib import metadata as _md
from typing import Any

from .errors import DriverConflict, DriverError, DriverLibraryMissing, DriverNotFound
from .uri import URL, parse_url

__all__ = [
    "DRIVER_GROUP",
    "CLI_GROUP",
    "DriverInfo",
    "available",
    "get_driver_class",
    "load_driver",
    "register",
    "unregister",
    "OUR_SCHEMES",
]

log = logging.getLogger(__name__)

DRIVER_GROUP = "xprofiler.drivers"
CLI_GROUP = "xprofiler.cli"

# Schemes served by this project's own distributions: scheme -> (extra, distribution).
OUR_SCHEMES: dict[str, tuple[str, str]] = {
    "mongodb": ("mongodb", "profiler-driver-mongodb"),
    "mongodb+srv": ("mongodb", "profiler-driver-mongodb"),
    "elasticsearch": ("elasticsearch", "profiler-driver-elasticsearch"),
    "elasticsearch+https": ("elasticsearch", "profiler-driver-elasticsearch"),
    "influxdb": ("influxdb", "profiler-driver-influxdb"),
    "influxdb+https": ("influxdb", "profiler-driver-influxdb"),
    "redis": ("messaging", "profiler-driver-messaging"),
    "rediss": ("messaging", "profiler-driver-messaging"),
}


@dataclass(frozen=True)
class DriverInfo:
    scheme: str
    value: str  # "module:Class"
    distribution: str | None
    version: str | None
    obj: Any = None  # set for drivers registered by hand


_lock = threading.Lock()
_scanned: dict[str, list[DriverInfo]] | None = None
_manual: dict[str, DriverInfo] = {}
_loaded: dict[str, type] = {}


def _scan() -> dict[str, list[DriverInfo]]:
    global _scanned
    if _scanned is not None:
        return _scanned
    with _lock:
        if _scanned is not None:
            return _scanned
        found: dict[str, list[DriverInfo]] = {}
        seen: set[tuple[str, str]] = set()
        for ep in _md.entry_points(group=DRIVER_GROUP):
            # Editable installs can list one entry point twice: dedupe on (name, value).
            key = (ep.name.lower(), ep.value)
            if key in seen:
                continue
            seen.add(key)
            dist = getattr(ep, "dist", None)
            found.setdefault(ep.name.lower(), []).append(
                DriverInfo(
                    scheme=ep.name.lower(),
                    value=ep.value,
                    distribution=getattr(dist, "name", None),
                    version=getattr(dist, "version", None),
                )
            )
        _scanned = found
        return found


def available() -> dict[str, DriverInfo]:
    """Installed schemes (entry points and manual registrations), without importing them."""
    out = {scheme: infos[0] for scheme, infos in _scan().items()}
    out.update(_manual)
    return dict(sorted(out.items()))


def register(scheme: str, driver: type | str) -> None:
    """Register a driver class (or ``"module:Class"``) for a scheme, overriding entry points."""
    scheme = scheme.lower()
    if isinstance(driver, str):
        if ":" not in driver:
            raise ValueError(
                f"register({scheme!r}, {driver!r}): write the driver as 'module:Class'"
            )
        _manual[scheme] = DriverInfo(scheme, driver, None, None)
    elif not isinstance(driver, type):
        raise TypeError(
            f"register({scheme!r}, ...) needs a driver class or 'module:Class', "
            f"not a {type(driver).__name__} instance"
        )
    else:
        value = f"{driver.__module__}:{driver.__qualname__}"
        _manual[scheme] = DriverInfo(scheme, value, None, None, obj=driver)
    _loaded.pop(scheme, None)


def unregister(scheme: str) -> None:
    _manual.pop(scheme.lower(), None)
    _loaded.pop(scheme.lower(), None)


def _install_hint(scheme: str) -> str:
    if scheme in OUR_SCHEMES:
        extra, dist = OUR_SCHEMES[scheme]
        return (
            f"the {scheme!r} driver is in the distribution {dist}; install it with "
            f"pip install 'profiler-core[{extra}]' (from this project's wheelhouse or "
            f"packages/ directory)"
        )
    names = ", ".join(available()) or "none"
    return (
        f"installed schemes: {names}; a third-party driver registers its scheme under the "
        f"{DRIVER_GROUP!r} entry point group"
    )


def get_driver_class(scheme: str) -> type:
    """The driver class for a scheme, imported on first use and cached."""
    scheme = scheme.lower()
    cls = _loaded.get(scheme)
    if cls is not None:
        return cls
    info = _manual.get(scheme)
    if info is None:
        infos = _scan().get(scheme, [])
        if not infos:
            raise DriverNotFound(f"no driver for scheme {scheme!r}: {_install_hint(scheme)}")
        dists = {(i.distribution, i.value) for i in infos}
        if len(dists) > 1:
            listed = "; ".join(f"{d or '?'} ({v})" for d, v in sorted(dists, key=str))
            raise DriverConflict(
                f"scheme {scheme!r} is registered by more than one distribution: {listed}. "
                f"Uninstall one of them."
            )
        info = infos[0]
    if info.obj is not None:
        cls = info.obj
    else:
        cls = _import(info)
    for method in ("notify", "get_report", "list_traces", "list_error_traces", "close"):
        if not callable(getattr(cls, method, None)):
            raise DriverError(
                f"the driver for {scheme!r} ({info.value}, from {info.distribution or 'unknown'}) "
                f"does not implement {method}(); it does not follow the driver protocol"
            )
    _loaded[scheme] = cls
    return cls


def _unmet_requirements(distribution: str) -> list[str]:
    """The distribution's own requirements (not its extras') that are not installed."""
    try:
        requires = _md.distribution(distribution).requires or []
    except _md.PackageNotFoundError:
        return []
    unmet = []
    for text in requires:
        spec, _, marker = text.partition(";")
        if "extra" in marker:
            continue
        if marker.strip():
            try:  # packaging is usually there (pip, setuptools); without it, skip marked ones
                from packaging.markers import Marker

                if not Marker(marker).evaluate():
                    continue
            except Exception:  # noqa: BLE001, S112 - no packaging, or a marker it cannot read
                continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if not m:
            continue
        try:
            _md.distribution(m.group(1))
        except _md.PackageNotFoundError:
            unmet.append(spec.strip())
    return unmet


def _reinstall_hint(info: DriverInfo, dist: str) -> str:
    if info.scheme in OUR_SCHEMES and OUR_SCHEMES[info.scheme][1] == dist:
        # Our own names come from this project's wheelhouse, never from an index.
        extra = OUR_SCHEMES[info.scheme][0]
        return (
            f"pip install --force-reinstall --find-links <this project's wheelhouse> "
            f"'profiler-core[{extra}]'"
        )
    return f"pip install --force-reinstall {dist}"


def _library_missing(info: DriverInfo, module: str) -> str:
    dist = info.distribution or "its distribution"
    unmet = _unmet_requirements(info.distribution) if info.distribution else []
    if unmet:
        names = ", ".join(unmet)
        install = " ".join(f"'{u}'" for u in unmet)
        return (
            f"the {info.scheme!r} driver ({dist}) is installed, but the client library it "
            f"needs is not: {names} (importing {module!r} failed). Install it with "
            f"pip install {install}, or reinstall {dist} with its dependencies: "
            f"{_reinstall_hint(info, dist)}"
        )
    return (
        f"the {info.scheme!r} driver ({dist}) is installed, but the client library it "
        f"needs, {module!r}, is missing: reinstall {dist} so that its dependencies come back "
        f"({_reinstall_hint(info, dist)})"
    )


def _import(info: DriverInfo) -> type:
    module_name, _, attr = info.value.partition(":")
    dist = info.distribution or "its distribution"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if module_name == missing or module_name.startswith(missing + "."):
            raise DriverNotFound(
                f"the driver for {info.scheme!r} is registered by {dist} but its module "
                f"{module_name!r} cannot be imported; reinstall {dist}"
            ) from exc
        raise DriverLibraryMissing(_library_missing(info, missing)) from exc
    except ImportError as exc:
        # "cannot import name X from lib": the client library is there but not a version the
        # driver was written for.
        raise DriverLibraryMissing(
            f"the {info.scheme!r} driver ({dist}) cannot import what it needs ({exc}); the "
            f"installed client library is probably the wrong version: reinstall {dist} "
            f"({_reinstall_hint(info, dist)})"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, named
        raise DriverError(
            f"importing the {info.scheme!r} driver {info.value!r} from {dist} failed "
            f"({type(exc).__name__}: {exc}); report this to the maintainers of {dist}"
        ) from exc
    obj: Any = module
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise DriverError(
            f"the driver entry point {info.value!r} of {dist} names a missing attribute"
        ) from exc
    if not isinstance(obj, type):
        raise DriverError(f"the driver entry point {info.value!r} of {dist} is not a class")
    return obj


def load_driver(url: str | URL) -> Any:
    """Parse a connection string and construct its driver (no server contact yet)."""
    parsed = parse_url(url)
    cls = get_driver_class(parsed.scheme)
    return cls(parsed)


def _reset_cache_for_tests() -> None:
    global _scanned
    _scanned = None
    _loaded.clear()
