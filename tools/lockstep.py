#!/usr/bin/env python3
"""One version for every distribution under packages/, kept from tools/release.toml.

    python tools/lockstep.py check        # exit 1 and list every place that drifted
    python tools/lockstep.py set 0.2.0    # rewrite all of them, then check
    python tools/lockstep.py version      # print the release version

What "in lockstep" means here:

* every ``packages/*/pyproject.toml`` has ``version = <release>`` (static, not dynamic);
* every requirement on one of our own distributions, in ``dependencies`` or in an extra, is
  exactly ``==<release>`` (so ``profiler-core[mongodb]`` pulls the driver built with it);
* core has one extra per ``profiler-driver-*`` distribution, named after it, and ``all``
  lists each of them;
* every ``__version__ = "..."`` in a package's ``src/`` says the release.

Standard library only (Python 3.11+, or 3.10 with ``tomli``), so it runs before anything is
installed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ROOT / "packages"
RELEASE = ROOT / "tools" / "release.toml"
CORE = "profiler-core"
DRIVER_PREFIX = "profiler-driver-"
NOT_DRIVER_EXTRAS = {"all", "test", "tests", "dev", "docs"}

_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$")
_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)(;.*)?$")
_DUNDER_RE = re.compile(r"""(?m)^(__version__\s*=\s*)(["'])([^"']*)(["'])""")


def canonical(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release_version() -> str:
    with open(RELEASE, "rb") as fh:
        version = tomllib.load(fh).get("version")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise SystemExit(f"{RELEASE}: 'version' must be a version string like \"0.2.0\"")
    return version


def distributions() -> dict[str, Path]:
    """Canonical distribution name -> its directory, for every packages/*/pyproject.toml."""
    out: dict[str, Path] = {}
    for pyproject in sorted(PACKAGES.glob("*/pyproject.toml")):
        with open(pyproject, "rb") as fh:
            name = tomllib.load(fh).get("project", {}).get("name")
        if not isinstance(name, str):
            raise SystemExit(f"{pyproject}: [project] name is missing")
        out[canonical(name)] = pyproject.parent
    return out


def parse_requirement(text: str) -> tuple[str, str]:
    """(canonical name, version specifier without spaces) of a PEP 508 string."""
    m = _REQ_RE.match(text)
    if not m or "@" in (m.group(3) or ""):
        return canonical(text.split(";")[0].strip()), "<unparsed>"
    return canonical(m.group(1)), re.sub(r"\s+", "", m.group(3))


def _dunder_files(pkg: Path) -> list[Path]:
    return sorted(
        p for p in (pkg / "src").rglob("__init__.py") if _DUNDER_RE.search(p.read_text("utf-8"))
    )


def problems(version: str) -> list[str]:
    """Every place where a distribution under packages/ disagrees with ``version``."""
    ours = distributions()
    found: list[str] = []
    for pkg in ours.values():
        pyproject = pkg / "pyproject.toml"
        rel = pyproject.relative_to(ROOT)
        with open(pyproject, "rb") as fh:
            project = tomllib.load(fh)["project"]
        if "version" in project.get("dynamic", []):
            found.append(f"{rel}: version is dynamic; lockstep needs a static version = ...")
        elif project.get("version") != version:
            found.append(f"{rel}: version is {project.get('version')!r}, release is {version!r}")
        groups = {"dependencies": project.get("dependencies", [])}
        for extra, reqs in project.get("optional-dependencies", {}).items():
            groups[f"extra {extra!r}"] = reqs
        for where, reqs in groups.items():
            for req in reqs:
                dep, spec = parse_requirement(req)
                if dep in ours and spec != f"=={version}":
                    found.append(
                        f"{rel}: {where} requires {req!r}; our own distributions pin each "
                        f"other exactly: {dep}=={version}"
                    )
        for init in _dunder_files(pkg):
            m = _DUNDER_RE.search(init.read_text("utf-8"))
            if m and m.group(3) != version:
                found.append(
                    f"{init.relative_to(ROOT)}: __version__ is {m.group(3)!r}, "
                    f"release is {version!r}"
                )
    found += _core_extra_problems(ours, version)
    return found


