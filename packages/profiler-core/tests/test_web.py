"""The web viewer served for real (stdlib WSGI server on 127.0.0.1) over a store filled by the
demo's two traced services and by hostile traced code; checked over HTTP with ``requests``.

Pages in a real browser are in test_browser.py.
"""

from __future__ import annotations

import contextvars
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import requests

from xprofiler import core as profiler
from xprofiler.core.builtin.sqlite import SQLiteDriver
from xprofiler.core.registry import load_driver
from xprofiler.core.tree import build_report
from xprofiler.core.uri import parse_url
from xprofiler.core.web import ViewerApp, make_app, make_server
from xprofiler.core.web.server import LOOPBACK_NAMES
from xprofiler.core.web.stats import MAX_WINDOW_SECONDS

EVIL = "<script>alert(1)</script>"
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options")


def record_hostile_trace(cs: str) -> str:
    """Real traced code with a script-like span name, an error and an unfinished span."""
    profiler.setup(cs, service="billing", project="shop", hmac_keys=["k"], flush_interval=0.05)
    try:
        prof = profiler.init("k")

        @profiler.trace(EVIL, hide_args=False, hide_result=False)
        def evil(arg: str) -> str:
            return "<i>" + arg

        @profiler.trace("charge")
        def charge() -> None:
            raise RuntimeError("card <declined>")

        with profiler.Trace("wsgi", info={"request": {"path": "/pay"}}):
            evil("</script><img src=x onerror=alert(2)>")
            try:
                charge()
            except RuntimeError:
                pass
            contextvars.copy_context().run(lambda: profiler.start("never-stopped"))
        profiler.clean()
        assert profiler.flush(10)
        return prof.get_base_id()
    finally:
        profiler.shutdown()


def run_demo(cs: str) -> str:
    """The demo: an api service calling an inventory service over HTTP; returns the trace id."""
    proc = subprocess.run(
        [sys.executable, "-m", "xprofiler.core.cli", "demo", "-c", cs],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"profiler trace show (\S+)", proc.stderr)
    assert m, proc.stderr
    return m.group(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('web')}/traces.sqlite3"


@pytest.fixture(scope="module")
def traces(store: str) -> dict[str, str]:
    demo = run_demo(store)
    hostile = record_hostile_trace(store)
    return {"demo": demo, "hostile": hostile}


@pytest.fixture(scope="module")
def server(store: str, traces: dict[str, str]) -> Iterator[str]:
    app = make_app(store, allowed_hosts=LOOPBACK_NAMES)
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        app.close()


def _get(url: str, **kw: Any) -> requests.Response:
    return requests.get(url, timeout=30, **kw)


