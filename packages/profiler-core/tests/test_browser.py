"""The HTML report and the viewer's pages in real headless Chromium, driven over the DevTools
protocol: the DOM is checked (rows, bars, details), clicks are real mouse events, and a span
named like a script must stay text.

Chromium: Debian's ``chromium`` package (``/usr/bin/chromium``; ``$PROFILER_CHROMIUM`` to use
another binary). With ``CI=true`` a missing browser fails these tests; otherwise they skip.

Screenshots for a person to look at::

    PROFILER_SCREENSHOT_DIR=/tmp/shots pytest -p realservers.plugin \
        packages/profiler-core/tests/test_browser.py -k screenshot
"""

from __future__ import annotations

import base64
import contextvars
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from xprofiler import core as profiler
from xprofiler.core.cli import main
from xprofiler.core.reports import to_html
from xprofiler.core.reports.synthetic import synthetic_points
from xprofiler.core.tree import build_report
from xprofiler.core.web import make_app, make_server
from xprofiler.core.web.server import LOOPBACK_NAMES

EVIL = "<script>alert(1)</script>"
EVIL_ARG = "</script><img src=x onerror=alert(2)>"
TIMEOUT = 60.0  # generous: the test machine is small and shared


# -- a minimal DevTools-protocol client (stdlib websocket) ---------------------------------------
class CDPError(RuntimeError):
    pass


