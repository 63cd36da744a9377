"""Install what the real-server fixtures need; idempotent; downloads cached outside the checkout.

Routes (run concurrently, each logging to ``<cache>/logs/provision-<name>.log``):

* redis, influxdb: Debian packages ``redis-server`` and ``influxdb`` (one ``apt-get update``
  plus one ``apt-get install`` for both). Their system services are never used.
* elasticsearch: the integ-test-zip distribution fetched with Maven (local repository under
  the cache), unpacked into the cache. Runs on the machine's JDK 17.
* mongodb: FerretDB 1.x built with the machine's Go from the Go module proxy (module cache
  under the cache). ``go install module@version`` cannot be used: the proxy refuses the
  module's version list (HTTP 403), which ``go install`` reads to check for deprecation;
  ``go mod download`` of the exact version works, so the source is downloaded, copied,
  given the ``build/version/version.txt`` that FerretDB's own build generates, and built.
* statsd: the ``statsd`` npm package, installed with npm into the cache.

Run it as ``python3 testing/provision.py [--only redis,statsd]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from realservers import catalog
from realservers._base import tail


class ProvisionError(RuntimeError):
    """A provisioning route failed; ``log_path`` has the details."""

    def __init__(self, message: str, log_path: Path | None = None) -> None:
        super().__init__(message)
        self.log_path = log_path


@dataclass
class Outcome:
    name: str
    version: str = "?"
    status: str = "FAILED"  # cached | installed | FAILED
    seconds: float = 0.0
    note: str = ""
    error: ProvisionError | None = None


class _Log:
    """A route's log file; also runs commands with their output appended to it."""

    def __init__(self, name: str) -> None:
        catalog.logs_dir().mkdir(parents=True, exist_ok=True)
        self.path = catalog.logs_dir() / f"provision-{name}.log"
        if self.path.exists() and self.path.stat().st_size > 2_000_000:
            self.path.unlink()  # keep the log bounded; the latest runs are what matter
        with open(self.path, "a") as handle:
            handle.write(f"\n=== provisioning {name} at {time.ctime()} (pid {os.getpid()})\n")
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock, open(self.path, "a") as handle:
            handle.write(text.rstrip("\n") + "\n")

    def run(
        self,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 1500,
        capture: bool = False,
    ) -> str:
        self.write(f"$ {' '.join(command)}" + (f"   (in {cwd})" if cwd else ""))
        started = time.monotonic()
        with open(self.path, "a") as handle:
            try:
                result = subprocess.run(
                    command,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if capture else handle,
                    stderr=handle,
                    timeout=timeout,
                    check=False,
                    text=True,
                )
            except FileNotFoundError as exc:
                raise ProvisionError(f"{command[0]} not found: {exc}", self.path) from exc
            except subprocess.TimeoutExpired as exc:
                raise ProvisionError(
                    f"{' '.join(command[:3])} ... took more than {timeout:.0f}s", self.path
                ) from exc
        self.write(f"(exit {result.returncode} after {time.monotonic() - started:.1f}s)")
        if capture and result.stdout:
            self.write(result.stdout[-4000:])
        if result.returncode != 0:
            raise ProvisionError(
                f"{' '.join(command[:4])} ... failed with exit code {result.returncode}",
                self.path,
            )
        return result.stdout if capture else ""