def _error(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()["error"]
    assert body["status"] == status and "Traceback" not in resp.text
    return str(body["message"])


# -- JSON API -------------------------------------------------------------------------------------
def test_api_lists_traces_newest_first_with_summaries(server: str, traces: dict[str, str]) -> None:
    data = _get(f"{server}/api/traces").json()
    ids = [t["base_id"] for t in data["traces"]]
    assert ids[:2] == [traces["hostile"], traces["demo"]]
    demo = data["traces"][1]
    assert demo["services"] == ["api", "inventory"] and demo["error"] is True
    assert demo["span_count"] > 5 and demo["duration"] == demo["end"] - demo["start"]
    assert data["next_offset"] is None and data["limit"] == 50 and data["offset"] == 0


def test_api_filters_by_service_name_and_errors(server: str, traces: dict[str, str]) -> None:
    by_service = _get(f"{server}/api/traces", params={"service": "inventory"}).json()
    assert [t["base_id"] for t in by_service["traces"]] == [traces["demo"]]
    by_name = _get(f"{server}/api/traces", params={"name": EVIL}).json()
    assert [t["base_id"] for t in by_name["traces"]] == [traces["hostile"]]
    assert _get(f"{server}/api/traces", params={"name": "nothing"}).json()["traces"] == []
    errors = _get(f"{server}/api/traces", params={"errors": "1"}).json()
    assert {t["base_id"] for t in errors["traces"]} == set(traces.values())


def test_api_pages_with_limit_and_offset(server: str, traces: dict[str, str]) -> None:
    first = _get(f"{server}/api/traces", params={"limit": 1}).json()
    assert [t["base_id"] for t in first["traces"]] == [traces["hostile"]]
    assert first["next_offset"] == 1
    second = _get(f"{server}/api/traces", params={"limit": 1, "offset": 1}).json()
    assert [t["base_id"] for t in second["traces"]] == [traces["demo"]]
    assert second["next_offset"] is None


def test_api_trace_is_the_tree_builders_report(
    server: str, store: str, traces: dict[str, str]
) -> None:
    driver = load_driver(store)
    try:
        expected = build_report(traces["demo"], driver.get_report(traces["demo"])).to_dict()
    finally:
        driver.close()
    got = _get(f"{server}/api/traces/{traces['demo']}").json()
    assert got == expected
    osp = _get(f"{server}/api/traces/{traces['demo']}", params={"format": "osprofiler"}).json()
    assert osp["info"]["name"] == "total" and set(osp) == {"info", "children", "stats"}


def test_api_stats_counts_per_service_with_the_agreed_keys(
    server: str, traces: dict[str, str]
) -> None:
    data = _get(f"{server}/api/stats").json()
    assert {"traces", "errors", "spans", "services", "window_seconds"} <= set(data)
    assert data["window_seconds"] == 3600 and data["truncated"] is False
    assert data["traces"] == 2 and data["errors"] == 2
    listed = _get(f"{server}/api/traces").json()["traces"]
    assert data["spans"] == sum(t["span_count"] for t in listed)
    assert data["services"] == {
        "api": {"traces": 1, "errors": 1},
        "billing": {"traces": 1, "errors": 1},
        "inventory": {"traces": 1, "errors": 1},
    }
    assert "store" not in data  # the sqlite driver has no stats() of its own


def test_api_stats_window_is_parsed_and_capped(server: str) -> None:
    assert _get(f"{server}/api/stats", params={"window": "15m"}).json()["window_seconds"] == 900
    capped = _get(f"{server}/api/stats", params={"window": "52w"}).json()
    assert capped["window_seconds"] == MAX_WINDOW_SECONDS
    assert "duration like" in _error(_get(f"{server}/api/stats", params={"window": "soon"}), 400)
    assert "longer than zero" in _error(_get(f"{server}/api/stats", params={"window": "0"}), 400)
    huge = _get(f"{server}/api/stats", params={"window": "9" * 400})
    assert "too long" in _error(huge, 400)


def test_times_outside_what_stores_hold_are_clamped_not_errors(
    server: str, traces: dict[str, str]
) -> None:
    for since in ("0001-01-01T00:00:00+01:00", "1000000w"):
        resp = _get(f"{server}/api/traces", params={"since": since})
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["traces"]) == 2
    future = _get(f"{server}/api/traces", params={"since": "9999-12-31T23:59:59-14:00"})
    assert future.status_code == 200 and future.json()["traces"] == []


def test_api_stats_stops_at_the_trace_cap_and_says_so(store: str, traces: dict[str, str]) -> None:
    app = make_app(store, stats_max_traces=1)
    try:
        status, _, body = _call(app, "/api/stats")
    finally:
        app.close()
    import json

    data = json.loads(body)
    assert status.startswith("200") and data["traces"] == 1 and data["truncated"] is True


class _CountingSQLite(SQLiteDriver):
    """The real sqlite driver plus collector-style counters, as the messaging driver has."""

    fail = False

    def stats(self) -> dict[str, Any]:
        if self.fail:
            raise OSError("collector gone")
        return {"consumed": 7, "pending": 0}


def test_api_stats_includes_the_drivers_own_counters(store: str, traces: dict[str, str]) -> None:
    import json

    driver = _CountingSQLite(parse_url(store))
    app = ViewerApp(driver)
    try:
        assert json.loads(_call(app, "/api/stats")[2])["store"] == {"consumed": 7, "pending": 0}
        driver.fail = True
        status, _, body = _call(app, "/api/stats")
        assert status.startswith("200")
        assert json.loads(body)["store"] == {"error": "stats() failed: OSError"}
    finally:
        app.close()


