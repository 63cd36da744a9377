"""How big and how slow is the HTML report for huge traces?

For synthetic traces of 1k, 10k and 100k spans (xprofiler.core.reports.synthetic) this prints:
the time to build the report (the tree builder), to render the HTML page, the page's size (and
the native JSON's, for comparison), and what headless Chromium reports from inside the page:
JSON.parse of the data, the whole script (structure + first lazy render), and the time from
navigation start until the waterfall is ready. Figures are medians of --runs runs.

    python bench/bench_report_render.py [--spans 1000,10000,100000] [--runs 3]

Needs Debian's chromium (or $PROFILER_CHROMIUM); without it only the Python figures print.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from xprofiler.core.reports import to_html, to_json
from xprofiler.core.reports.synthetic import synthetic_points
from xprofiler.core.tree import build_report


def chromium() -> str | None:
    for c in (os.environ.get("PROFILER_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if c and os.path.exists(c):
            return c
    return None


def page_timings(binary: str, page: Path) -> tuple[float, dict[str, int]]:
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    try:
        t0 = time.perf_counter()
        out = (
            subprocess.run(
                [
                    binary,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1400,900",
                    f"--user-data-dir={profile}",
                    "--dump-dom",
                    page.as_uri(),
                ],
                capture_output=True,
                timeout=300,
                check=True,
            )
            .stdout[:2000]
            .decode("utf-8", "replace")
        )
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    attrs = dict(re.findall(r'data-([a-z-]+)-ms="(\d+)"', out))
    if not attrs:
        raise SystemExit(f"the page did not report its timings: {out[:300]!r}")
    return wall, {k: int(v) for k, v in attrs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spans", default="1000,10000,100000")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    binary = chromium()
    if binary is None:
        print("chromium not found: only the Python-side figures are measured")
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    print(
        f"{'spans':>7} {'build s':>8} {'html s':>7} {'html MB':>8} {'B/span':>7} "
        f"{'json MB':>8} {'parse ms':>9} {'script ms':>10} {'ready ms':>9} {'chromium s':>11}"
    )
    try:
        for n in (int(x) for x in args.spans.split(",")):
            points = synthetic_points(n)
            builds, renders, parse, script, ready, walls = [], [], [], [], [], []
            page = tmp / f"trace-{n}.html"
            for _ in range(args.runs):
                t0 = time.perf_counter()
                report = build_report("synthetic-trace", points)
                t1 = time.perf_counter()
                html = to_html(report)
                t2 = time.perf_counter()
                builds.append(t1 - t0)
                renders.append(t2 - t1)
                page.write_text(html, encoding="utf-8")
                if binary:
                    wall, t = page_timings(binary, page)
                    walls.append(wall)
                    parse.append(t["parse"])
                    script.append(t["script"])
                    ready.append(t["ready"])
            size = page.stat().st_size
            json_size = len(to_json(report, indent=None).encode())

            def med(xs: list[float]) -> str:
                return f"{statistics.median(xs):.0f}" if xs else "-"

            print(
                f"{n:>7} {statistics.median(builds):>8.2f} {statistics.median(renders):>7.2f} "
                f"{size / 1e6:>8.1f} {size / n:>7.0f} {json_size / 1e6:>8.1f} {med(parse):>9} "
                f"{med(script):>10} {med(ready):>9} "
                f"{(statistics.median(walls) if walls else float('nan')):>11.1f}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "parse: JSON.parse of the embedded data; script: parse + tree structure + first render;"
        "\nready: navigation start to waterfall ready (includes loading the file);"
        "\nchromium s: whole headless run incl. browser start-up and --dump-dom of the page."
    )


if __name__ == "__main__":
    main()