def _as_root(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    if (
        shutil.which("sudo")
        and subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0
    ):
        return ["sudo", "-n", *command]
    raise ProvisionError(
        f"{command[0]} needs root: run this script as root, or install by hand: "
        f"sudo {' '.join(command)}"
    )


def _dpkg_installed(package: str) -> bool:
    if not shutil.which("dpkg-query"):
        return False
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and result.stdout.strip() == "install ok installed"


def _dpkg_version(package: str) -> str:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "?"


_APT_LOCK = threading.Lock()


def _apt_install(packages: list[str], log: _Log) -> bool:
    """Install the packages that are missing; True when something was installed."""
    with _APT_LOCK:
        missing = [p for p in packages if not _dpkg_installed(p)]
        if not missing:
            log.write(f"already installed: {' '.join(packages)}")
            return False
        if not shutil.which("apt-get"):
            raise ProvisionError(f"apt-get not found; install {', '.join(missing)} by hand")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        log.run(_as_root(["apt-get", "update"]), env=env, timeout=600)
        log.run(
            _as_root(
                [
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    *missing,
                ]
            ),
            env=env,
            timeout=1200,
        )
        still = [p for p in missing if not _dpkg_installed(p)]
        if still:
            raise ProvisionError(f"apt-get did not install {', '.join(still)}", log.path)
        return True


@contextlib.contextmanager
def _route_lock(name: str) -> Iterator[None]:
    """Serialise a route across processes (two test runs provisioning at once)."""
    locks = catalog.cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- routes -------------------------------------------------------------------------------


def _route_apt(names: list[str]) -> dict[str, Outcome]:
    """redis and influxdb share one apt run."""
    packages = {"redis": catalog.REDIS_APT_PACKAGE, "influxdb": catalog.INFLUXDB_APT_PACKAGE}
    log = _Log("apt")
    started = time.monotonic()
    outcomes = {name: Outcome(name) for name in names}
    try:
        with _route_lock("apt"):
            installed = _apt_install([packages[n] for n in names], log)
    except ProvisionError as exc:
        exc.log_path = exc.log_path or log.path
        for outcome in outcomes.values():
            outcome.error = exc
            outcome.seconds = time.monotonic() - started
        return outcomes
    elapsed = time.monotonic() - started
    binaries = {"redis": catalog.which_redis, "influxdb": catalog.which_influxd}
    for name, outcome in outcomes.items():
        outcome.seconds = elapsed
        outcome.version = _dpkg_version(packages[name])
        if binaries[name]() is None:
            outcome.error = ProvisionError(
                f"package {packages[name]} is installed but its server binary is missing",
                log.path,
            )
            continue
        outcome.status = "installed" if installed else "cached"
        if installed and len(names) > 1:
            outcome.note = f"one apt run for {'+'.join(names)}"
    return outcomes


def _route_elasticsearch() -> Outcome:
    outcome = Outcome("elasticsearch", version=catalog.ELASTICSEARCH_VERSION)
    log = _Log("elasticsearch")
    home = catalog.elasticsearch_home()
    java = catalog.find_java_for_elasticsearch()
    if java is None:
        _apt_install(["openjdk-17-jre-headless"], log)
        java = catalog.find_java_for_elasticsearch()
        if java is None:
            raise ProvisionError("no JDK 17-23 found for Elasticsearch 8", log.path)
    log.write(f"JDK for Elasticsearch: {java}")
    if catalog.is_complete(home):
        log.write(f"cached: {home}")
        outcome.status = "cached"
        return outcome
    mvn = shutil.which("mvn")
    if mvn is None:
        _apt_install(["maven"], log)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ProvisionError("mvn (Maven) not found", log.path)
    repo = catalog.cache_dir() / "m2"
    log.run(
        [
            mvn,
            "-B",
            "--no-transfer-progress",
            f"-Dmaven.repo.local={repo}",
            f"{catalog.MAVEN_DEPENDENCY_PLUGIN}:get",
            f"-Dartifact={catalog.ELASTICSEARCH_ARTIFACT}",
            "-Dtransitive=false",
        ],
        timeout=900,
    )
    group, artifact, version, packaging = catalog.ELASTICSEARCH_ARTIFACT.split(":")
    archive = (
        repo / Path(*group.split(".")) / artifact / version / f"{artifact}-{version}.{packaging}"
    )
    if not archive.is_file():
        raise ProvisionError(f"Maven finished but {archive} is missing", log.path)
    staging = home.parent / f".unpack-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log.write(f"unpacking {archive} ({archive.stat().st_size / 1e6:.0f} MB)")
    _unzip(archive, staging)
    unpacked = staging / f"elasticsearch-{catalog.ELASTICSEARCH_VERSION}"
    if not (unpacked / "bin" / "elasticsearch").is_file():
        raise ProvisionError(f"{archive} has no bin/elasticsearch", log.path)
    (unpacked / catalog.COMPLETE_MARKER).write_text(json.dumps({"java_home": str(java)}))
    shutil.rmtree(home, ignore_errors=True)
    os.replace(unpacked, home)
    shutil.rmtree(staging, ignore_errors=True)
    outcome.status = "installed"
    return outcome


def _unzip(archive: Path, target: Path) -> None:
    """Extract keeping the Unix permission bits (zipfile alone drops them)."""
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            path = Path(bundle.extract(member, target))
            mode = (member.external_attr >> 16) & 0o7777
            if mode and not member.is_dir():
                path.chmod(mode)


def _go_version(go: str) -> tuple[int, int]:
    text = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=False
    ).stdout
    match = re.match(r"go(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _route_mongodb() -> Outcome:
    outcome = Outcome("mongodb", version=f"FerretDB {catalog.FERRETDB_VERSION}")
    log = _Log("mongodb")
    binary = catalog.ferretdb_binary()
    if binary.is_file() and _ferretdb_version(binary) == catalog.FERRETDB_VERSION:
        log.write(f"cached: {binary}")
        outcome.status = "cached"
        return outcome
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise ProvisionError(
            f"the Go toolchain (>= {'.'.join(map(str, catalog.FERRETDB_MIN_GO))}) is needed to "
            "build FerretDB; install Go and re-run",
            log.path,
        )
    go_version = _go_version(go)
    if go_version < catalog.FERRETDB_MIN_GO:
        raise ProvisionError(
            f"{go} is go{go_version[0]}.{go_version[1]}; FerretDB {catalog.FERRETDB_VERSION} "
            f"needs >= go{'.'.join(map(str, catalog.FERRETDB_MIN_GO))}",
            log.path,
        )
    gocache = catalog.cache_dir() / "go"
    env = dict(
        os.environ,
        GOMODCACHE=str(gocache / "mod"),
        GOCACHE=str(gocache / "build"),
        GOPATH=str(gocache / "path"),
        GOTOOLCHAIN="local",
        GOFLAGS="-modcacherw -buildvcs=false",
        CGO_ENABLED="0",
    )
    module = f"{catalog.FERRETDB_MODULE}@{catalog.FERRETDB_VERSION}"
    info = json.loads(
        log.run(
            [go, "mod", "download", "-json", module],
            env=env,
            capture=True,
            timeout=900,
            cwd=catalog.cache_dir(),
        )
    )
    if info.get("Error") or not info.get("Dir"):
        raise ProvisionError(f"go mod download {module}: {info.get('Error')}", log.path)
    source = binary.parent.parent / f"src-{catalog.FERRETDB_VERSION}"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(info["Dir"], source)
    for root, dirs, files in os.walk(source):
        for entry in dirs + files:
            path = os.path.join(root, entry)
            os.chmod(path, os.stat(path).st_mode | 0o200)
    # FerretDB's build generates this file from `git describe`; a module download has none.
    (source / "build" / "version" / "version.txt").write_text(catalog.FERRETDB_VERSION + "\n")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name("ferretdb.partial")
    log.run(
        [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(partial), "./cmd/ferretdb"],
        env=env,
        cwd=source,
        timeout=1500,
    )
    built = _ferretdb_version(partial)
    if built != catalog.FERRETDB_VERSION:
        raise ProvisionError(f"built ferretdb reports version {built!r}", log.path)
    os.replace(partial, binary)
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(gocache / "build", ignore_errors=True)  # build objects, not downloads
    outcome.status = "installed"
    return outcome


def _ferretdb_version(binary: Path) -> str | None:
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^version:\s*(\S+)", result.stdout, re.MULTILINE)
    return match.group(1) if match else None


def _route_statsd() -> Outcome:
    outcome = Outcome("statsd", version=catalog.STATSD_VERSION)
    log = _Log("statsd")
    prefix = catalog.statsd_prefix()
    if catalog.which_node() is None:
        _apt_install(["nodejs"], log)
    if catalog.is_complete(prefix) and (catalog.statsd_package_dir() / "stats.js").is_file():
        log.write(f"cached: {prefix}")
        outcome.status = "cached"
        return outcome
    npm = shutil.which("npm")
    if npm is None:
        _apt_install(["npm"], log)
        npm = shutil.which("npm")
        if npm is None:
            raise ProvisionError("npm not found", log.path)
    prefix.mkdir(parents=True, exist_ok=True)
    log.run(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            f"statsd@{catalog.STATSD_VERSION}",
            "--no-audit",
            "--no-fund",
            "--omit=optional",
            "--no-update-notifier",
            "--cache",
            str(catalog.cache_dir() / "npm-cache"),
        ],
        timeout=900,
    )
    package = json.loads((catalog.statsd_package_dir() / "package.json").read_text())
    if package.get("version") != catalog.STATSD_VERSION:
        raise ProvisionError(f"npm installed statsd {package.get('version')}", log.path)
    (prefix / catalog.COMPLETE_MARKER).write_text(catalog.STATSD_VERSION + "\n")
    outcome.status = "installed"
    return outcome