def _core_extra_problems(ours: dict[str, Path], version: str) -> list[str]:
    if CORE not in ours:
        return [f"packages/: no {CORE} distribution found"]
    with open(ours[CORE] / "pyproject.toml", "rb") as fh:
        extras: dict[str, list[str]] = tomllib.load(fh)["project"].get("optional-dependencies", {})
    rel = (ours[CORE] / "pyproject.toml").relative_to(ROOT)
    drivers = sorted(n for n in ours if n.startswith(DRIVER_PREFIX))
    found = []
    for driver in drivers:
        extra = driver[len(DRIVER_PREFIX) :]
        pinned = [parse_requirement(r) for r in extras.get(extra, [])]
        if (driver, f"=={version}") not in pinned:
            found.append(f'{rel}: needs the extra {extra} = ["{driver}=={version}"]')
    in_all = {parse_requirement(r)[0] for r in extras.get("all", [])}
    for driver in drivers:
        if driver not in in_all:
            found.append(f"{rel}: the extra 'all' does not list {driver}=={version}")
    for extra, reqs in extras.items():
        for req in reqs:
            dep = parse_requirement(req)[0]
            if dep.startswith(DRIVER_PREFIX) and dep not in ours:
                found.append(
                    f"{rel}: extra {extra!r} requires {dep}, which is not a directory under "
                    f"packages/ (it would have to come from an index)"
                )
    return found


def _set_project_version(text: str, version: str) -> str:
    """Replace ``version = "..."`` inside the [project] table only, keeping everything else."""
    out, table, done = [], None, False
    for line in text.splitlines(keepends=True):
        header = re.match(r"^\s*\[([^\[\]]+)\]\s*$", line)
        if header:
            table = header.group(1).strip()
        elif table == "project" and not done and re.match(r"^version\s*=", line):
            line = f'version = "{version}"\n'
            done = True
        out.append(line)
    return "".join(out)


def _set_pins(text: str, ours: set[str], version: str) -> str:
    def pin(m: re.Match[str]) -> str:
        if canonical(m.group(2)) not in ours:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{m.group(3) or ''}=={version}"

    # A quoted requirement on a distribution name, with its version specifier (any operator;
    # a bare name is left alone: `name = "profiler-core"` is not a requirement).
    pattern = re.compile(
        r"""(["'])([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*[<>=!~][^"';]*?(?=\s*[;"'])"""
    )
    return pattern.sub(pin, text)


def set_version(version: str) -> list[Path]:
    if not _VERSION_RE.match(version):
        raise SystemExit(f"not a release version: {version!r} (e.g. 0.2.0, 1.0.0rc1)")
    ours = distributions()
    changed = []
    release = RELEASE.read_text("utf-8")
    new = re.sub(r'(?m)^version\s*=\s*"[^"]*"', f'version = "{version}"', release, count=1)
    targets: list[tuple[Path, str]] = [(RELEASE, new)]
    for pkg in ours.values():
        pyproject = pkg / "pyproject.toml"
        text = pyproject.read_text("utf-8")
        targets.append(
            (pyproject, _set_pins(_set_project_version(text, version), set(ours), version))
        )
        for init in _dunder_files(pkg):
            text = init.read_text("utf-8")
            targets.append((init, _DUNDER_RE.sub(rf"\g<1>\g<2>{version}\g<4>", text, count=1)))
    for path, text in targets:
        if path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="fail if any distribution drifted from tools/release.toml")
    sub.add_parser("version", help="print the release version")
    setp = sub.add_parser("set", help="set the release version everywhere")
    setp.add_argument("version")
    args = parser.parse_args(argv)
    if args.cmd == "version":
        print(release_version())
        return 0
    if args.cmd == "set":
        for path in set_version(args.version):
            print(f"updated {path.relative_to(ROOT)}")
    version = release_version()
    found = problems(version)
    for line in found:
        print(f"lockstep: {line}", file=sys.stderr)
    if found:
        print(
            f"lockstep: {len(found)} place(s) disagree with {RELEASE.relative_to(ROOT)} "
            f"({version}); python tools/lockstep.py set {version} rewrites versions and pins "
            f"(a requirement on our names without a version needs editing by hand)",
            file=sys.stderr,
        )
        return 1
    print(f"lockstep: {len(distributions())} distributions at {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
