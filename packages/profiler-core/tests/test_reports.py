"""Reports from real traced code: HTML page, DOT, native and OSProfiler JSON, and the CLI flags.

The browser-side behaviour of the HTML page (rows, bars, clicks) is in test_browser.py.
"""

from __future__ import annotations

import base64
import contextvars
import copy
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from xprofiler import core as profiler
from xprofiler.core.cli import EXIT, main
from xprofiler.core.registry import load_driver
from xprofiler.core.reports import dumps_json, to_dot, to_html, to_json, to_osprofiler
from xprofiler.core.reports.dot import dot_quote
from xprofiler.core.reports.html import F_ERROR, F_NO_STOP, F_ORPHAN, asset, page_data
from xprofiler.core.reports.synthetic import synthetic_points
from xprofiler.core.tree import Report, build_report

EVIL = "<script>alert(1)</script>"
EVIL_ARG = "</script><img src=x onerror=alert(2)>&amp;\u2028"
DOCS = Path(__file__).resolve().parents[3] / "docs"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def record_hostile_trace(cs: str) -> str:
    """Trace real code whose names, arguments, results and errors are hostile; return its id."""
    profiler.setup(cs, service="api", project="shop", hmac_keys=["k"], flush_interval=0.05)
    try:
        prof = profiler.init("k")

        @profiler.trace(EVIL, hide_args=False, hide_result=False)
        def evil(arg: str, *, flag: str) -> str:
            with profiler.Trace("db", info={"db": {"statement": "SELECT '</script>'\u2028"}}):
                pass
            return "<i>result</i> " + arg

        @profiler.trace("db-error", hide_args=False)
        def fail(item: str) -> None:
            raise ValueError(f'bad <b>{item}</b> "quoted"')

        def never_stopped() -> None:
            profiler.start("never-stopped", info={"why": "the process died"})

        with profiler.Trace("wsgi", info={"request": {"path": "/checkout?a=<x>"}}):
            evil(EVIL_ARG, flag="ünïcode \\N")
            try:
                fail("<kiwi>")
            except ValueError:
                pass
            # A span whose stop is never recorded (its own context, so the stack stays intact).
            contextvars.copy_context().run(never_stopped)
        profiler.clean()
        assert profiler.flush(10)
        return prof.get_base_id()
    finally:
        profiler.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('reports')}/traces.sqlite3"


@pytest.fixture(scope="module")
def trace_id(store: str) -> str:
    return record_hostile_trace(store)


@pytest.fixture(scope="module")
def report(store: str, trace_id: str) -> Report:
    driver = load_driver(store)
    try:
        return build_report(trace_id, driver.get_report(trace_id))
    finally:
        driver.close()