# -- bad input ------------------------------------------------------------------------------------
def test_unknown_trace_is_404(server: str) -> None:
    assert "no trace does-not-exist" in _error(_get(f"{server}/api/traces/does-not-exist"), 404)


def test_malformed_trace_id_is_400(server: str) -> None:
    assert "malformed trace id" in _error(_get(f"{server}/api/traces/bad%20id%3Cx%3E"), 400)
    assert "malformed trace id" in _error(_get(f"{server}/api/traces/{'a' * 200}"), 400)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "many"}, "limit must be a whole number"),
        ({"limit": "0"}, "limit must be between 1 and 500"),
        ({"limit": "100000"}, "limit must be between 1 and 500"),
        ({"offset": "-1"}, "offset must be between"),
        ({"errors": "maybe"}, "errors must be 1 or 0"),
        ({"since": "yesterday-ish"}, "since must be an ISO time"),
        ({"min_duration": "nan"}, "min_duration must be between"),
        ({"service": "x" * 300}, "longer than 256"),
        ({"colour": "red"}, "unknown query parameter 'colour'"),
        ({"since": "9" * 400}, "since is too far back"),
    ],
)
def test_bad_query_parameters_are_400_with_a_reason(
    server: str, query: dict[str, str], message: str
) -> None:
    assert message in _error(_get(f"{server}/api/traces", params=query), 400)


def test_repeated_and_undecodable_parameters_are_400(server: str, traces: dict[str, str]) -> None:
    assert "given 2 times" in _error(_get(f"{server}/api/traces?limit=1&limit=2"), 400)
    assert "not valid UTF-8" in _error(_get(f"{server}/api/traces?service=%ff"), 400)
    bad_format = _get(f"{server}/api/traces/{traces['demo']}?format=xml")
    assert "format must be one of native, osprofiler" in _error(bad_format, 400)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_no_endpoint_writes(server: str, traces: dict[str, str], method: str) -> None:
    for path in ("/api/traces", f"/api/traces/{traces['demo']}", "/api/stats"):
        resp = requests.request(method, f"{server}{path}", timeout=30, data=b"{}")
        assert "read-only" in _error(resp, 405)
        assert resp.headers["Allow"] == "GET, HEAD"
        assert "Access-Control-Allow-Origin" not in resp.headers
    # ...and the store still holds both traces.
    assert len(_get(f"{server}/api/traces").json()["traces"]) == 2


def test_unknown_path_is_404_for_api_and_pages(server: str) -> None:
    _error(_get(f"{server}/api/nothing"), 404)
    page = _get(f"{server}/nothing/<script>")
    assert page.status_code == 404 and page.headers["Content-Type"].startswith("text/html")


def test_error_pages_escape_what_the_request_carried(server: str) -> None:
    resp = _get(f"{server}/?service=" + "%3Cscript%3Ealert(1)%3C/script%3E" + "&colour=%3Cb%3E")
    assert resp.status_code == 400 and "<b>" not in resp.text.split("</style>")[1]
    assert "&#x27;colour&#x27;" in resp.text


def test_head_answers_like_get_without_a_body(server: str) -> None:
    resp = requests.head(f"{server}/api/stats", timeout=30)
    assert resp.status_code == 200 and resp.content == b""
    assert int(resp.headers["Content-Length"]) > 0


