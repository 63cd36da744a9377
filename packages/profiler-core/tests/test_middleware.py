"""WSGI middleware behind a real wsgiref server on 127.0.0.1, called with real ``requests``;
ASGI middleware called with scope/receive/send coroutines (no ASGI server is installed)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests

from xprofiler.core import profiler
from xprofiler.core.builtin.memory import MemoryDriver
from xprofiler.core.middleware import TRACE_ID_HEADER, AsgiMiddleware, WsgiMiddleware
from xprofiler.core.requests_integration import TracedSession
from xprofiler.core.tracing import Trace
from xprofiler.core.tree import Report, build_report
from xprofiler.core.uri import parse_url

KEY = "shared-key"


def osprofiler_headers(base_id: str, parent_id: str, key: str = KEY) -> dict[str, str]:
    """Headers as an OSProfiler-traced caller sends them (built with the stdlib only)."""
    raw = base64.urlsafe_b64encode(
        json.dumps({"base_id": base_id, "parent_id": parent_id}).encode()
    )
    return {
        "X-Trace-Info": raw.decode(),
        "X-Trace-HMAC": hmac.new(key.encode(), raw, hashlib.sha1).hexdigest(),
    }


class Store:
    def __init__(self, url: str) -> None:
        self.driver = MemoryDriver(parse_url(url))

    def report(self, base_id: str) -> Report:
        assert profiler.flush(10)
        return build_report(base_id, self.driver.get_report(base_id))

    def trace_count(self) -> int:
        assert profiler.flush(10)
        return len(self.driver.list_traces())


@pytest.fixture
def store() -> Iterator[Store]:
    url = f"memory://{uuid.uuid4().hex}"
    profiler.clean()
    profiler.setup(url, service="svc", hmac_keys=[KEY], flush_interval=0.05)
    yield Store(url)
    profiler.clean()
    profiler.shutdown()


def shape(report: Report) -> list[Any]:
    def one(span: Any) -> list[Any]:
        return [span.name, [one(c) for c in span.children]]

    return [one(r) for r in report.roots]


# -- a real WSGI server ------------------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def seen_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Reports what the traced code saw: the trace (if any) and the server thread."""
    if environ.get("PATH_INFO") == "/fail":
        raise RuntimeError("handler failed")
    if environ.get("PATH_INFO") == "/self-init" and profiler.get() is None:
        profiler.init(KEY)  # an application that begins a trace on its own
    p = profiler.get()
    with Trace("inner"):
        pass
    body = {
        "traced": p is not None,
        "base_id": p.get_base_id() if p else None,
        "span": p.get_id() if p else None,
        "thread": threading.get_ident(),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    servers: list[tuple[WSGIServer, threading.Thread]] = []

    def start(app: Callable[..., Any]) -> str:
        server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
        t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        t.daemon = True
        t.start()
        servers.append((server, t))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, t in servers:
        server.shutdown()
        server.server_close()
        t.join(10)


def test_wsgi_signed_headers_continue_the_trace(store: Store, serve: Any) -> None:
    url = serve(WsgiMiddleware(seen_app, hmac_keys=[KEY]))
    base, parent = str(uuid.uuid4()), str(uuid.uuid4())
    r = requests.get(f"{url}/items?x=1", headers=osprofiler_headers(base, parent), timeout=10)
    assert r.status_code == 200
    seen = r.json()
    assert seen["traced"] and seen["base_id"] == base
    assert TRACE_ID_HEADER not in r.headers  # the caller has the trace id already
    report = store.report(base)
    assert shape(report) == [["wsgi", [["inner", []]]]]
    wsgi = report.roots[0]
    assert wsgi.parent_id == parent and wsgi.trace_id == seen["span"]
    assert wsgi.start_info["request"] == {
        "path": "/items",
        "query": "x=1",
        "method": "GET",
        "scheme": "http",
    }


def test_wsgi_key_rotation_and_comma_separated_keys(store: Store, serve: Any) -> None:
    url = serve(WsgiMiddleware(seen_app, hmac_keys=f"new-key, {KEY}"))
    base = str(uuid.uuid4())
    r = requests.get(url, headers=osprofiler_headers(base, base), timeout=10)
    assert r.json()["base_id"] == base


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Trace-Info": "eyJiYXNlX2lkIjogImIifQ=="},  # unsigned
        osprofiler_headers("b-1", "p-1", key="wrong-key"),  # forged
        {**osprofiler_headers("b-1", "p-1"), "X-Trace-HMAC": "0" * 40},
        {**osprofiler_headers("b-1", "p-1"), "X-Trace-Info": "eyJi"},  # truncated
    ],
    ids=["none", "unsigned", "forged", "bad-signature", "truncated"],
)
def test_wsgi_unsigned_or_forged_headers_start_no_trace(
    store: Store, serve: Any, headers: dict[str, str]
) -> None:
    url = serve(WsgiMiddleware(seen_app, hmac_keys=[KEY]))
    r = requests.get(url, headers=headers, timeout=10)
    assert r.status_code == 200
    assert r.json()["traced"] is False
    assert TRACE_ID_HEADER not in r.headers
    assert store.trace_count() == 0