# Not a server: what the report/viewer browser tests and the DOT test need (Debian packages).
BROWSER_APT_PACKAGES = ["chromium", "fonts-liberation", "graphviz"]


def _route_browser() -> Outcome:
    outcome = Outcome("browser", version="debian chromium+graphviz")
    log = _Log("browser")
    installed = _apt_install(BROWSER_APT_PACKAGES, log)
    for binary in ("chromium", "dot"):
        if shutil.which(binary) is None:
            raise ProvisionError(f"{binary} is missing after installing its package", log.path)
    outcome.version = f"chromium {_dpkg_version('chromium').split('-')[0]}"
    outcome.status = "installed" if installed else "cached"
    return outcome


PROVISION_NAMES: tuple[str, ...] = (*catalog.NAMES, "browser")

_INTENDED_VERSION = {
    "browser": "debian chromium+graphviz",
    "elasticsearch": catalog.ELASTICSEARCH_VERSION,
    "mongodb": f"FerretDB {catalog.FERRETDB_VERSION}",
    "statsd": catalog.STATSD_VERSION,
}

_SINGLE_ROUTES = {
    "browser": _route_browser,
    "elasticsearch": _route_elasticsearch,
    "mongodb": _route_mongodb,
    "statsd": _route_statsd,
}


def _timed(name: str) -> Outcome:
    started = time.monotonic()
    try:
        with _route_lock(name):
            outcome = _SINGLE_ROUTES[name]()
    except ProvisionError as exc:
        if exc.log_path is None:
            exc.log_path = catalog.logs_dir() / f"provision-{name}.log"
        outcome = Outcome(name, version=_INTENDED_VERSION[name], error=exc)
    except Exception as exc:  # report, never hide: unexpected errors keep their type
        error = ProvisionError(
            f"{type(exc).__name__}: {exc}", catalog.logs_dir() / f"provision-{name}.log"
        )
        outcome = Outcome(name, version=_INTENDED_VERSION[name], error=error)
    outcome.seconds = time.monotonic() - started
    return outcome