def test_a_failing_store_is_503_without_a_stack_trace(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    app = make_app(f"sqlite:///{blocker}/traces.sqlite3")
    try:
        status, headers, body = _call(app, "/api/traces")
    finally:
        app.close()
    assert status.startswith("503")
    assert b"cannot list traces" in body and b"Traceback" not in body


# -- security -------------------------------------------------------------------------------------
def test_every_response_carries_security_headers_and_no_cors(
    server: str, traces: dict[str, str]
) -> None:
    origin = {"Origin": "https://evil.example"}
    for path in ("/", f"/traces/{traces['demo']}", "/api/traces", "/api/stats", "/api/x"):
        resp = _get(f"{server}{path}", headers=origin)
        for header in SECURITY_HEADERS:
            assert header in resp.headers, (path, header)
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert not any(h.lower().startswith("access-control-") for h in resp.headers)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_foreign_host_header_is_refused(server: str) -> None:
    """A DNS-rebinding page reaches the loopback port under its own host name: refuse it."""
    resp = _get(f"{server}/api/stats", headers={"Host": "evil.example"})
    assert "answers only to the host names" in _error(resp, 400)
    assert _get(f"{server}/api/stats", headers={"Host": "localhost:1234"}).status_code == 200


def test_trace_page_escapes_names_and_embeds_data_safely(
    server: str, traces: dict[str, str]
) -> None:
    page = _get(f"{server}/traces/{traces['hostile']}").text
    assert EVIL not in page and "<img" not in page
    assert page.count("<script") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the per-category table
    assert 'href="/api/traces/' in page  # the JSON links


def test_list_page_escapes_names_and_links_each_trace(server: str, traces: dict[str, str]) -> None:
    page = _get(f"{server}/").text
    assert EVIL not in page
    assert f'href="/traces/{traces["demo"]}"' in page
    assert f'href="/traces/{traces["hostile"]}"' in page
    only_inventory = _get(f"{server}/", params={"service": "inventory"}).text
    assert traces["demo"] in only_inventory and traces["hostile"] not in only_inventory


# -- deployment -----------------------------------------------------------------------------------
def _call(app: Any, path: str, **environ: str) -> tuple[str, list[tuple[str, str]], bytes]:
    env: dict[str, Any] = {"PATH_INFO": path, **environ}
    setup_testing_defaults(env)
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        got["status"], got["headers"] = status, headers

    body = b"".join(app(env, start_response))
    return got["status"], got["headers"], body


def test_mounted_under_a_prefix_links_keep_the_prefix(store: str, traces: dict[str, str]) -> None:
    app = make_app(store)
    try:
        _, _, body = _call(app, "/", SCRIPT_NAME="/profiler")
        assert f'href="/profiler/traces/{traces["demo"]}"'.encode() in body
        _, _, page = _call(app, f"/traces/{traces['demo']}", SCRIPT_NAME="/profiler")
        assert b'href="/profiler/">' in page
    finally:
        app.close()


def test_module_level_app_reads_the_connection_string_from_the_environment(
    store: str, traces: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from xprofiler.core import web

    monkeypatch.setenv("PROFILER_CONNECTION_STRING", store)
    fresh = type(web.app)()
    status, _, body = _call(fresh, "/api/traces")
    assert status.startswith("200") and traces["demo"].encode() in body


# -- the CLI --------------------------------------------------------------------------------------
def test_profiler_serve_binds_loopback_and_stops_on_ctrl_c(
    store: str, traces: dict[str, str]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xprofiler.core.cli", "serve", "-c", store, "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        assert "sqlite:" in line
        stats = requests.get(m.group(1) + "api/stats", timeout=30).json()
        assert stats["traces"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-c", "nosuchscheme://x"], 5, "no driver for scheme 'nosuchscheme'"),
        (["-c", "sqlite://host/x.db"], 2, "sqlite connection strings have no host"),
        (["--port", "70000"], 2, "--port must be between 0 and 65535"),
    ],
)
def test_profiler_serve_bad_arguments_exit_with_the_documented_codes(
    args: list[str], code: int, message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xprofiler.core.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr


def test_profiler_serve_port_in_use_is_a_clear_error(store: str, server: str) -> None:
    port = server.rsplit(":", 1)[1]
    proc = subprocess.run(
        [sys.executable, "-m", "xprofiler.core.cli", "serve", "-c", store, "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr


def test_sqlite_store_is_not_written_by_the_viewer(store: str, server: str) -> None:
    path = Path(parse_url(store).database or "")
    before = path.stat().st_mtime_ns
    for p in ("/", "/api/traces", "/api/stats"):
        _get(f"{server}{p}")
    time.sleep(0.05)
    assert path.stat().st_mtime_ns == before
