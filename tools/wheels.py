#!/usr/bin/env python3
"""Build the wheelhouse and prove that what a user installs from it works.

    python tools/wheels.py [--wheelhouse DIR] [--jobs N] [--junitxml FILE] [--keep]

``nox -s wheels`` runs it (after installing build, hatchling and packaging). In order:

1. Build the sdist of every distribution under packages/ and examples/, then its wheel from
   that sdist (so a broken sdist fails here), all into one wheelhouse (default ./wheelhouse,
   emptied first).
2. Inspect every wheel: no ``xprofiler/__init__.py`` or ``xprofiler/drivers/__init__.py`` (one
   of those hides every other distribution's part of the namespace), no top-level ``tests``
   package, a pure ``py3-none-any`` tag, ``Requires-Python``, and for our distributions the
   release version from tools/release.toml with exact pins between them and one extra per driver.
3. Ask pip for its plan (``pip install --dry-run --report``) for everything we ship, and fail if
   any of our own names would come from anywhere but the wheelhouse. Every real install below is
   checked the same way from its own ``--report``. The guard is proved to fire first, with a
   decoy ``profiler-core`` of a higher version in a second find-links directory; and the
   wheelhouse's ``constraints.txt`` (each of our names pinned to its wheel file, written by
   step 1) is proved to keep pip away from that decoy: the strict install for real machines.
4. In a fresh environment each: ``pip install --find-links WHEELHOUSE 'profiler-core[EXTRA]'``
   for every extra and for ``all``; check that the extra pulled exactly its driver, that core
   finds the driver by each of its schemes, and that ``profiler drivers`` lists them with their
   distribution and version. Then uninstall the driver's client library and check the error a
   user gets (exit 5, naming the library and the distribution to reinstall).
5. The third-party example: install ``profiler-driver-example`` from the wheelhouse, check
   ``profiler drivers`` and core's hint for a scheme that is not installed, then run the
   example's tests (core's conformance suite among them) from its sdist against the installed
   wheel. And ``statsd-bridge``: installs alone, pulls no part of the profiler.

Standard library plus ``packaging``; the environments are made with ``python -m venv
--without-pip`` and filled by this interpreter's pip (``pip --python``), which is much faster
than seeding pip into each.
"""

from __future__ import annotations

import argparse
import configparser
import itertools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import Parser
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lockstep  # noqa: E402 - a sibling script, not an installed module

ROOT = lockstep.ROOT
SOURCES = [*sorted(ROOT.glob("packages/*/pyproject.toml")), *ROOT.glob("examples/*/pyproject.toml")]
CORE = "profiler-core"
DRIVER_PREFIX = "profiler-driver-"
EXAMPLE = "profiler-driver-example"
BRIDGE = "statsd-bridge"
NAMESPACE_INITS = ("xprofiler/__init__.py", "xprofiler/drivers/__init__.py")
FORBIDDEN_TOP_LEVEL = ("tests", "test", "src")
NON_DRIVER_EXTRAS = {"all", "test", "tests", "dev", "docs", "requests"}
CONSTRAINTS = "constraints.txt"
EXIT_DRIVER = 5  # xprofiler.core.cli.EXIT["driver"]


class Failed(Exception):
    """A check failed; the message says which and what was seen."""


# -- what was built -------------------------------------------------------------------------------
@dataclass
class Built:
    name: str  # canonical
    source: Path
    wheel: Path
    sdist: Path
    metadata: dict[str, list[str]] = field(default_factory=dict)
    entry_points: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.metadata["Version"][0]

    @property
    def requires(self) -> list[Requirement]:
        return [Requirement(r) for r in self.metadata.get("Requires-Dist", [])]

    @property
    def extras(self) -> list[str]:
        return self.metadata.get("Provides-Extra", [])

    def schemes(self) -> dict[str, str]:
        return self.entry_points.get("xprofiler.drivers", {})


