"""What each server is, which version, and where its provisioned files live.

Shared by the provisioning step (``testing/provision.py``) and the launchers, so that
both agree on paths without a manifest file. Nothing here starts or installs anything.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

NAMES: tuple[str, ...] = ("redis", "influxdb", "elasticsearch", "mongodb", "statsd")

# Debian packages (bookworm): whatever version Debian serves.
REDIS_APT_PACKAGE = "redis-server"
INFLUXDB_APT_PACKAGE = "influxdb"

# Elasticsearch: the integ-test-zip distribution on Maven Central.
# 8.8.x is the last 8.x line whose integ-test-zip answers ``GET /`` (the Python client's
# ``info()``/``ping()``): from 8.9 on, that endpoint lives in the ``rest-root`` module,
# which this minimal distribution does not carry.
ELASTICSEARCH_VERSION = "8.8.2"
ELASTICSEARCH_ARTIFACT = (
    f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ELASTICSEARCH_VERSION}:zip"
)
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"

# FerretDB 1.x (SQLite backend), built from the Go module proxy.
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.0"
FERRETDB_MIN_GO = (1, 22)

# The Etsy StatsD daemon from npm.
STATSD_VERSION = "0.9.0"

COMPLETE_MARKER = ".xprofiler-complete"


def cache_dir() -> Path:
    """The provisioning cache: ``$XPROFILER_TESTING_CACHE`` or ``~/.cache/xprofiler-testing``."""
    override = os.environ.get("XPROFILER_TESTING_CACHE")
    if override:
        return Path(override).expanduser().resolve()
    return Path.home() / ".cache" / "xprofiler-testing"


def logs_dir() -> Path:
    return cache_dir() / "logs"


def elasticsearch_home() -> Path:
    return cache_dir() / "elasticsearch" / f"elasticsearch-{ELASTICSEARCH_VERSION}"


def ferretdb_binary() -> Path:
    return cache_dir() / "ferretdb" / FERRETDB_VERSION / "ferretdb"


def statsd_prefix() -> Path:
    return cache_dir() / "statsd" / STATSD_VERSION


def statsd_package_dir() -> Path:
    return statsd_prefix() / "node_modules" / "statsd"


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).is_file()


def which_redis() -> str | None:
    return shutil.which("redis-server") or _existing("/usr/bin/redis-server")


def which_influxd() -> str | None:
    return shutil.which("influxd") or _existing("/usr/bin/influxd")


def which_node() -> str | None:
    return shutil.which("node") or shutil.which("nodejs")


def _existing(path: str) -> str | None:
    return path if os.access(path, os.X_OK) else None


_JAVA_VERSION_RE = re.compile(r'^JAVA_VERSION="(\d+)(?:[.\-+"]|$)', re.MULTILINE)


def java_major(home: Path) -> int | None:
    """Major version of the JDK at ``home`` (from its ``release`` file), or None."""
    try:
        text = (home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = _JAVA_VERSION_RE.search(text)
    if not match or not (home / "bin" / "java").exists():
        return None
    return int(match.group(1))


def find_java_for_elasticsearch() -> Path | None:
    """The JDK to run Elasticsearch 8.x with: 17 preferred, 17-23 accepted.

    Order: ``$ES_JAVA_HOME``, the system's ``java-17-openjdk-*``, ``$JAVA_HOME``, then any
    other JDK under /usr/lib/jvm. JDK 24+ is refused (Elasticsearch 8 needs the Security
    Manager, which those JDKs removed).
    """
    candidates: list[Path] = []
    for var in ("ES_JAVA_HOME",):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]))
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        candidates.extend(sorted(jvm.glob("java-17-openjdk-*")))
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    if jvm.is_dir():
        candidates.extend(sorted(p for p in jvm.iterdir() if p.is_dir()))
    for home in candidates:
        major = java_major(home)
        if major is not None and 17 <= major <= 23:
            return home.resolve()
    return None
