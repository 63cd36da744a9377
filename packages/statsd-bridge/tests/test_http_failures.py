"""A failed, slow, non-2xx, malformed or oversized response sends nothing.

The HTTP sources are real servers on 127.0.0.1; what would be sent is caught
by the dry-run sender, which formats and batches like the real one (the real
StatsD daemon is exercised in test_statsd_e2e.py).
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from sbtest_http import HttpSource, Reply

from statsd_bridge import config as cfg
from statsd_bridge.bridge import SourcePoller
from statsd_bridge.sender import RecordingSender

OK_DOC = {"traces": 5, "errors": 1, "services": {"api": {"traces": 5, "errors": 1}}}


def make_poller(
    url: str, extra: str = "", kind: str = "profiler", self_prefix: str = ""
) -> tuple[SourcePoller, RecordingSender]:
    text = f"""
[statsd]
[bridge]
self_prefix = "{self_prefix}"
[[sources]]
name = "src"
kind = "{kind}"
url = "{url}"
interval = "2s"
timeout = "600ms"
{extra}
"""
    c = cfg.loads(text, "t.toml", {"TOKEN": "s3cr3t-token"})
    rec = RecordingSender(c.statsd)
    return SourcePoller(c.sources[0], c.bridge, rec), rec


def test_good_poll_sends_everything(http_source: HttpSource) -> None:
    http_source.route("/api/stats", Reply.json(OK_DOC))
    poller, rec = make_poller(http_source.url)
    out = poller.poll()
    assert out.ok and out.sent == 4
    assert rec.lines() == [
        "profiler.traces:5|g",
        "profiler.errors:1|g",
        "profiler.services.api.traces:5|g",
        "profiler.services.api.errors:1|g",
    ]


def test_a_server_that_closes_after_a_complete_body_is_a_good_poll(
    http_source: HttpSource,
) -> None:
    # wsgiref (and so `profiler serve`) sends Content-Length and closes: the socket is gone
    # once the body is read, and that must end the read, not fail the poll.
    http_source.route("/api/stats", Reply.json(OK_DOC, close=True))
    poller, rec = make_poller(http_source.url)
    out = poller.poll()
    assert out.ok and out.sent == 4
    assert rec.lines()[0] == "profiler.traces:5|g"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(status=500, body=b'{"traces": 1}'), "http_status"),
        (Reply(status=404, body=b"{}"), "http_status"),
        (Reply(status=302, headers={"Location": "http://127.0.0.1:1/"}), "http_status"),
        (Reply(body=b"<html>oops</html>"), "bad_json"),
        (Reply(body=b'{"traces": 1, "errors": '), "bad_json"),
        (Reply(body=b"\xff\xfe\x00garbage"), "bad_json"),
        (Reply.json([1, 2, 3]), "bad_shape"),
        (Reply.json({"traces": 1, "errors": 2, "services": []}), "bad_shape"),
        (Reply.json({"errors": 2, "services": {}}), "missing_path"),
        (Reply(delay=2.0, body=b"{}"), "timeout"),
        (Reply(hang=2.0, body=b"{}"), "timeout"),
        (Reply(trickle=0.05, body=b'{"traces": 1, "errors": 0, "services": {}}'), "timeout"),
        (Reply(body=b"[" + b"1," * 700_000 + b"1]"), "too_large"),
        (Reply(body=b"[" + b"1," * 700_000 + b"1]", content_length=False), "too_large"),
    ],
    ids=[
        "500",
        "404",
        "redirect",
        "html",
        "truncated",
        "binary",
        "list",
        "services-list",
        "missing-key",
        "hang-before-status",
        "hang-after-headers",
        "trickle",
        "huge-with-length",
        "huge-streamed",
    ],
)
def test_failed_poll_sends_nothing_and_counts_the_reason(
    http_source: HttpSource, reply: Reply, reason: str
) -> None:
    http_source.route("/api/stats", reply)
    poller, rec = make_poller(http_source.url, extra='max_body = "1MiB"')
    t0 = time.monotonic()
    out = poller.poll()
    took = time.monotonic() - t0
    assert not out.ok
    assert out.reason == reason, out.message
    assert rec.lines() == []  # all or nothing: not one metric of a failed poll
    assert poller.stats.errors == {reason: 1}
    assert poller.stats.consecutive_failures == 1
    # The timeout (600 ms) bounds every poll, whatever the server does.
    assert took < 1.5


def test_connection_refused_is_a_connection_error() -> None:
    poller, rec = make_poller("http://127.0.0.1:9")
    out = poller.poll()
    assert (out.ok, out.reason) == (False, "connection")
    assert rec.lines() == []


def test_huge_body_is_not_read_past_the_cap(http_source: HttpSource) -> None:
    # 50 MB of a streamed body: the bridge must stop at the 1 MiB cap, long
    # before the server could send it all.
    big = b"[" + b"1," * 25_000_000 + b"1]"
    http_source.route("/api/stats", Reply(body=big, content_length=False))
    poller, _rec = make_poller(http_source.url, extra='max_body = "1MiB"')
    t0 = time.monotonic()
    out = poller.poll()
    assert out.reason == "too_large"
    assert time.monotonic() - t0 < 1.0


def test_failure_is_logged_once_with_reason_and_no_secret(
    http_source: HttpSource, caplog: pytest.LogCaptureFixture
) -> None:
    http_source.route("/api/stats", Reply(status=503))
    poller, _ = make_poller(http_source.url, extra='headers_env = { "X-Auth-Token" = "TOKEN" }')
    with caplog.at_level(logging.INFO, logger="statsd_bridge"):
        poller.poll()
    failures = [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert len(failures) == 1
    assert "http_status" in failures[0].getMessage() and "503" in failures[0].getMessage()
    assert "s3cr3t-token" not in caplog.text
    # and the header did go to the server
    assert http_source.requests[-1].headers["x-auth-token"] == "s3cr3t-token"


def test_a_token_in_the_source_url_is_not_logged_when_the_service_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/api/stats?window=1h&access_token=T0KEN-xyz"
    poller, _ = make_poller(url)
    with caplog.at_level(logging.DEBUG):
        out = poller.poll()
    assert out.reason == "connection"
    assert "window=1h" in repr(poller.source) and "access_token=***" in repr(poller.source)
    assert "poll failed" in caplog.text and f"127.0.0.1:{port}" in caplog.text
    assert "T0KEN" not in caplog.text + out.message + repr(poller.source)


def test_basic_auth_and_user_agent_are_sent(http_source: HttpSource) -> None:
    http_source.route("/api/stats", Reply.json(OK_DOC))
    poller, _ = make_poller(http_source.url, extra='auth = { username = "ops", password = "pw" }')
    assert poller.poll().ok
    req = http_source.requests[-1]
    assert req.headers["authorization"] == "Basic b3BzOnB3"
    assert req.headers["user-agent"].startswith("statsd-bridge/")


def test_recovery_after_failures_resets_the_streak(http_source: HttpSource) -> None:
    http_source.route("/api/stats", Reply(status=500))
    poller, rec = make_poller(http_source.url)
    assert not poller.poll().ok
    assert not poller.poll().ok
    assert poller.stats.consecutive_failures == 2
    http_source.route("/api/stats", Reply.json(OK_DOC))
    assert poller.poll().ok
    assert poller.stats.consecutive_failures == 0
    assert poller.stats.errors == {"http_status": 2}
    assert len(rec.lines()) == 4


def test_rejected_values_are_counted_and_the_rest_is_sent(http_source: HttpSource) -> None:
    doc = {
        "a": 1,
        "b": None,
        "c": "12",
        "d": True,
        "e": float("nan"),
        "f": 2.5,
        "g": [1],
    }
    # Python's json writes NaN as the bare token NaN, which some servers do too.
    http_source.route("/m", Reply(body=json.dumps(doc).encode()))
    extra = """
