"""The test matrix: one session per distribution/backend, plus lint, typecheck and wheels.

Run everything the way CI does with ``./run-tests`` (it provisions the real servers first).
``nox -l`` lists the sessions; ``nox -s mongodb`` runs one.

Our own distributions are always installed from their local paths in one pip call, so pip
never looks them up on a public index.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ROOT / "packages"
CORE = PACKAGES / "profiler-core"
TESTING = ROOT / "testing"
REPORTS = Path(os.environ.get("XPROFILER_REPORTS", ROOT / ".nox" / "reports"))

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = []  # filled below: every session except the developer-only ones

# The distribution directory -> session name and the servers its tests need.
SESSIONS: dict[str, str] = {
    "profiler-core": "core",
    "profiler-driver-mongodb": "mongodb",
    "profiler-driver-elasticsearch": "elasticsearch",
    "profiler-driver-influxdb": "influxdb",
    "profiler-driver-messaging": "messaging",
    "statsd-bridge": "statsd-bridge",
}

# Our own distributions a package's tests need besides core (installed from local paths).
EXTRA_LOCAL: dict[str, tuple[str, ...]] = {
    # the viewer's /api/stats polled by the StatsD bridge, end to end
    "profiler-core": ("statsd-bridge",),
    # end to end through a networked store: service -> redis -> collector -> MongoDB
    "profiler-driver-messaging": ("profiler-driver-mongodb",),
}


def _pytest(session: nox.Session, name: str, *paths: str) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": str(TESTING)}
    session.run(
        "pytest",
        *paths,
        "-p",
        "realservers.plugin",
        "-q",
        f"--junitxml={REPORTS / (name + '.xml')}",
        *session.posargs,
        env=env,
    )


def _package_session(dirname: str, name: str) -> None:
    pkg = PACKAGES / dirname

    @nox.session(name=name)
    def run(session: nox.Session) -> None:
        if not pkg.exists():
            session.skip(f"{dirname} is not in this checkout yet")
        if dirname == "statsd-bridge":
            args = ["-e", f"{pkg}[test]"]  # independent of core: prove it by not installing it
        else:
            args = ["-e", f"{CORE}[test]"]
            if pkg != CORE:
                args += ["-e", f"{pkg}[test]"]
            for extra in EXTRA_LOCAL.get(dirname, ()):
                args += ["-e", str(PACKAGES / extra)]
        session.install(*args)
        _pytest(session, name, str(pkg / "tests"))

    run.__doc__ = f"Tests of {dirname} against its real backend."
    nox.options.sessions.append(name)


for _dirname, _name in SESSIONS.items():
    _package_session(_dirname, _name)


@nox.session
def testing(session: nox.Session) -> None:
    """Smoke tests of the real-server harness: each server, each real client."""
    session.install(
        "pytest",
        "redis",
        "influxdb",
        "elasticsearch>=8.11,<9",
        "pymongo>=4,<5",
        "statsd",
        "requests",
    )
    _pytest(session, "testing", str(TESTING / "tests"))


nox.options.sessions.insert(0, "testing")


def _local_dists() -> list[str]:
    return [str(p) for p in sorted(PACKAGES.iterdir()) if (p / "pyproject.toml").exists()]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install("ruff==0.17.6")  # pinned: a new ruff may reformat or flag what passed
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on xprofiler.core."""
    session.install("mypy==2.4.1", "-e", f"{CORE}[test]", "types-requests")
    session.run(
        "mypy",
        "--strict",
        "--namespace-packages",
        "--explicit-package-bases",
        "-p",
        "xprofiler.core",
        env={"MYPYPATH": str(CORE / "src")},
    )


nox.options.sessions += ["lint", "typecheck"]


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every wheel and sdist into ./wheelhouse; install each extra from it, fresh.

    Also proves the third-party example driver (examples/) and the missing-client-library
    error. Our own names must come from the wheelhouse only: tools/wheels.py fails the session
    if pip's plan (--dry-run --report) or any install's --report takes one from elsewhere.
    """
    # pip >= 23.1 for `pip --python` and `--report`; packaging reads wheel metadata.
    session.install("pip>=23.1", "build", "hatchling", "packaging", "tomli; python_version<'3.11'")
    REPORTS.mkdir(parents=True, exist_ok=True)
    session.run("python", str(ROOT / "tools" / "lockstep.py"), "check")
    session.run(
        "python",
        str(ROOT / "tools" / "wheels.py"),
        f"--wheelhouse={ROOT / 'wheelhouse'}",
        f"--junitxml={REPORTS / 'wheels.xml'}",
        *session.posargs,
    )


nox.options.sessions.append("wheels")