def test_wsgi_start_new_traces_returns_the_trace_id(store: Store, serve: Any) -> None:
    url = serve(WsgiMiddleware(seen_app, start_new_traces=True, name="edge"))
    first = requests.get(url, timeout=10)
    second = requests.get(url, timeout=10)
    for r in (first, second):
        seen = r.json()
        assert seen["traced"] and r.headers[TRACE_ID_HEADER] == seen["base_id"]
    assert first.json()["base_id"] != second.json()["base_id"]
    report = store.report(first.headers[TRACE_ID_HEADER])
    assert shape(report) == [["edge", [["inner", []]]]]
    assert report.orphan_count == 0


def test_wsgi_context_is_cleaned_after_each_request(store: Store, serve: Any) -> None:
    url = serve(WsgiMiddleware(seen_app, hmac_keys=[KEY]))
    base = str(uuid.uuid4())
    traced = requests.get(url, headers=osprofiler_headers(base, base), timeout=10).json()
    failed = requests.get(f"{url}/fail", headers=osprofiler_headers(base, base), timeout=10)
    after = requests.get(url, timeout=10).json()
    assert traced["traced"] and failed.status_code == 500
    assert after["thread"] == traced["thread"]  # wsgiref serves on one thread
    assert after["traced"] is False
    report = store.report(base)
    assert [s.name for s in report.roots] == ["wsgi", "wsgi"]
    failing = report.roots[1]
    assert failing.error and failing.exception == {
        "type": "RuntimeError",
        "message": "handler failed",
    }


def test_wsgi_trace_begun_by_the_app_does_not_leak_into_the_next_request(
    store: Store, serve: Any
) -> None:
    url = serve(WsgiMiddleware(seen_app, hmac_keys=[KEY]))
    own = requests.get(f"{url}/self-init", timeout=10).json()
    after = requests.get(url, timeout=10).json()
    assert own["traced"] and after["thread"] == own["thread"]
    assert after["traced"] is False


def test_wsgi_disabled_passes_through(store: Store, serve: Any) -> None:
    url = serve(WsgiMiddleware(seen_app, hmac_keys=[KEY], enabled=False))
    r = requests.get(url, headers=osprofiler_headers("b", "p"), timeout=10)
    assert r.json()["traced"] is False and store.trace_count() == 0


def test_two_services_join_one_trace_over_http(store: Store, serve: Any) -> None:
    backend = serve(WsgiMiddleware(seen_app, hmac_keys=[KEY], name="backend"))

    def frontend_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with TracedSession() as s:
            body = s.get(f"{backend}/data", timeout=10).content
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    frontend = serve(WsgiMiddleware(frontend_app, hmac_keys=[KEY], start_new_traces=True))
    r = requests.get(frontend, timeout=10)
    base = r.headers[TRACE_ID_HEADER]
    assert r.json()["base_id"] == base
    report = store.report(base)
    assert shape(report) == [["wsgi", [["http", [["backend", [["inner", []]]]]]]]]
    assert report.orphan_count == 0 and report.unfinished_count == 0


# -- ASGI ------------------------------------------------------------------------------------


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope.get("path") == "/fail":
        raise ValueError("asgi handler failed")
    p = profiler.get()
    async with Trace("inner"):
        await asyncio.sleep(0)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x")]})
    await send(
        {
            "type": "http.response.body",
            "body": json.dumps({"base_id": p.get_base_id() if p else None}).encode(),
        }
    )


