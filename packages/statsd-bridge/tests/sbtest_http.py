"""HTTP sources for the tests: real stdlib HTTP servers on 127.0.0.1, port 0.

(A module of its own, with a name no other package's tests use, because
pytest's importlib mode does not make conftest.py importable.)

``http_source`` serves whatever a test routes to it, including failures (status
codes, a hang, garbage, a huge or trickled body). ``MagnetoDB`` builds the
routes of MagnetoDB's monitoring API from a dict of projects and tables.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # before the status line
    hang: float = 0.0  # after the headers, before the body
    trickle: float = 0.0  # seconds between body bytes
    content_length: bool = True
    close: bool = False  # Content-Length *and* Connection: close (HTTP/1.0-style servers)

    @classmethod
    def json(cls, doc: Any, **kw: Any) -> Reply:
        return cls(
            body=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}, **kw
        )


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # The bridge hangs up on slow or huge replies on purpose; a handler thread
        # that finds the connection gone is expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


Route = Reply | Callable[["Request"], Reply]


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    started: float


class HttpSource:
    def __init__(self, port: int = 0) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        self.release = threading.Event()
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without this, Nagle's
                # algorithm and delayed ACKs add 40 ms to every keep-alive request.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                parts = urlsplit(self.path)
                req = Request(
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    started=time.monotonic(),
                )
                with source.lock:
                    source.requests.append(req)
                    route = source.routes.get(parts.path)
                source.arrived.set()
                reply = route(req) if callable(route) else route
                if reply is None:
                    reply = Reply(status=404, body=b'{"error": "not found"}')
                try:
                    self._write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _write(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if reply.content_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                    if reply.close:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.flush()
                if reply.hang:
                    source.release.wait(reply.hang)
                if reply.trickle:
                    for i in range(len(reply.body)):
                        self.wfile.write(reply.body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(reply.trickle)
                else:
                    self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def route(self, path: str, reply: Route) -> None:
        with self.lock:
            self.routes[path] = reply

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Table:
    size: Any = 0
    item_count: Any = 0
    status: str = "ACTIVE"


class MagnetoDB:
    """MagnetoDB's monitoring API, served from ``projects = {project: {table: Table}}``."""

    API = "/v1/monitoring"

    def __init__(self, http: HttpSource, projects: dict[str, dict[str, Table]]) -> None:
        self.http = http
        self.projects = projects
        self.install()

    def install(self) -> None:
        self.http.route(f"{self.API}/projects", self._listing)
        for project, tables in self.projects.items():
            p = quote(project, safe="")
            self.http.route(f"{self.API}/projects/{p}", self._project_reply(project))
            for table in tables:
                t = quote(table, safe="")
                self.http.route(
                    f"{self.API}/projects/{p}/tables/{t}", self._table_reply(project, table)
                )

    @staticmethod
    def usage(t: Table) -> dict[str, Any]:
        # MagnetoDB sends an empty usage_detailes for tables that are not ACTIVE.
        return {"size": t.size, "item_count": t.item_count} if t.status == "ACTIVE" else {}

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"tenant": p, "name": n, "status": t.status, "usage_detailes": self.usage(t)}
            for p, tables in self.projects.items()
            for n, t in tables.items()
        ]

    def _listing(self, req: Request) -> Reply:
        rows = self.rows()
        limit = int(req.query.get("limit", ["1000"])[0])
        lp = req.query.get("last_evaluated_project", [None])[0]
        lt = req.query.get("last_evaluated_table", [None])[0]
        if lp is not None:
            keys = [(r["tenant"], r["name"]) for r in rows]
            start = keys.index((lp, lt)) + 1 if (lp, lt) in keys else len(rows)
            rows = rows[start:]
        return Reply.json(rows[:limit])

    def _project_reply(self, project: str) -> Callable[[Request], Reply]:
        def reply(_req: Request) -> Reply:
            tables = self.projects.get(project, {})
            return Reply.json(
                [{"table_name": n, "usage_detailes": self.usage(t)} for n, t in tables.items()]
            )

        return reply

    def _table_reply(self, project: str, table: str) -> Callable[[Request], Reply]:
        def reply(_req: Request) -> Reply:
            t = self.projects[project][table]
            return Reply.json({"size": t.size, "item_count": t.item_count})

        return reply