def read_wheel(wheel: Path) -> tuple[list[str], dict[str, list[str]], dict[str, dict[str, str]]]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        msg = Parser().parsestr(zf.read(f"{info}/METADATA").decode("utf-8"))
        wheel_msg = Parser().parsestr(zf.read(f"{info}/WHEEL").decode("utf-8"))
        eps: dict[str, dict[str, str]] = {}
        if f"{info}/entry_points.txt" in names:
            cp = configparser.ConfigParser(delimiters=("=",), interpolation=None)
            cp.optionxform = str  # type: ignore[assignment,method-assign]
            cp.read_string(zf.read(f"{info}/entry_points.txt").decode("utf-8"))
            eps = {s: dict(cp.items(s)) for s in cp.sections()}
    meta: dict[str, list[str]] = {}
    for key, value in msg.items():
        meta.setdefault(key, []).append(value)
    meta["Tag"] = wheel_msg.get_all("Tag") or []
    return names, meta, eps


def wheel_problems(wheel: Path, release: str, ours: set[str]) -> list[str]:
    """What is wrong with one built wheel (empty when it is fine)."""
    names, meta, _ = read_wheel(wheel)
    found = []
    for init in NAMESPACE_INITS:
        if init in names:
            found.append(f"{wheel.name} ships {init}: that hides the other distributions' parts")
    tops = {n.split("/")[0] for n in names}
    for top in FORBIDDEN_TOP_LEVEL:
        if top in tops or f"{top}.py" in tops:
            found.append(f"{wheel.name} ships a top-level {top!r} package")
    if meta.get("Tag") != ["py3-none-any"]:
        found.append(f"{wheel.name} is tagged {meta.get('Tag')}, not py3-none-any")
    if not meta.get("Requires-Python"):
        found.append(f"{wheel.name} has no Requires-Python (set requires-python)")
    name = canonicalize_name(meta["Name"][0])
    if name not in ours or name == EXAMPLE:
        return found
    if meta["Version"][0] != release:
        found.append(f"{wheel.name}: version {meta['Version'][0]}, release is {release}")
    for req in (Requirement(r) for r in meta.get("Requires-Dist", [])):
        dep = canonicalize_name(req.name)
        if dep in ours and (str(req.specifier) != f"=={release}" or req.url):
            found.append(f"{wheel.name} requires {req}; ours pin each other: {dep}=={release}")
    return found


def core_extra_problems(core: Built, built: dict[str, Built], release: str) -> list[str]:
    drivers = sorted(n for n in built if n.startswith(DRIVER_PREFIX) and n != EXAMPLE)
    found = []
    pulls: dict[str, set[str]] = {}
    for req in core.requires:
        for extra in core.extras:
            if req.marker is not None and req.marker.evaluate({"extra": extra}):
                pulls.setdefault(extra, set()).add(f"{canonicalize_name(req.name)}{req.specifier}")
    for driver in drivers:
        extra = driver[len(DRIVER_PREFIX) :]
        if pulls.get(extra) != {f"{driver}=={release}"}:
            found.append(
                f"core's extra {extra!r} pulls {pulls.get(extra)}, not {driver}=={release}"
            )
    want_all = {f"{d}=={release}" for d in drivers}
    if pulls.get("all") != want_all:
        found.append(
            f"core's extra 'all' pulls {sorted(pulls.get('all', []))}, not {sorted(want_all)}"
        )
    return found


# -- running things -------------------------------------------------------------------------------
_print_lock = threading.Lock()


def say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("VIRTUAL_ENV", None)
    return env