[[sources.metrics]]
value = "$.*"
name = "v.{*}"
"""
    poller, rec = make_poller(http_source.url + "/m", extra=extra, kind="http")
    out = poller.poll()
    assert out.ok
    assert rec.lines() == ["src.v.a:1|g", "src.v.d:1|g", "src.v.f:2.5|g"]
    assert out.rejected == 4
    assert poller.stats.rejected == {"null": 1, "string": 1, "nan": 1, "not_a_number": 1}


@pytest.mark.parametrize(
    ("given", "polled"),
    [
        ("http://h:8765", "http://h:8765/api/stats"),
        ("http://h:8765/", "http://h:8765/api/stats"),
        ("http://h/viewer/?window=2h", "http://h/viewer/api/stats?window=2h"),
        ("http://h/api/stats?window=24h", "http://h/api/stats?window=24h"),
    ],
)
def test_profiler_source_url_keeps_its_query_after_the_path(given: str, polled: str) -> None:
    from statsd_bridge.sources import profiler_stats_url

    assert profiler_stats_url(given) == polled


def test_profiler_source_with_a_query_polls_the_stats_path(http_source: HttpSource) -> None:
    seen: list[str] = []

    def reply(req) -> Reply:  # type: ignore[no-untyped-def]
        seen.append(req.query.get("window", [""])[0])
        return Reply.json(OK_DOC)

    http_source.route("/api/stats", reply)
    poller, rec = make_poller(http_source.url + "/?window=2h")
    assert poller.poll().ok
    assert seen == ["2h"]
