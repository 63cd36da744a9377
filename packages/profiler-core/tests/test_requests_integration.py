"""Outgoing HTTP with requests: each call is a span and carries signed trace headers, checked
against a local http.server that records what it received."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from xprofiler.core import profiler
from xprofiler.core.builtin.memory import MemoryDriver
from xprofiler.core.requests_integration import (
    TracedSession,
    _clean_url,
    patch_requests,
    unpatch_requests,
)
from xprofiler.core.tree import Report, build_report
from xprofiler.core.uri import parse_url

KEY = "req-key"
PASSWORD = "pa55-w0rd-xyz"


class Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_GET(self) -> None:
        self.received.append({"path": self.path, "headers": dict(self.headers)})
        status = 404 if self.path.startswith("/missing") else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (Recorder,), {"received": received})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"127.0.0.1:{httpd.server_port}", received
    httpd.shutdown()
    httpd.server_close()
    t.join(10)


class Store:
    def __init__(self, url: str) -> None:
        self.driver = MemoryDriver(parse_url(url))

    def report(self, base_id: str) -> Report:
        assert profiler.flush(10)
        return build_report(base_id, self.driver.get_report(base_id))


@pytest.fixture
def store() -> Iterator[Store]:
    url = f"memory://{uuid.uuid4().hex}"
    profiler.clean()
    profiler.setup(url, service="svc", hmac_keys=[KEY], flush_interval=0.05)
    yield Store(url)
    profiler.clean()
    profiler.shutdown()


def verify(headers: dict[str, str]) -> dict[str, Any]:
    """Check a received header pair the way an OSProfiler receiver would (stdlib only)."""
    info = headers["X-Trace-Info"]
    expected = hmac.new(KEY.encode(), info.encode(), hashlib.sha1).hexdigest()
    assert hmac.compare_digest(expected, headers["X-Trace-HMAC"])
    return json.loads(base64.urlsafe_b64decode(info))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_traced_call_sends_signed_headers_and_records_a_span(store: Store, server: Any) -> None:
    hostport, received = server
    base = profiler.init(KEY).get_base_id()
    with TracedSession() as s:
        r = s.get(f"http://user:{PASSWORD}@{hostport}/api/items?token=abc123", timeout=10)
    assert r.status_code == 200
    (req,) = received
    payload = verify(req["headers"])
    report = store.report(base)
    (span,) = report.roots
    assert span.name == "http" and span.finished and not span.error
    assert payload == {"base_id": base, "parent_id": span.trace_id}  # the callee nests under it
    assert span.start_info == {"request": {"method": "GET", "url": f"http://{hostport}/api/items"}}
    assert span.stop_info == {"response": {"status_code": 200}}
    stored = json.dumps(store.driver.get_report(base))
    assert PASSWORD not in stored and "abc123" not in stored and "user" not in stored


def test_user_headers_are_kept(store: Store, server: Any) -> None:
    hostport, received = server
    profiler.init(KEY)
    with TracedSession() as s:
        s.get(f"http://{hostport}/h", headers={"X-Mine": "1"}, timeout=10)
    assert received[0]["headers"]["X-Mine"] == "1" and "X-Trace-Info" in received[0]["headers"]


def test_http_error_status_is_recorded(store: Store, server: Any) -> None:
    hostport, _ = server
    base = profiler.init(KEY).get_base_id()
    with TracedSession() as s:
        assert s.get(f"http://{hostport}/missing", timeout=10).status_code == 404
    assert store.report(base).roots[0].stop_info == {"response": {"status_code": 404}}


def test_positional_arguments_work_like_requests(store: Store, server: Any) -> None:
    hostport, received = server
    profiler.init(KEY)
    with TracedSession() as s:
        s.request("GET", f"http://{hostport}/p", {"q": "1"}, None, {"X-Pos": "y"})
    assert received[0]["path"] == "/p?q=1"
    assert received[0]["headers"]["X-Pos"] == "y" and "X-Trace-HMAC" in received[0]["headers"]


def test_untraced_calls_send_no_headers_and_record_nothing(store: Store, server: Any) -> None:
    hostport, received = server
    with TracedSession() as s:
        s.get(f"http://{hostport}/u", timeout=10)
    assert "X-Trace-Info" not in received[0]["headers"]
    assert profiler.flush(10) and store.driver.list_traces() == []


def test_trace_without_key_records_but_sends_no_headers(store: Store, server: Any) -> None:
    hostport, received = server
    base = profiler.init(None).get_base_id()
    with TracedSession() as s:
        s.get(f"http://{hostport}/nokey", timeout=10)
    assert "X-Trace-Info" not in received[0]["headers"]
    assert [r.name for r in store.report(base).roots] == ["http"]


def test_connection_error_is_recorded_and_reraised(store: Store) -> None:
    base = profiler.init(KEY).get_base_id()
    port = closed_port()
    with TracedSession() as s, pytest.raises(requests.ConnectionError) as info:
        s.get(f"http://admin:{PASSWORD}@127.0.0.1:{port}/x?secret=1", timeout=5)
    span = store.report(base).roots[0]
    assert span.error and span.exception["type"] == "ConnectionError"
    stored = json.dumps(store.driver.get_report(base))
    assert PASSWORD not in stored and "secret=1" not in stored
    assert "Connection refused" in span.exception["message"]
    assert isinstance(info.value, requests.ConnectionError)


def test_a_token_given_as_params_is_not_recorded_when_the_server_is_down(store: Store) -> None:
    """requests builds the query from params= and quotes it in the ConnectionError."""
    base = profiler.init(KEY).get_base_id()
    port = closed_port()
    with TracedSession() as s, pytest.raises(requests.ConnectionError) as info:
        s.get(f"http://127.0.0.1:{port}/x?a=1", params={"token": "T0KEN/+x"}, timeout=5)
    assert "T0KEN" in str(info.value)  # requests quotes the query it built...
    span = store.report(base).roots[0]
    assert span.error and "Connection refused" in span.exception["message"]
    stored = json.dumps(store.driver.get_report(base))
    assert "T0KEN" not in stored  # ...the trace does not


def test_a_base_id_that_is_not_a_str_never_breaks_the_call(store: Store, server: Any) -> None:
    """init() given a UUID object: the outgoing call still works and carries the headers."""
    hostport, received = server
    base = uuid.uuid4()
    profiler.init(KEY, base_id=base)  # type: ignore[arg-type]
    with TracedSession() as s:
        assert s.get(f"http://{hostport}/odd", timeout=10).status_code == 200
    assert verify(received[0]["headers"])["base_id"] == str(base)
    assert [r.name for r in store.report(str(base)).roots] == ["http"]


def test_an_unusable_hmac_key_never_breaks_the_call(store: Store, server: Any) -> None:
    hostport, received = server
    profiler.init(12345)  # type: ignore[arg-type]
    with TracedSession() as s:
        assert s.get(f"http://{hostport}/oddkey", timeout=10).status_code == 200
    assert "X-Trace-Info" not in received[0]["headers"]


def test_invalid_url_error_does_not_record_credentials(store: Store) -> None:
    base = profiler.init(KEY).get_base_id()
    with TracedSession() as s, pytest.raises(requests.exceptions.InvalidURL) as info:
        s.get(f"http://admin:{PASSWORD}@/x?key=K3Y", timeout=5)
    assert PASSWORD in str(info.value)  # requests quotes the whole URL...
    (span,) = store.report(base).roots
    assert span.error and span.exception["type"] == "InvalidURL"
    assert "No host supplied" in span.exception["message"]
    stored = json.dumps(store.driver.get_report(base))
    assert PASSWORD not in stored and "K3Y" not in stored  # ...the trace does not


def test_patch_requests_traces_every_session(store: Store, server: Any) -> None:
    hostport, received = server
    base = profiler.init(KEY).get_base_id()
    patch_requests()
    try:
        requests.get(f"http://{hostport}/patched", timeout=10)
    finally:
        unpatch_requests()
    requests.get(f"http://{hostport}/unpatched", timeout=10)
    assert "X-Trace-Info" in received[0]["headers"]
    assert "X-Trace-Info" not in received[1]["headers"]
    assert [r.name for r in store.report(base).roots] == ["http"]


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("http://u:p@host:8080/a/b?t=1#f", "http://host:8080/a/b"),
        ("https://[::1]:8443/x?y", "https://[::1]:8443/x"),
        ("http://u:p@[2001:db8::1]/", "http://[2001:db8::1]/"),
        ("http://host:99999999/", "<unparsable url>"),
    ],
)
def test_clean_url(url: str, clean: str) -> None:
    assert _clean_url(url) == clean