class Log:
    def __init__(self, title: str) -> None:
        self.title = title
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)

    def run(
        self,
        cmd: list[str],
        *,
        cwd: Path,
        timeout: float = 600,
        ok: Iterable[int] = (0,),
        show: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
        )
        shown = show or " ".join(_short(c) for c in cmd)
        self.note(f"$ {shown}  [{time.monotonic() - t0:.1f}s]")
        if proc.returncode not in ok:
            raise Failed(
                f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                f"\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc


def _short(arg: str) -> str:
    return arg.replace(str(ROOT) + "/", "").replace(tempfile.gettempdir() + "/", "$TMP/")


# -- 1. build -------------------------------------------------------------------------------------
def build_all(wheelhouse: Path, scratch: Path, jobs: int) -> dict[str, Built]:
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    wheelhouse.mkdir(parents=True)

    def build(pyproject: Path) -> Built:
        src = pyproject.parent
        out = scratch / "build" / src.name
        log = Log(f"build {src.relative_to(ROOT)}")
        # No flags: build the sdist, then the wheel from the unpacked sdist.
        log.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
            cwd=ROOT,
        )
        (wheel,) = out.glob("*.whl")
        (sdist,) = out.glob("*.tar.gz")
        _, meta, eps = read_wheel(wheel)
        shutil.move(str(wheel), wheelhouse / wheel.name)
        shutil.move(str(sdist), wheelhouse / sdist.name)
        name = canonicalize_name(meta["Name"][0])
        return Built(name, src, wheelhouse / wheel.name, wheelhouse / sdist.name, meta, eps)

    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(build, SOURCES))
    # The strict install: `pip install -c wheelhouse/constraints.txt ...` pins each of our
    # names to its file here, so nothing an index serves under those names can be chosen.
    lines = [f"{b.name} @ {b.wheel.as_uri()}" for b in sorted(results, key=lambda b: b.name)]
    (wheelhouse / CONSTRAINTS).write_text("\n".join(lines) + "\n", "utf-8")
    return {b.name: b for b in results}


# -- 3. where pip takes our names from ------------------------------------------------------------
def foreign_sources(report: dict, ours: set[str], wheelhouse: Path) -> list[str]:
    """Our distributions in a pip --report that pip would take from anywhere but the wheelhouse."""
    bad = []
    home = wheelhouse.resolve()
    for item in report.get("install", []):
        name = canonicalize_name(item["metadata"]["name"])
        if name not in ours:
            continue
        url = item.get("download_info", {}).get("url", "")
        parsed = urlparse(url)
        local = Path(unquote(parsed.path)).resolve() if parsed.scheme == "file" else None
        if local is None or local.parent != home:
            bad.append(f"{name} {item['metadata']['version']} from {url}")
    return bad