def provision(names: list[str]) -> list[Outcome]:
    """Provision ``names`` concurrently; one Outcome per name, in the order given."""
    catalog.cache_dir().mkdir(parents=True, exist_ok=True)
    results: dict[str, Outcome] = {}
    apt_names = [n for n in names if n in ("redis", "influxdb")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {}
        if apt_names:
            futures[pool.submit(_route_apt, apt_names)] = "apt"
        for name in names:
            if name in _SINGLE_ROUTES:
                futures[pool.submit(_timed, name)] = name
        for future in concurrent.futures.as_completed(futures):
            value = future.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[value.name] = value
    return [results[name] for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="provision.py",
        description="Install the real servers the tests use (idempotent; cached under "
        f"{catalog.cache_dir()}).",
    )
    parser.add_argument(
        "--only",
        default=",".join(PROVISION_NAMES),
        help=f"comma-separated subset of: {','.join(PROVISION_NAMES)}",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROVISION_NAMES]
    if unknown or not names:
        parser.error(f"unknown server(s) {unknown}; choose from {','.join(PROVISION_NAMES)}")
    started = time.monotonic()
    print(
        f"provisioning {', '.join(names)} (a first run installs Debian packages, downloads "
        "Elasticsearch and builds FerretDB with Go: a few minutes; later runs reuse the cache)",
        flush=True,
    )
    outcomes = provision(list(dict.fromkeys(names)))
    for outcome in outcomes:
        status = outcome.status if outcome.error is None else "FAILED"
        note = f"  ({outcome.note})" if outcome.note else ""
        print(
            f"{outcome.name:<14} {outcome.version:<22} {status:<10} {outcome.seconds:7.1f}s{note}",
            flush=True,
        )
    failures = [o for o in outcomes if o.error is not None]
    for outcome in failures:
        assert outcome.error is not None
        print(
            f"\nprovisioning {outcome.name} FAILED: {outcome.error}\n"
            f"--- last lines of {outcome.error.log_path} ---\n{tail(outcome.error.log_path)}",
            file=sys.stderr,
        )
    print(
        f"{'total':<14} {'':<22} {'FAILED' if failures else 'ok':<10} "
        f"{time.monotonic() - started:7.1f}s  (logs: {catalog.logs_dir()})",
        flush=True,
    )
    return 1 if failures else 0