def _embedded(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="xp-data">(.*?)</script>', page, re.S)
    assert m, "the page has no data block"
    return json.loads(m.group(1))


# -- HTML -----------------------------------------------------------------------------------------
def test_recorded_trace_has_the_shapes_the_report_must_show(report: Report) -> None:
    names = {s.name for s in report.spans()}
    assert {"wsgi", EVIL, "db", "db-error", "never-stopped"} <= names
    assert report.error_count == 1 and report.unfinished_count == 1


def test_html_never_contains_traced_strings_unescaped(report: Report) -> None:
    page = to_html(report)
    assert EVIL not in page
    assert "<img" not in page
    assert "<kiwi>" not in page and "bad <b>" not in page
    # Only our own two script elements exist, and "</script" closes only them.
    assert page.count("<script") == 2
    assert page.count("</script") == 2
    # The server-rendered stats table shows the name escaped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_embedded_data_round_trips_every_hostile_string(report: Report) -> None:
    page = to_html(report)
    data = _embedded(page)
    assert data == json.loads(json.dumps(page_data(report)))
    strings = data["strings"]
    rows = {strings[r[1]]: r for r in data["spans"]}
    args = rows[EVIL][9]["function"]["args"]
    assert "</script><img src=x onerror=alert(2)>&amp;" in args
    assert rows["db"][9]["db"]["statement"] == "SELECT '</script>'\u2028"
    assert rows["db-error"][7] & F_ERROR
    assert "bad <b><kiwi></b>" in rows["db-error"][10]["message"]
    assert rows["never-stopped"][6] is None and rows["never-stopped"][7] & F_NO_STOP


def test_html_is_self_contained_and_its_policy_allows_only_its_own_code(report: Report) -> None:
    page = to_html(report)
    code = page.split('<script type="application/json"')[0] + page.split("</script>", 1)[1]
    for needle in ("http://", "https://", "<link", "@import", "url(", " src=", "//cdn"):
        assert needle not in code.replace('<link rel="icon" href="data:,">', ""), needle
    js, css = asset("report.js"), asset("report.css")
    for forbidden in (
        "fetch(",
        "XMLHttpRequest",
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "import(",
    ):
        assert forbidden not in js, forbidden
    assert f"<script>{js}</script>" in page and f"<style>{css}</style>" in page
    policy = html.unescape(
        re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    )

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert "default-src 'none'" in policy
    assert f"script-src 'sha256-{digest(js)}'" in policy
    assert f"style-src 'sha256-{digest(css)}'" in policy


def test_html_header_shows_duration_count_services_and_category_shares(report: Report) -> None:
    page = to_html(report)
    assert f'<b id="xp-count">{report.span_count}</b> spans' in page
    assert '<li class="xp-chip xp-s0">api</li>' in page
    table = page.split('id="xp-stats"')[1].split("</table>")[0]
    assert table.count("<tr>") == len(report.stats) + 1  # header row + one per category
    assert "share of trace" in table and "%" in table


def test_html_of_a_huge_trace_stays_proportionate() -> None:
    small = build_report("synthetic-trace", synthetic_points(2_000))
    big = build_report("synthetic-trace", synthetic_points(20_000))
    small_size, big_size = len(to_html(small).encode()), len(to_html(big).encode())
    fixed = len(to_html(build_report("synthetic-trace", synthetic_points(1))).encode())
    per_span = (big_size - fixed) / 20_000
    # Spans are compact JSON rows (no per-span markup): a couple of hundred bytes each,
    # growing linearly with the trace.
    assert per_span < 260, per_span
    assert 8 < (big_size - fixed) / (small_size - fixed) < 12


def test_a_very_deep_trace_renders_in_every_format() -> None:
    report = build_report("synthetic-trace", synthetic_points(5_000, fanout=1))
    assert max(s.depth for s in report.spans()) == 4_999
    rows = page_data(report)["spans"]
    assert [r[0] for r in rows[:3]] == [-1, 0, 1] and rows[-1][0] == 4_998
    assert to_dot(report).count(" -> ") == 5_000
    deepest = to_osprofiler(report)["children"][0]
    for _ in range(4_999):
        deepest = deepest["children"][0]
    assert deepest["children"] == []


def test_orphans_carry_their_missing_parent_id() -> None:
    points = synthetic_points(3)
    for p in points:
        if p["trace_id"].endswith("-2"):
            p["parent_id"] = "gone-parent"
    data = page_data(build_report("synthetic-trace", points))
    orphan = [r for r in data["spans"] if r[7] & F_ORPHAN]
    assert len(orphan) == 1 and orphan[0][11] == "gone-parent" and orphan[0][0] == -1


# -- JSON -----------------------------------------------------------------------------------------
def test_native_json_is_the_report_dict_and_handles_lone_surrogates(report: Report) -> None:
    assert json.loads(to_json(report)) == json.loads(json.dumps(report.to_dict()))
    text = dumps_json({"name": "bad \udcff byte", "nan": float("nan")})
    text.encode("utf-8")  # must not raise
    assert json.loads(text)["name"] == "bad \udcff byte"
    assert json.loads(text)["nan"] == "nan"


def _documented_fields(section: str) -> set[str]:
    doc = (DOCS / "report-schema.md").read_text(encoding="utf-8")
    part = doc.split(f"<!-- fields:{section} -->")[1].split("<!-- /fields -->")[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", part, re.M))


def test_report_schema_doc_lists_exactly_the_fields_of_the_json(report: Report) -> None:
    data = report.to_dict()
    assert _documented_fields("report") == set(data)
    assert _documented_fields("span") == set(data["children"][0])
    assert _documented_fields("stats") == set(next(iter(data["stats"].values())))


# -- OSProfiler -----------------------------------------------------------------------------------
def _walk(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out, stack = [], list(nodes)
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(n["children"])
    return out


def test_osprofiler_shape_keys_units_and_stats(report: Report) -> None:
    data = json.loads(to_json(report, "osprofiler"))
    assert set(data) == {"info", "children", "stats"}
    assert data["info"]["name"] == "total" and data["info"]["started"] == 0
    assert data["info"]["finished"] == (report.end // 1000 - report.start // 1000) // 1000
    nodes = _walk(data["children"])
    assert len(nodes) == report.span_count
    by_name = {n["info"]["name"]: n for n in nodes}
    for node in nodes:
        assert set(node) == {"info", "trace_id", "parent_id", "children"}
        info = node["info"]
        assert {"name", "project", "service", "host", "started", "finished"} <= set(info)
        assert isinstance(info["started"], int) and info["finished"] >= info["started"]
        start = info[f"meta.raw_payload.{info['name']}-start"]
        assert start["name"] == f"{info['name']}-start"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", start["timestamp"])
        assert start["info"]["host"] == info["host"]
    assert by_name["db-error"]["info"]["exception"] == "ValueError"
    assert by_name["db"]["info"]["exception"] == "None"
    open_node = by_name["never-stopped"]["info"]
    assert "exception" not in open_node and open_node["finished"] == open_node["started"]
    assert "meta.raw_payload.never-stopped-stop" not in open_node
    # Names with "-" stay whole (OSProfiler itself would cut them at the first "-").
    assert "db-error" in data["stats"]
    for name, st in data["stats"].items():
        mine = [n for n in nodes if n["info"]["name"] == name]
        assert st["count"] == len(mine)
        assert st["duration"] == sum(n["info"]["finished"] - n["info"]["started"] for n in mine)


def test_osprofiler_output_matches_osprofilers_own_report_builder() -> None:
    """Feed the same notifications to OSProfiler's driver base class and compare reports."""
    try:
        from osprofiler.drivers import base as osp_base
    except ImportError:
        if _in_ci():
            pytest.fail("osprofiler is not installed (it is in profiler-core's test extra)")
        pytest.skip("osprofiler is not installed (pip install osprofiler to compare with it)")
    points = synthetic_points(300, base_id="cmp")
    for p in points:  # OSProfiler cuts names at "-": use names without one for this check
        p["name"] = p["name"].replace("-", "_")
    ours = json.loads(dumps_json(to_osprofiler(build_report("cmp", points))))

    payloads = {}
    for node in _walk(ours["children"]):
        for key, value in node["info"].items():
            if key.startswith("meta.raw_payload."):
                payloads[(value["trace_id"], value["name"])] = value
    theirs_driver = osp_base.Driver("cmp://")
    for p in sorted(points, key=lambda p: p["timestamp"]):
        raw = payloads[(p["trace_id"], f"{p['name']}-{p['event']}")]
        theirs_driver._append_results(
            p["trace_id"],
            p["parent_id"],
            raw["name"],
            p["project"],
            p["service"],
            p["host"],
            raw["timestamp"],
            raw_payload=raw,
        )
    theirs = json.loads(json.dumps(theirs_driver._parse_results()))
    assert ours == theirs


# -- DOT ------------------------------------------------------------------------------------------
def _dot_binary() -> str:
    found = shutil.which("dot")
    if found:
        return found
    if _in_ci():
        pytest.fail("Graphviz 'dot' is missing: apt-get install graphviz (CI must check DOT)")
    pytest.skip("Graphviz 'dot' is not installed (apt-get install graphviz)")
    raise AssertionError  # pragma: no cover


def test_dot_quote_escapes_what_would_break_or_inject() -> None:
    assert dot_quote('a"b') == '"a\\"b"'
    assert dot_quote("back\\slash \\N") == '"back\\\\slash \\\\N"'
    assert dot_quote("two\nlines") == '"two\\nlines"'
    assert dot_quote("nul\x00") == '"nul\\\\x00"'


def test_dot_renders_with_graphviz_and_keeps_names_as_text(report: Report, tmp_path: Path) -> None:
    dot = _dot_binary()
    text = to_dot(report)
    assert text.count(" -> ") == report.span_count  # one edge into every span
    svg = subprocess.run(
        [dot, "-Tsvg"], input=text.encode(), capture_output=True, timeout=60, check=True
    ).stdout.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "<script" not in svg
    assert "ValueError: bad &lt;b&gt;&lt;kiwi&gt;&lt;/b&gt; &quot;quoted&quot;" in svg
    # Graphviz must read a label that ends in a backslash or holds \N as plain text.
    report = copy.deepcopy(report)
    tricky = report.roots[0]
    tricky.name = 'end\\ "q" \\N \\G'
    svg2 = subprocess.run(
        [dot, "-Tsvg"], input=to_dot(report).encode(), capture_output=True, timeout=60, check=True
    ).stdout.decode()
    assert "end\\ &quot;q&quot; \\N \\G" in svg2


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_writes_html_dot_and_json_formats(
    store: str, trace_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.html"
    assert main(["trace", "show", trace_id, "-c", store, "--html", "--out", str(out)]) == 0
    assert _embedded(out.read_text(encoding="utf-8"))["base_id"] == trace_id
    capsys.readouterr()
    assert main(["trace", "show", trace_id, "-c", store, "--dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph trace {")
    assert main(["trace", "show", trace_id, "-c", store, "--json", "--format", "osprofiler"]) == 0
    assert json.loads(capsys.readouterr().out)["info"]["name"] == "total"
    assert main(["trace", "show", trace_id, "-c", store, "--json", "--format", "native"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == 1


def test_cli_format_without_json_is_a_usage_error(
    store: str, trace_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["trace", "show", trace_id, "-c", store, "--html", "--format", "osprofiler"])
    assert code == EXIT["usage"]
    assert "--format applies to --json" in capsys.readouterr().err


def test_cli_html_for_unknown_trace_is_not_found_and_writes_nothing(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none.html"
    code = main(["trace", "show", "no-such-trace", "-c", store, "--html", "-o", str(out)])
    assert code == EXIT["not_found"] and not out.exists()
    assert "no trace no-such-trace" in capsys.readouterr().err


def test_cli_unwritable_out_file_is_a_clear_error(
    store: str, trace_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing-dir" / "t.html"
    code = main(["trace", "show", trace_id, "-c", store, "--html", "-o", str(out)])
    assert code == EXIT["error"]
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--min-duration", "nan"], "--min-duration must be between"),
        (["--min-duration", "-1"], "--min-duration must be between"),
        (["--limit", "10000000000000000000000"], "--limit is at most"),
        (["--since", "9" * 400], "bad time"),
    ],
)
def test_cli_list_bounds_are_usage_errors_not_store_failures(
    store: str, trace_id: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trace", "list", "-c", store, *args]) == EXIT["usage"]
    assert message in capsys.readouterr().err


def test_cli_list_times_beyond_the_store_range_are_clamped(
    store: str, trace_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trace", "list", "-c", store, "--since", "0001-01-01T00:00:00+01:00"]) == 0
    assert trace_id in capsys.readouterr().out
    assert main(["trace", "list", "-c", store, "--since", "9999-12-31T23:59:59-14:00"]) == 0
    assert "no traces found" in capsys.readouterr().out
