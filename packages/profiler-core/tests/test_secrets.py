"""Credentials never leave through a repr, a log line, ``stats()["last_error"]``, a CLI error or
a viewer response: not the password, not an option named like a secret (``api_key``, ``token``)
and not those of a connection string nested in an option (``?store=...``), whether the client
library quotes them as written or percent-encoded.

The drivers here are the worst case on purpose: every error quotes the whole connection string
unmasked, as some client libraries do.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import redirect_stderr
from typing import Any
from urllib.parse import quote

import pytest

from xprofiler.core import cli, registry
from xprofiler.core.dispatcher import Dispatcher
from xprofiler.core.errors import StoreUnavailable
from xprofiler.core.points import Point, TraceFilter
from xprofiler.core.protocol import BaseDriver
from xprofiler.core.testing import make_point
from xprofiler.core.uri import URL, parse_url, scrub_secrets
from xprofiler.core.web import make_app

PW = "pw@:/%x-Secret1"
KEY = "k3y/+=Secret2"
NESTED_PW = "n@st:ed/Secret3"
NESTED_KEY = "nestedKey+Secret4"
ALL = ("Secret1", "Secret2", "Secret3", "Secret4")


def q(text: str) -> str:
    return quote(text, safe="")


def nested_store() -> str:
    inner = f"elasticsearch://es.example:9200/xp?api_key={q(NESTED_KEY)}"
    return f"mongodb://u:{q(NESTED_PW)}@db.example/x?store2={q(inner)}"


def full_url() -> str:
    return (
        f"xpleak://user:{q(PW)}@127.0.0.1:9/db?api_key={q(KEY)}&other=1&store={q(nested_store())}"
    )


def assert_clean(text: str) -> None:
    for secret in ALL:
        assert secret not in text, text


class LeakyDriver(BaseDriver):
    """Every error quotes the connection string unmasked, decoded and percent-encoded."""

    def _quote_everything(self) -> str:
        raw = self.url.render(hide_password=False)
        return f"{raw} | pw={PW} key={KEY} nested={NESTED_PW} {NESTED_KEY} | {q(NESTED_PW)}"

    def notify(self, points: Sequence[Point]) -> None:
        raise StoreUnavailable(f"cannot reach {self._quote_everything()}")

    def get_report(self, base_id: str) -> list[Point]:
        raise RuntimeError(f"cannot read from {self._quote_everything()}")

    def list_traces(self, filters: TraceFilter) -> list[Any]:
        raise RuntimeError(f"cannot list from {self._quote_everything()}")

    def list_error_traces(self, filters: TraceFilter) -> list[Any]:
        return self.list_traces(filters)


@pytest.fixture(autouse=True)
def leaky_scheme() -> Iterator[None]:
    registry.register("xpleak", LeakyDriver)
    try:
        yield
    finally:
        registry.unregister("xpleak")


def test_nested_secret_options_are_masked_in_str_and_repr() -> None:
    url = parse_url(full_url())
    assert url.get("api_key") == KEY and url.password == PW  # the values themselves are intact
    for text in (str(url), repr(url), url.render()):
        assert_clean(text)
        assert "127.0.0.1:9" in text and "other=1" in text  # the shape stays readable
    # A nested string with a secret option but no user:password@ (nothing to spot by '@').
    bare = parse_url("redis://h/0?store=" + q(f"elasticsearch://h?api_key={q(NESTED_KEY)}"))
    assert_clean(str(bare))
    assert "elasticsearch" in str(bare)


def test_secrets_lists_every_credential_and_scrub_removes_every_form() -> None:
    url = parse_url(full_url())
    assert set(url.secrets()) == {PW, KEY, NESTED_PW, NESTED_KEY}
    assert parse_url("sqlite:///x.db").secrets() == ()
    text = " ".join(f"{s} {q(s)} {quote(s)}" for s in url.secrets())
    assert scrub_secrets(text, url.secrets()).replace("***", "").strip() == ""


def test_dispatcher_last_error_and_logs_hold_no_credential(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="xprofiler")
    d = Dispatcher(full_url(), flush_interval=0.01, retry_backoff_max=0.01, log_interval=0.0)
    try:
        d.put(make_point("b", "t", "b", "start", "op", 1))
        assert d.flush(0.3) is False
    finally:
        d.close(0.2)
    st = d.stats()
    assert st["failed_batches"] >= 1 and "cannot reach" in st["last_error"]
    assert_clean(st["last_error"])
    assert "could not be delivered" in caplog.text
    assert_clean(caplog.text)


def _call(app: Any, path: str) -> tuple[str, bytes]:
    out: list[str] = []
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": "", "HTTP_HOST": "h"}
    body = b"".join(app(environ, lambda status, headers: out.append(status)))
    return out[0], body


def test_viewer_errors_and_logs_hold_no_credential(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(full_url())
    try:
        for path in ("/", "/api/traces", "/api/stats", "/traces/abc", "/api/traces/abc"):
            status, body = _call(app, path)
            assert status.startswith("503"), (path, status)
            assert b"cannot " in body
            assert_clean(body.decode())
    finally:
        app.close()
    assert "store error" in caplog.text
    assert_clean(caplog.text)


@pytest.mark.parametrize("args", [["trace", "list"], ["trace", "show", "abc"]])
def test_cli_store_errors_hold_no_credential(args: list[str]) -> None:
    err = io.StringIO()
    with redirect_stderr(err):
        code = cli.main([*args, "-c", full_url()])
    assert code == cli.EXIT["store"]
    assert "cannot " in err.getvalue() and "127.0.0.1:9" in err.getvalue()
    assert_clean(err.getvalue())


def test_a_driver_given_as_an_object_is_scrubbed_by_its_url() -> None:
    d = Dispatcher(LeakyDriver(parse_url(full_url())), flush_interval=0.01)
    try:
        d.put(make_point("b", "t", "b", "start", "op", 1))
        d.flush(0.2)
    finally:
        d.close(0.1)
    assert isinstance(d._url, URL)
    assert_clean(d.stats()["last_error"] or "")
