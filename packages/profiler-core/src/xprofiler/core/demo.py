"""``profiler demo``: two real services, one trace.

An "api" service (this process) handles a few requests; each calls an "inventory" worker
service (a subprocess with its own WSGI server on 127.0.0.1) over HTTP with signed trace
headers; the worker queries a real sqlite database. One item is missing, so one call fails and
the trace shows the error. Both processes store their points in the same store; the trace is
then read back and printed as a tree.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from . import profiler as _p
from .middleware import WsgiMiddleware
from .propagation import get_trace_id_headers
from .tracing import Trace, trace, trace_cls

__all__ = ["run_demo"]


# -- the worker service ---------------------------------------------------------------------------
@trace_cls("db", hide_args=False)
class Inventory:
    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.conn.executescript(
            "CREATE TABLE stock (item TEXT PRIMARY KEY, qty INTEGER, price REAL);"
            "INSERT INTO stock VALUES ('apple', 12, 0.5), ('pear', 3, 0.8), ('plum', 40, 0.2);"
        )

    def quantity(self, item: str) -> int:
        row = self.conn.execute("SELECT qty FROM stock WHERE item = ?", (item,)).fetchone()
        if row is None:
            raise KeyError(f"no such item: {item}")
        return int(row[0])

    def price(self, item: str) -> float:
        row = self.conn.execute("SELECT price FROM stock WHERE item = ?", (item,)).fetchone()
        return float(row[0])


def _worker_app(inventory: Inventory) -> Any:
    @trace("inventory.quote", hide_result=False)
    def quote(item: str, count: int) -> dict[str, Any]:
        available = inventory.quantity(item)
        return {"item": item, "available": available, "total": inventory.price(item) * count}

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/quit":
            start_response("200 OK", [("Content-Type", "text/plain")])
            _p.flush(5)
            os._exit(0)
        item = path.rsplit("/", 1)[-1]
        try:
            body = json.dumps(quote(item, 2)).encode()
            status = "200 OK"
        except KeyError as exc:
            body = json.dumps({"error": str(exc)}).encode()
            status = "404 Not Found"
        start_response(status, [("Content-Type", "application/json")])
        return [body]

    return app


def worker_main(argv: list[str]) -> int:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    ap = argparse.ArgumentParser(prog="python -m xprofiler.core.demo worker")
    ap.add_argument("--connection-string", required=True)
    args = ap.parse_args(argv)
    key = os.environ["XPROFILER_DEMO_KEY"]
    _p.setup(
        args.connection_string,
        service="inventory",
        project="demo",
        hmac_keys=[key],
        flush_interval=0.1,
    )

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    inventory = Inventory()
    app = WsgiMiddleware(_worker_app(inventory), hmac_keys=[key])
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()
    return 0


# -- the api service ------------------------------------------------------------------------------
def _get(url: str) -> tuple[int, dict[str, Any]]:
    with Trace("http", info={"request": {"method": "GET", "url": url}}):
        req = urllib.request.Request(url, headers=get_trace_id_headers())  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback URL
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@trace("api.checkout", hide_result=False)
def checkout(base: str, items: list[str]) -> dict[str, Any]:
    total = 0.0
    missing = []
    for item in items:
        status, body = _get(f"{base}/quote/{item}")
        if status == 200:
            total += body["total"]
        else:
            missing.append(item)
    with Trace("render", info={"template": "receipt.html"}):
        receipt = {"total": round(total, 2), "missing": missing}
    if missing:
        raise LookupError(f"items not in stock: {', '.join(missing)}")
    return receipt


def run_demo(connection_string: str, args: argparse.Namespace | None = None) -> int:
    from .cli import CLIError, _open_driver, load_report, render_tree

    key = secrets.token_hex(16)
    env = dict(os.environ, XPROFILER_DEMO_KEY=key)
    print(f"demo: storing traces in {_safe(connection_string)}", file=sys.stderr)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from xprofiler.core.demo import worker_main; "
            "sys.exit(worker_main(sys.argv[1:]))",
            "--connection-string",
            connection_string,
        ],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if not line.startswith("PORT "):
            raise CLIError("demo: the worker service did not start", 1)
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        print(f"demo: inventory service listening on {base}", file=sys.stderr)
        _p.setup(
            connection_string, service="api", project="demo", hmac_keys=[key], flush_interval=0.1
        )
        prof = _p.init(key)
        baskets = [["apple", "pear"], ["plum"], ["apple", "kiwi"]]
        n = getattr(args, "requests", 3) if args is not None else 3
        with Trace("wsgi", info={"request": {"path": "/checkout", "method": "POST"}}):
            for i in range(max(1, n)):
                try:
                    checkout(base, baskets[i % len(baskets)])
                except LookupError:
                    pass  # the api answers 409 to the client; the trace keeps the error
        _p.clean()
        _p.flush(10)
        try:
            urllib.request.urlopen(f"{base}/quit", timeout=5).close()  # noqa: S310
        except OSError:
            pass
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    base_id = prof.get_base_id()
    driver = _open_driver(connection_string)
    try:
        deadline = time.monotonic() + 10
        while True:
            report = load_report(driver, base_id)
            if report.unfinished_count == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        driver.close()
    render_tree(report, sys.stdout)
    print(
        f"\nsee it again with: {_profiler_command()} trace show {base_id}"
        + (
            ""
            if not args or not getattr(args, "connection_string", None)
            else f" --connection-string '{_safe(connection_string)}'"
        ),
        file=sys.stderr,
    )
    return 0


def _profiler_command() -> str:
    """``profiler`` if that is on PATH, else the path of the one beside this interpreter."""
    import shutil

    if shutil.which("profiler"):
        return "profiler"
    beside = os.path.join(os.path.dirname(sys.executable), "profiler")
    return beside if os.path.exists(beside) else "profiler"


def _safe(cs: str) -> str:
    from .uri import parse_url

    try:
        return str(parse_url(cs))
    except ValueError:
        return "<connection string>"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[2:]))
    print("usage: profiler demo", file=sys.stderr)
    sys.exit(2)