def pip(python: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--python", str(python), *args]


def install(log: Log, python: Path, wheelhouse: Path, ours: set[str], *reqs: str) -> dict:
    """The user's command, ``pip install --find-links WHEELHOUSE REQ...``, plus its report."""
    report_file = python.parent.parent / "pip-report.json"
    log.run(
        pip(
            python,
            "install",
            "--quiet",
            "--find-links",
            str(wheelhouse),
            "--report",
            str(report_file),
            *reqs,
        ),
        cwd=python.parent.parent,
    )
    report = json.loads(report_file.read_text("utf-8"))
    bad = foreign_sources(report, ours, wheelhouse)
    if bad:
        raise Failed(
            "our own distributions were installed from outside the wheelhouse: " + "; ".join(bad)
        )
    return report


_plans = itertools.count()


def plan(
    log: Log,
    scratch: Path,
    wheelhouse: Path,
    ours: set[str],
    reqs: list[str],
    extra_links: Iterable[Path] = (),
    extra_args: Iterable[str] = (),
) -> list[str]:
    """pip's dry-run plan for ``reqs``; returns our names it would take from elsewhere."""
    target = fresh_env(scratch, f"plan-{next(_plans)}")
    report_file = target.parent.parent / "plan.json"
    links = [a for d in extra_links for a in ("--find-links", str(d))]
    log.run(
        pip(
            target,
            "install",
            "--dry-run",
            "--quiet",
            "--find-links",
            str(wheelhouse),
            *links,
            *extra_args,
            "--report",
            str(report_file),
            *reqs,
        ),
        cwd=scratch,
    )
    return foreign_sources(json.loads(report_file.read_text("utf-8")), ours, wheelhouse)


def decoy_wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal wheel of ``name`` at ``version``, as a squatter on a public index could upload."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            f"{stem}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        zf.writestr(
            f"{stem}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: decoy\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{stem}.dist-info/RECORD", "")
    return path


def prove_guards(scratch: Path, wheelhouse: Path, ours: set[str], release: str) -> Log:
    log = Log("the checks can fail")
    # A wheel with a namespace __init__.py and a tests package is refused.
    bad = scratch / "guard" / "bad_wheel-1.0-py3-none-any.whl"
    bad.parent.mkdir(parents=True)
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("xprofiler/__init__.py", "")
        zf.writestr("xprofiler/drivers/__init__.py", "")
        zf.writestr("tests/__init__.py", "")
        zf.writestr(
            "bad_wheel-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: bad-wheel\nVersion: 1.0\n",
        )
        zf.writestr("bad_wheel-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
    problems = wheel_problems(bad, release, ours)
    for needle in (*NAMESPACE_INITS, "'tests'", "Requires-Python"):
        if not any(needle in p for p in problems):
            raise Failed(f"the wheel check missed {needle} in a wheel made to have it: {problems}")
    log.note(
        f"a wheel with namespace __init__.py files and tests/ is refused ({len(problems)} problems)"
    )
    # A higher profiler-core elsewhere (as an index could serve) is caught by the plan check.
    decoys = scratch / "guard" / "decoy-index"
    decoy_wheel(decoys, CORE, "999.0")
    caught = plan(log, scratch, wheelhouse, ours, [f"{CORE}"], [decoys])
    if not any(c.startswith(f"{CORE} 999.0") for c in caught):
        raise Failed(f"a decoy {CORE} 999.0 outside the wheelhouse was not caught: {caught}")
    log.note(f"a decoy {CORE} 999.0 outside the wheelhouse is caught: {caught[0]}")
    # The strict form, with the wheelhouse's constraints file, never takes the decoy.
    constraints = wheelhouse / CONSTRAINTS
    strict = plan(log, scratch, wheelhouse, ours, [CORE], [decoys], ["-c", str(constraints)])
    if strict:
        raise Failed(f"with -c {CONSTRAINTS}, pip still took {strict}")
    log.note(f"with -c {CONSTRAINTS} the decoy is ignored: {CORE} comes from the wheelhouse")
    return log


# -- 4./5. fresh environments ---------------------------------------------------------------------
def fresh_env(scratch: Path, name: str) -> Path:
    home = scratch / "envs" / name
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, env=clean_env()
    )
    return home / "bin" / "python"


PROBE = r"""
import json, re, sys, sysconfig
from importlib import metadata
import xprofiler, xprofiler.core
from xprofiler.core import registry
out = {"purelib": sysconfig.get_paths()["purelib"], "core_file": xprofiler.core.__file__,
       "namespace": list(xprofiler.__path__), "schemes": {}, "dists": {}}
for scheme in json.loads(sys.argv[1]):
    info = registry.available().get(scheme)
    row = {"distribution": getattr(info, "distribution", None),
           "version": getattr(info, "version", None)}
    try:
        cls = registry.get_driver_class(scheme)
        row["file"] = sys.modules[cls.__module__].__file__
        row["class"] = cls.__module__ + ":" + cls.__qualname__
    except Exception as exc:
        row["error"] = type(exc).__name__ + ": " + str(exc)
    out["schemes"][scheme] = row
for dist in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    direct = dist.read_text("direct_url.json")
    out["dists"][name] = {"version": dist.version,
                          "direct_url": json.loads(direct) if direct else None}
print(json.dumps(out))
"""


def probe(log: Log, python: Path, schemes: Iterable[str]) -> dict:
    proc = log.run(
        [str(python), "-c", PROBE, json.dumps(sorted(schemes))],
        cwd=python.parent,
        show=f"python -c <probe: load {', '.join(sorted(schemes))} through the registry>",
    )
    return json.loads(proc.stdout)


def check_installed(log: Log, python: Path, expect: dict[str, Built], others: set[str]) -> None:
    """``expect``: our distributions that must be installed (and no other of ``others``)."""
    schemes = {s: b for b in expect.values() for s in b.schemes()}
    seen = probe(log, python, schemes)
    purelib = Path(seen["purelib"]).resolve()
    installed_ours = {n for n in seen["dists"] if n in others}
    if installed_ours != set(expect):
        raise Failed(
            f"expected exactly {sorted(expect)} of ours installed, found {sorted(installed_ours)}"
        )
    for name, b in expect.items():
        d = seen["dists"][name]
        if d["version"] != b.version:
            raise Failed(f"{name} {d['version']} installed, the wheelhouse has {b.version}")
        if (d["direct_url"] or {}).get("dir_info", {}).get("editable"):
            raise Failed(f"{name} was installed editable")
    if Path(seen["core_file"]).resolve().parent.parent.parent != purelib:
        raise Failed(f"xprofiler.core imported from {seen['core_file']}, not from {purelib}")
    if [Path(p).resolve() for p in seen["namespace"]] != [purelib / "xprofiler"]:
        raise Failed(f"the xprofiler namespace spans {seen['namespace']}, expected only {purelib}")
    for scheme, b in schemes.items():
        row = seen["schemes"][scheme]
        if "error" in row:
            raise Failed(f"core cannot load the {scheme!r} driver of {b.name}: {row['error']}")
        if (row["distribution"], row["version"]) != (b.name, b.version):
            raise Failed(
                f"{scheme!r} is registered by {row['distribution']} {row['version']}, "
                f"expected {b.name} {b.version}"
            )
        if purelib not in Path(row["file"]).resolve().parents:
            raise Failed(f"{scheme!r} driver imported from {row['file']}, outside {purelib}")
        if row["class"] != b.schemes()[scheme]:
            raise Failed(
                f"{scheme!r} loaded {row['class']}, the entry point says {b.schemes()[scheme]}"
            )
    log.note(
        f"installed: {', '.join(f'{n} {b.version}' for n, b in sorted(expect.items()))}; "
        f"schemes found by core: {', '.join(sorted(schemes)) or '-'}"
    )
    # profiler drivers: each scheme with its distribution and version, status ok.
    cli = python.parent / "profiler"
    rows = json.loads(log.run([str(cli), "drivers", "--json"], cwd=python.parent).stdout)
    listed = {r["scheme"]: r for r in rows}
    for scheme, b in schemes.items():
        r = listed.get(scheme)
        if r is None or (r["distribution"], r["version"], r["status"]) != (b.name, b.version, "ok"):
            raise Failed(
                f"profiler drivers shows {r} for {scheme!r}, expected {b.name} {b.version} ok"
            )
    text = log.run([str(cli), "drivers"], cwd=python.parent).stdout
    log.note("profiler drivers:\n" + "\n".join("    " + line for line in text.splitlines()))


def client_library(driver: Built, ours: set[str]) -> str:
    """The first third-party requirement of a driver: the client library it cannot work without."""
    for req in driver.requires:
        if canonicalize_name(req.name) not in ours and (
            req.marker is None or req.marker.evaluate()
        ):
            return canonicalize_name(req.name)
    raise Failed(f"{driver.name} declares no client library")


def check_library_missing(log: Log, python: Path, driver: Built, ours: set[str]) -> None:
    library = client_library(driver, ours)
    scheme = min(driver.schemes(), key=len)
    log.run(pip(python, "uninstall", "--yes", "--quiet", library), cwd=python.parent)
    cli = python.parent / "profiler"
    proc = log.run(
        [str(cli), "trace", "list", "-c", f"{scheme}://u:s3cret@127.0.0.1:9/xp"],
        cwd=python.parent,
        ok=range(256),
    )
    err = proc.stderr
    log.note(f"with {library} uninstalled: exit {proc.returncode}: {err.strip()}")
    if proc.returncode != EXIT_DRIVER:
        raise Failed(
            f"exit {proc.returncode} with {library} missing, expected {EXIT_DRIVER}: {err}"
        )
    if "Traceback" in err or "s3cret" in err:
        raise Failed(f"the missing-library error shows a traceback or the password: {err}")
    for needle in (library, driver.name):
        if needle not in err:
            raise Failed(f"with {library} uninstalled, the error does not name {needle!r}: {err}")


def job_extra(log: Log, ctx: Context, extra: str) -> None:
    python = fresh_env(ctx.scratch, f"extra-{extra}")
    install(log, python, ctx.wheelhouse, ctx.ours, f"{CORE}[{extra}]")
    drivers = ctx.drivers() if extra == "all" else [ctx.built[DRIVER_PREFIX + extra]]
    expect = {CORE: ctx.built[CORE], **{d.name: d for d in drivers}}
    check_installed(log, python, expect, ctx.ours)
    version = log.run([str(python.parent / "profiler"), "--version"], cwd=python.parent).stdout
    if version.strip() != f"profiler {ctx.built[CORE].version}":
        raise Failed(f"profiler --version says {version.strip()!r}")
    if extra != "all":
        check_library_missing(log, python, drivers[0], ctx.ours)


def job_example(log: Log, ctx: Context) -> None:
    example = ctx.built[EXAMPLE]
    python = fresh_env(ctx.scratch, "example")
    install(log, python, ctx.wheelhouse, ctx.ours, f"{EXAMPLE}[test]")
    check_installed(log, python, {CORE: ctx.built[CORE], EXAMPLE: example}, ctx.ours)
    # Core alone: a scheme of ours that is not installed names the extra to install.
    proc = log.run(
        [str(python.parent / "profiler"), "trace", "list", "-c", "mongodb://127.0.0.1:9/x"],
        cwd=python.parent,
        ok=range(256),
    )
    if proc.returncode != EXIT_DRIVER or "pip install 'profiler-core[mongodb]'" not in proc.stderr:
        raise Failed(f"core without the mongodb extra: exit {proc.returncode}: {proc.stderr}")
    log.note(f"core alone, mongodb:// -> exit {proc.returncode}: {proc.stderr.strip()}")
    # The example's own tests, from its sdist, against the installed wheel (src/ removed).
    unpack = ctx.scratch / "example-sdist"
    with tarfile.open(example.sdist) as tf:
        if hasattr(tarfile, "data_filter"):  # 3.10.12+; our own sdist either way
            tf.extractall(unpack, filter="data")
        else:  # pragma: no cover - older 3.10
            tf.extractall(unpack)  # noqa: S202
    (root,) = unpack.iterdir()
    shutil.rmtree(root / "src")
    args = [
        str(python),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",
        "tests",
    ]
    if ctx.junitxml:
        args.insert(-1, f"--junitxml={ctx.junitxml}")
    proc = log.run(args, cwd=root)
    log.note("example tests: " + proc.stdout.strip().splitlines()[-1])


def job_bridge(log: Log, ctx: Context) -> None:
    bridge = ctx.built[BRIDGE]
    python = fresh_env(ctx.scratch, "bridge")
    install(log, python, ctx.wheelhouse, ctx.ours, BRIDGE)
    seen = probe_dists(log, python)
    ours_there = sorted(n for n in seen if n in ctx.ours)
    if ours_there != [BRIDGE]:
        raise Failed(
            f"installing {BRIDGE} brought {ours_there}; it must not depend on the profiler"
        )
    out = log.run([str(python.parent / BRIDGE), "--version"], cwd=python.parent).stdout.strip()
    if out != f"{BRIDGE} {bridge.version}":
        raise Failed(f"{BRIDGE} --version says {out!r}, expected {bridge.version}")
    log.note(f"{out}; no profiler distribution pulled in")


def probe_dists(log: Log, python: Path) -> set[str]:
    code = (
        "import json, re; from importlib import metadata; print(json.dumps(["
        "re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() for d in metadata.distributions()]))"
    )
    proc = log.run([str(python), "-c", code], cwd=python.parent, show="python -c <list dists>")
    return set(json.loads(proc.stdout))


@dataclass
class Context:
    wheelhouse: Path
    scratch: Path
    built: dict[str, Built]
    junitxml: str | None

    @property
    def ours(self) -> set[str]:
        return set(self.built)

    def drivers(self) -> list[Built]:
        return [
            b for n, b in sorted(self.built.items()) if n.startswith(DRIVER_PREFIX) and n != EXAMPLE
        ]


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--jobs", type=int, default=2, help="environments filled at once")
    parser.add_argument("--junitxml", help="where the example's pytest run writes its report")
    parser.add_argument("--keep", action="store_true", help="keep the scratch environments")
    args = parser.parse_args(argv)
    pip_version = Version(
        subprocess.run(
            [sys.executable, "-m", "pip", "--version"], check=True, capture_output=True, text=True
        ).stdout.split()[1]
    )
    if pip_version < Version("23.1"):
        raise SystemExit(f"pip {pip_version} is too old: --python and --report need pip >= 23.1")
    began = time.monotonic()
    release = lockstep.release_version()
    lock = lockstep.problems(release)
    if lock:
        raise SystemExit("versions are not in lockstep:\n  " + "\n  ".join(lock))
    wheelhouse = args.wheelhouse.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="xprofiler-wheels-"))
    failures: list[str] = []
    try:
        t0 = time.monotonic()
        built = build_all(wheelhouse, scratch, max(1, args.jobs))
        say(f"built {len(built)} distributions into {wheelhouse} in {time.monotonic() - t0:.1f}s:")
        for b in built.values():
            say(f"    {b.wheel.name}  {b.sdist.name}")
        problems = [p for b in built.values() for p in wheel_problems(b.wheel, release, set(built))]
        if CORE in built:
            problems += core_extra_problems(built[CORE], built, release)
        if problems:
            raise Failed("the built wheels are wrong:\n  " + "\n  ".join(problems))
        say(
            "wheels: no namespace __init__.py, no top-level tests, py3-none-any, "
            f"release {release} with exact pins and one extra per driver"
        )
        ctx = Context(wheelhouse, scratch, built, args.junitxml)
        emit(prove_guards(scratch, wheelhouse, ctx.ours, release), 0.0)
        extras = sorted(e for e in built[CORE].extras if e not in NON_DRIVER_EXTRAS) + ["all"]
        everything = [f"{CORE}[all]", BRIDGE, f"{EXAMPLE}[test]"]
        plan_log = Log("pip's plan for " + " ".join(everything))
        bad = plan(plan_log, scratch, wheelhouse, ctx.ours, everything)
        if bad:
            raise Failed("pip would take our own distributions from an index: " + "; ".join(bad))
        plan_log.note("every one of our distributions comes from the wheelhouse")
        emit(plan_log, 0.0)
        jobs: list[tuple[str, Callable[[Log], None]]] = [
            (
                f"pip install --find-links WHEELHOUSE '{CORE}[{e}]'",
                partial(job_extra, ctx=ctx, extra=e),
            )
            for e in extras
        ]
        jobs += [
            (
                f"pip install --find-links WHEELHOUSE '{EXAMPLE}[test]' (third-party driver)",
                partial(job_example, ctx=ctx),
            ),
            (f"pip install --find-links WHEELHOUSE {BRIDGE}", partial(job_bridge, ctx=ctx)),
        ]
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            for ok, log, secs in pool.map(timed, jobs):
                emit(log, secs, ok)
                if not ok:
                    failures.append(log.title)
    except Failed as exc:
        say(f"FAILED: {exc}")
        failures.append("build")
    finally:
        if args.keep:
            say(f"scratch environments kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    say(
        f"wheels: {'FAILED: ' + ', '.join(failures) if failures else 'ok'} "
        f"in {time.monotonic() - began:.0f}s"
    )
    return 1 if failures else 0


def timed(job: tuple[str, Callable[[Log], None]]) -> tuple[bool, Log, float]:
    title, fn = job
    log = Log(title)
    t0 = time.monotonic()
    try:
        fn(log)
        return True, log, time.monotonic() - t0
    except Failed as exc:
        log.note(f"FAILED: {exc}")
    except Exception:  # noqa: BLE001 - report it with the others, then fail the run
        log.note("FAILED: " + traceback.format_exc())
    return False, log, time.monotonic() - t0


def emit(log: Log, secs: float, ok: bool = True) -> None:
    head = f"--- {log.title}" + (f" ({secs:.1f}s)" if secs else "") + ("" if ok else " FAILED")
    say("\n".join([head, *("    " + line for line in log.lines)]))


if __name__ == "__main__":
    sys.exit(main())