def http_scope(headers: dict[str, str] | None = None, path: str = "/a") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"q=2",
        "scheme": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }


async def call(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def body_of(sent: list[dict[str, Any]]) -> Any:
    return json.loads(sent[1]["body"])


def test_asgi_signed_headers_continue_the_trace(store: Store) -> None:
    app = AsgiMiddleware(asgi_app, hmac_keys=[KEY])
    base, parent = str(uuid.uuid4()), str(uuid.uuid4())
    sent = asyncio.run(call(app, http_scope(osprofiler_headers(base, parent))))
    assert body_of(sent) == {"base_id": base}
    assert sent[0]["headers"] == [(b"content-type", b"x")]  # no X-Trace-Id added
    report = store.report(base)
    assert shape(report) == [["asgi", [["inner", []]]]]
    assert report.roots[0].parent_id == parent
    assert report.roots[0].start_info["request"] == {
        "path": "/a",
        "query": "q=2",
        "method": "POST",
        "scheme": "http",
    }


@pytest.mark.parametrize(
    "headers",
    [{}, osprofiler_headers("b-1", "p-1", key="wrong-key"), {"X-Trace-Info": "eyJi"}],
    ids=["none", "forged", "unsigned"],
)
def test_asgi_unsigned_or_forged_headers_start_no_trace(
    store: Store, headers: dict[str, str]
) -> None:
    sent = asyncio.run(call(AsgiMiddleware(asgi_app, hmac_keys=[KEY]), http_scope(headers)))
    assert body_of(sent) == {"base_id": None}
    assert store.trace_count() == 0


def test_asgi_start_new_traces_adds_the_trace_id_header(store: Store) -> None:
    app = AsgiMiddleware(asgi_app, start_new_traces=True)
    sent = asyncio.run(call(app, http_scope()))
    base = body_of(sent)["base_id"]
    assert base is not None
    assert (b"x-trace-id", base.encode()) in sent[0]["headers"]
    assert (b"content-type", b"x") in sent[0]["headers"]
    assert shape(store.report(base)) == [["asgi", [["inner", []]]]]


def test_asgi_error_is_recorded_and_context_restored(store: Store) -> None:
    app = AsgiMiddleware(asgi_app, hmac_keys=[KEY])
    base = str(uuid.uuid4())

    async def main() -> None:
        with pytest.raises(ValueError, match="asgi handler failed"):
            await call(app, http_scope(osprofiler_headers(base, base), path="/fail"))
        assert profiler.get() is None

    asyncio.run(main())
    span = store.report(base).roots[0]
    assert span.error and span.exception["type"] == "ValueError"


def test_asgi_restores_an_outer_trace(store: Store) -> None:
    app = AsgiMiddleware(asgi_app, hmac_keys=[KEY])

    async def main() -> None:
        outer = profiler.init(KEY)
        await call(app, http_scope(osprofiler_headers("other-base", "p")))
        assert profiler.get().get_base_id() == outer.get_base_id()

    asyncio.run(main())


def test_asgi_lifespan_and_disabled_pass_through(store: Store) -> None:
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(profiler.get())

    asyncio.run(call(AsgiMiddleware(app, start_new_traces=True), {"type": "lifespan"}))
    asyncio.run(
        call(
            AsgiMiddleware(app, hmac_keys=[KEY], enabled=False),
            http_scope(osprofiler_headers("b", "p")),
        )
    )
    assert seen == [None, None]


def test_asgi_concurrent_requests_keep_their_own_traces(store: Store) -> None:
    app = AsgiMiddleware(asgi_app, hmac_keys=[KEY])
    bases = [str(uuid.uuid4()) for _ in range(50)]

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(call(app, http_scope(osprofiler_headers(b, b))) for b in bases)
        )

    results = asyncio.run(main())
    assert [body_of(sent)["base_id"] for sent in results] == bases
    for b in bases:
        assert shape(store.report(b)) == [["asgi", [["inner", []]]]]


def test_asgi_headers_that_are_not_bytes_are_skipped(store: Store) -> None:
    scope = http_scope()
    scope["headers"] = [("x-trace-info", "str, not bytes"), (None, None), (b"\xff", b"\xfe")]
    sent = asyncio.run(call(AsgiMiddleware(asgi_app, hmac_keys=[KEY]), scope))
    assert body_of(sent) == {"base_id": None}