class CDP:
    """One page target over a websocket: ``call(method, **params)`` and the events seen."""

    def __init__(self, ws_url: str) -> None:
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", ws_url)
        assert m, ws_url
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CDPError("DevTools closed the connection during the handshake")
            head += chunk
        header, self._buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in header.split(b"\r\n", 1)[0]:
            raise CDPError(f"websocket upgrade refused: {header[:200]!r}")
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise CDPError("DevTools connection closed")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _recv_message(self) -> dict[str, Any]:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else b""
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode == 0x9:  # ping
                self._send_frame(0xA, data)
                continue
            if opcode == 0x8:
                raise CDPError("DevTools closed the websocket")
            if opcode in (0x1, 0x0):
                parts.append(data)
                if b0 & 0x80:
                    return json.loads(b"".join(parts))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        msg_id = self._next_id
        self._send_frame(
            0x1, json.dumps({"id": msg_id, "method": method, "params": params}).encode()
        )
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = self._recv_message()
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            if "method" in msg:
                self.events.append(msg)
        raise CDPError(f"{method}: no answer within {TIMEOUT}s")

    def close(self) -> None:
        try:
            self._send_frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Page:
    """Helpers a test reads like a person's actions: open, wait, click, read."""

    def __init__(self, cdp: CDP) -> None:
        self.cdp = cdp
        for domain in ("Page", "Runtime", "Log"):
            cdp.call(f"{domain}.enable")
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            width=1400,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )

    def js(self, expression: str) -> Any:
        res = self.cdp.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in res:
            raise CDPError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait(self, expression: str, what: str) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def open(self, url: str, *, scripted: bool = True) -> None:
        self.cdp.events.clear()
        self.cdp.call("Page.navigate", url=url)
        self.wait(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            f"{url} to load",
        )
        if scripted:
            self.wait("document.documentElement.dataset.ready === '1'", "the waterfall")

    def click(self, selector: str) -> None:
        """A real left click (mouse events dispatched by the browser) on the element's centre."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        assert box, f"nothing matches {selector}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.cdp.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box["x"],
                y=box["y"],
                button="left" if kind != "mouseMoved" else "none",
                clickCount=1,
            )

    def key(self, key: str, code: int, text: str = "") -> None:
        """Press and release a key in the focused element (as a keyboard would)."""
        for kind in ("keyDown", "keyUp"):
            params: dict[str, Any] = {
                "type": kind,
                "key": key,
                "code": key,
                "windowsVirtualKeyCode": code,
            }
            if text and kind == "keyDown":
                params["text"] = text
            self.cdp.call("Input.dispatchKeyEvent", **params)

    def problems(self) -> list[str]:
        """Script errors, CSP violations, failed loads and dialogs since the last open()."""
        out = []
        for ev in self.cdp.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(str(params["entry"].get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(str(params.get("args")))
            elif method == "Page.javascriptDialogOpening":
                out.append("dialog: " + str(params.get("message")))
        return out

    def screenshot(self, path: Path) -> None:
        data = self.cdp.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


def _chromium_binary() -> str:
    candidates = [
        os.environ.get("PROFILER_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ]
    for c in candidates:
        if c and os.path.exists(c):
            return c
    message = "Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " - CI=true: the browser tests must run", pytrace=False)
    pytest.skip(message)
    raise AssertionError  # pragma: no cover


@pytest.fixture(scope="module")
def browser() -> Iterator[Page]:
    binary = _chromium_binary()
    profile = tempfile.mkdtemp(prefix="xprofiler-chromium-")
    proc = subprocess.Popen(
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
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1400,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cdp = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None:
                pytest.fail(f"chromium exited with {proc.returncode} before DevTools came up")
            if time.monotonic() > deadline:
                pytest.fail("chromium's DevTools port did not appear")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request("PUT", "/json/new?about:blank")
        target = json.loads(conn.getresponse().read())
        conn.close()
        cdp = CDP(target["webSocketDebuggerUrl"])
        yield Page(cdp)
    finally:
        if cdp is not None:
            cdp.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


# -- data -----------------------------------------------------------------------------------------
def record_trace(cs: str) -> str:
    """Real traced code: nesting, arguments, results, an error, an unfinished span, and a span
    named like a script."""
    profiler.setup(cs, service="api", project="shop", hmac_keys=["k"], flush_interval=0.05)
    try:
        prof = profiler.init("k")

        @profiler.trace(EVIL, hide_args=False, hide_result=False)
        def evil(arg: str, *, mode: str) -> str:
            with profiler.Trace("db", info={"db": {"statement": "SELECT 1"}}):
                time.sleep(0.002)
            return "<i>done</i>"

        @profiler.trace("charge", hide_args=False)
        def charge(amount: int) -> None:
            time.sleep(0.001)
            raise RuntimeError("card <declined>")

        with profiler.Trace("wsgi", info={"request": {"path": "/pay"}}):
            evil(EVIL_ARG, mode="fast")
            try:
                charge(42)
            except RuntimeError:
                pass
            contextvars.copy_context().run(lambda: profiler.start("never-stopped"))
            time.sleep(0.002)
        profiler.clean()
        assert profiler.flush(10)
        return prof.get_base_id()
    finally:
        profiler.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    tmp = tmp_path_factory.mktemp("browser")
    cs = f"sqlite:///{tmp}/traces.sqlite3"
    trace_id = record_trace(cs)
    return cs, trace_id, tmp


@pytest.fixture(scope="module")
def report_file(store: tuple[str, str, Path]) -> Path:
    cs, trace_id, tmp = store
    out = tmp / "trace.html"
    assert main(["trace", "show", trace_id, "-c", cs, "--html", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def viewer(store: tuple[str, str, Path]) -> Iterator[str]:
    cs, _, _ = store
    app = make_app(cs, allowed_hosts=LOOPBACK_NAMES)
    httpd = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        app.close()


ROWS = "Array.from(document.querySelectorAll('#xp-canvas .xp-row'))"


def _rows(page: Page) -> list[dict[str, Any]]:
    return list(
        page.js(
            f"{ROWS}.map(r => {{ const b = r.querySelector('.xp-bar').getBoundingClientRect();"
            " const t = r.querySelector('.xp-c-tl').getBoundingClientRect();"
            " return {name: r.querySelector('.xp-nm').textContent,"
            " where: r.querySelector('.xp-c-svc').textContent,"
            " dur: r.querySelector('.xp-c-dur').textContent,"
            " cls: r.className, bar: r.querySelector('.xp-bar').className,"
            " indent: parseFloat(getComputedStyle(r.querySelector('.xp-c-name')).paddingLeft),"
            " left: b.left - t.left, width: b.width, lane: t.width}; })"
        )
    )


# -- the HTML file --------------------------------------------------------------------------------
def test_report_file_renders_one_row_per_span_with_placed_bars(
    browser: Page, report_file: Path
) -> None:
    browser.open(report_file.as_uri())
    rows = _rows(browser)
    names = [r["name"] for r in rows]
    assert names == ["wsgi", EVIL, "db", "charge", "never-stopped"]
    by = {r["name"]: r for r in rows}
    assert all(r["where"].startswith("api@") for r in rows)
    # Indented by depth, bars inside the lane, placed by start and sized by duration.
    assert by["wsgi"]["indent"] < by[EVIL]["indent"] < by["db"]["indent"]
    for r in rows:
        assert r["width"] >= 1 and -0.5 <= r["left"] <= r["lane"] + 0.5, r
    assert by["wsgi"]["width"] > by["db"]["width"]
    assert by[EVIL]["left"] <= by["db"]["left"] < by["charge"]["left"]
    # Errors highlighted; the unfinished span is open-ended up to the end of the trace.
    assert "err" in by["charge"]["cls"].split() and "err" not in by["db"]["cls"].split()
    assert by["never-stopped"]["dur"] == "unfinished"
    assert "xp-open-end" in by["never-stopped"]["bar"]
    end = by["never-stopped"]["left"] + by["never-stopped"]["width"]
    assert abs(end - by["never-stopped"]["lane"]) < 3
    assert browser.problems() == []


def test_header_shows_totals_services_and_category_shares(browser: Page, report_file: Path) -> None:
    browser.open(report_file.as_uri())
    head = browser.js(
        "({count: document.getElementById('xp-count').textContent,"
        " total: document.getElementById('xp-total').textContent,"
        " services: Array.from(document.querySelectorAll('#xp-services li'), e => e.textContent),"
        " stats: Array.from(document.querySelectorAll('#xp-stats tbody tr'),"
        "   tr => Array.from(tr.children, c => c.textContent.trim()))})"
    )
    assert head["count"] == "5" and head["services"] == ["api"]
    assert re.fullmatch(r"[\d.]+ (ms|µs|s)", head["total"])
    stats = {row[0]: row for row in head["stats"]}
    assert set(stats) == {"wsgi", EVIL, "db", "charge", "never-stopped"}
    assert stats["db"][1] == "1" and stats["db"][4].endswith("%")


def test_clicking_a_row_opens_its_details(browser: Page, report_file: Path) -> None:
    browser.open(report_file.as_uri())
    assert browser.js("document.querySelector('#xp-details h2')") is None
    browser.click("#xp-canvas .xp-row[data-i='1'] .xp-c-dur")
    browser.wait("!!document.querySelector('#xp-details h2')", "the details panel")
    details = browser.js(
        "({title: document.querySelector('#xp-details h2').textContent,"
        " text: document.getElementById('xp-details').textContent,"
        " selected: document.querySelector('.xp-row.sel .xp-nm').textContent})"
    )
    assert details["title"] == EVIL and details["selected"] == EVIL
    assert "</script><img src=x onerror=alert(2)>" in details["text"]  # the argument, as text
    assert "mode" in details["text"] and "'<i>done</i>'" in details["text"]  # kwargs, result
    browser.click("#xp-canvas .xp-row.err .xp-nm")
    browser.wait(
        "!!document.querySelector('#xp-details .xp-exc')", "the exception in the details panel"
    )
    assert browser.js("document.querySelector('#xp-details .xp-exc').textContent") == (
        "RuntimeError: card <declined>"
    )
    assert browser.problems() == []


def test_script_named_span_stays_text(browser: Page, report_file: Path) -> None:
    browser.open(report_file.as_uri())
    browser.click("#xp-canvas .xp-row[data-i='1']")
    dom = browser.js(
        "({scripts: document.scripts.length, imgs: document.images.length,"
        " names: Array.from(document.querySelectorAll('.xp-nm'), e => e.textContent),"
        " title: (document.querySelector('#xp-details h2') || {}).textContent,"
        " alerted: typeof window.__alerted})"
    )
    assert dom["scripts"] == 2 and dom["imgs"] == 0  # only our data block and our code
    assert EVIL in dom["names"] and dom["title"] == EVIL
    assert not [e for e in browser.cdp.events if e.get("method") == "Page.javascriptDialogOpening"]


def test_collapsing_and_expanding_a_subtree(browser: Page, report_file: Path) -> None:
    browser.open(report_file.as_uri())
    browser.click("#xp-canvas .xp-row[data-i='0'] .xp-tw")
    browser.wait(f"{ROWS}.length === 1", "the tree to collapse")
    assert browser.js("document.querySelector('.xp-row .xp-badge').textContent") == "+4"
    browser.click("#xp-canvas .xp-row[data-i='0'] .xp-tw")
    browser.wait(f"{ROWS}.length === 5", "the tree to expand")


def test_keyboard_and_find_move_the_selection(browser: Page, report_file: Path) -> None:
    browser.open(report_file.as_uri())
    browser.click("#xp-canvas .xp-row[data-i='1'] .xp-c-svc")
    browser.key("ArrowDown", 40)
    browser.wait("document.querySelector('#xp-details h2').textContent === 'db'", "ArrowDown")
    browser.key("ArrowLeft", 37)  # a leaf: go to its parent
    browser.wait(
        f"document.querySelector('#xp-details h2').textContent === {json.dumps(EVIL)}",
        "ArrowLeft to the parent",
    )
    browser.click("#xp-find")
    browser.cdp.call("Input.insertText", text="never")
    browser.key("Enter", 13, "\r")
    browser.wait("document.querySelector('#xp-details h2').textContent === 'never-stopped'", "find")
    assert "unfinished" in browser.js("document.getElementById('xp-details').textContent")
    assert browser.problems() == []


# -- a huge trace ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def huge_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = build_report("synthetic-trace", synthetic_points(100_000))
    out = tmp_path_factory.mktemp("huge") / "huge.html"
    out.write_text(to_html(report), encoding="utf-8")
    return out


def test_100k_span_trace_renders_lazily_and_reaches_every_row(
    browser: Page, huge_file: Path
) -> None:
    browser.open(huge_file.as_uri())
    first = browser.js(f"{ROWS}.length")
    assert 0 < first < 300  # only the rows in view exist in the DOM
    assert browser.js("document.getElementById('xp-count').textContent") == "100000"
    # Deep subtrees start collapsed: the visible list is far shorter than the trace.
    height = browser.js("parseFloat(document.getElementById('xp-canvas').style.height)")
    assert height < 22 * 5_000
    browser.click("#xp-expand")
    browser.wait(
        "parseFloat(document.getElementById('xp-canvas').style.height) === 2200000",
        "all 100,000 rows to be listed",
    )
    browser.js("const v = document.getElementById('xp-viewport'); v.scrollTop = v.scrollHeight;")
    browser.wait(f"{ROWS}.some(r => r.dataset.i === '99999')", "the last row to render")
    assert browser.js(f"{ROWS}.length") < 300
    browser.click("#xp-next-error")
    browser.wait("!!document.querySelector('#xp-details .xp-exc')", "the next error's details")
    assert "TimeoutError" in browser.js("document.querySelector('#xp-details .xp-exc').textContent")
    assert browser.problems() == []


# -- the viewer -----------------------------------------------------------------------------------
def test_viewer_list_links_to_the_waterfall(
    browser: Page, viewer: str, store: tuple[str, str, Path]
) -> None:
    _, trace_id, _ = store
    browser.open(f"{viewer}/", scripted=False)
    rows = browser.js(
        "Array.from(document.querySelectorAll('#xp-traces tbody tr'),"
        " tr => Array.from(tr.children, c => c.textContent))"
    )
    assert len(rows) == 1 and rows[0][-1] == trace_id and rows[0][3] == "error"
    browser.click(f"#xp-traces a[href='/traces/{trace_id}']")
    browser.wait(f"location.pathname === '/traces/{trace_id}'", "the trace page")
    browser.wait("document.documentElement.dataset.ready === '1'", "the waterfall")
    assert [r["name"] for r in _rows(browser)] == ["wsgi", EVIL, "db", "charge", "never-stopped"]
    browser.click("#xp-canvas .xp-row[data-i='3']")
    browser.wait("!!document.querySelector('#xp-details h2')", "details")
    assert browser.js("document.querySelector('#xp-details h2').textContent") == "charge"
    assert browser.problems() == []


def test_viewer_filter_form_narrows_the_list(browser: Page, viewer: str) -> None:
    browser.open(f"{viewer}/", scripted=False)
    browser.js("document.querySelector('input[name=service]').value = 'nobody'")
    browser.click(".xp-filters button[type=submit]")
    browser.wait("location.search === '?service=nobody&name='", "the filtered list")
    browser.wait("!!document.getElementById('xp-empty')", "the empty result")
    assert browser.problems() == []


# -- screenshots for a developer -----------------------------------------------------------------
def test_screenshot(
    browser: Page, report_file: Path, huge_file: Path, viewer: str, tmp_path: Path
) -> None:
    """Screenshots of the report, the list and a huge trace: real PNGs every run; written to
    $PROFILER_SCREENSHOT_DIR (for a person to look at) when it is set, else to a temp dir."""
    target = os.environ.get("PROFILER_SCREENSHOT_DIR")
    out = Path(target) if target else tmp_path / "shots"
    out.mkdir(parents=True, exist_ok=True)
    shots: list[tuple[str, Callable[[], None]]] = [
        (
            "report.png",
            lambda: (
                browser.open(report_file.as_uri()),
                browser.click("#xp-canvas .xp-row.err .xp-nm"),
            ),
        ),
        ("list.png", lambda: browser.open(f"{viewer}/", scripted=False)),
        ("huge.png", lambda: browser.open(huge_file.as_uri())),
    ]
    for name, action in shots:
        action()
        time.sleep(0.2)
        browser.screenshot(out / name)
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert len(data) > 1000, name
    sys.stderr.write(f"screenshots written to {out}\n")
