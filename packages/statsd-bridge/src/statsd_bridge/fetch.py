"""HTTP GET of JSON with a hard deadline and a cap on the body size."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from . import __version__
from .config import Source, redact_url
from .errors import (
    REASON_BAD_JSON,
    REASON_CONNECTION,
    REASON_HTTP_STATUS,
    REASON_TIMEOUT,
    REASON_TOO_LARGE,
    PollError,
)

_CHUNK = 64 * 1024
USER_AGENT = f"statsd-bridge/{__version__}"


def _reject_constant(name: str) -> float:
    # NaN / Infinity are not JSON, but Python's parser accepts them; keep them
    # as floats so that they are rejected and counted as values, not as a
    # malformed response.
    return float(name)


class Fetcher:
    """GETs JSON for one source. One instance per source; not shared between threads.

    Every call gets the poll's absolute deadline (monotonic seconds): the connect
    and each socket read are limited to the time left, and the body is read
    chunk by chunk with the deadline and the size cap checked after each read,
    so a server that trickles bytes cannot hold a poll past its timeout.
    """

    def __init__(
        self,
        source: Source,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.clock = clock
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        self.session.headers.update(source.headers)
        if source.auth is not None:
            self.session.auth = source.auth
        self.session.verify = source.verify
        # Proxies from the environment are not for monitoring calls on loopback
        # and internal networks; be explicit and predictable.
        self.session.trust_env = False
        self.requests_made = 0

    def close(self) -> None:
        self.session.close()

    def get_json(
        self, url: str, deadline: float, params: Mapping[str, str | int] | None = None
    ) -> Any:
        shown = redact_url(url)
        body = self._get(url, shown, deadline, params)
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            raise PollError(REASON_BAD_JSON, f"GET {shown}: response is not JSON ({msg})") from None

    def _get(
        self, url: str, shown: str, deadline: float, params: Mapping[str, str | int] | None
    ) -> bytes:
        remaining = deadline - self.clock()
        if remaining <= 0:
            raise PollError(REASON_TIMEOUT, f"GET {shown}: no time left in this poll")
        cap = self.source.max_body
        self.requests_made += 1
        try:
            resp = self.session.get(
                url,
                params=params,
                timeout=(remaining, remaining),
                stream=True,
                # A redirect could carry the auth headers to another host.
                allow_redirects=False,
            )
        except requests.Timeout:
            raise PollError(REASON_TIMEOUT, f"GET {shown}: no answer within the timeout") from None
        except requests.RequestException as exc:
            raise PollError(
                REASON_CONNECTION, f"GET {shown}: {_short(exc)}; is the service up?"
            ) from None
        with resp:
            if not 200 <= resp.status_code < 300:
                raise PollError(REASON_HTTP_STATUS, f"GET {shown}: HTTP {resp.status_code}")
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > cap:
                raise PollError(
                    REASON_TOO_LARGE,
                    f"GET {shown}: body of {length} bytes is over max_body ({cap}); "
                    "raise max_body if that is expected",
                )
            return self._read_body(resp, shown, deadline, cap)

    def _read_body(self, resp: requests.Response, shown: str, deadline: float, cap: int) -> bytes:
        raw = resp.raw
        sock = _socket_of(raw)
        buf = bytearray()
        try:
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise PollError(REASON_TIMEOUT, f"GET {shown}: body not read within timeout")
                if sock is not None:
                    # A server that sends Content-Length and closes (HTTP/1.0 style, like
                    # wsgiref) leaves the socket closed once the body is in: nothing to time.
                    try:
                        sock.settimeout(remaining)
                    except OSError:
                        sock = None
                chunk = raw.read1(_CHUNK, decode_content=True) if hasattr(raw, "read1") else None
                if chunk is None:  # pragma: no cover - urllib3 < 2 has no read1
                    chunk = raw.read(_CHUNK, decode_content=True)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > cap:
                    raise PollError(
                        REASON_TOO_LARGE,
                        f"GET {shown}: body is over max_body ({cap} bytes); stopped reading; "
                        "raise max_body if that is expected",
                    )
        except PollError:
            raise
        except Exception as exc:  # noqa: BLE001 - urllib3's errors share no base with requests'
            if _is_timeout(exc):
                raise PollError(
                    REASON_TIMEOUT, f"GET {shown}: body not read within timeout"
                ) from None
            raise PollError(REASON_CONNECTION, f"GET {shown}: {_short(exc)}") from None
        return bytes(buf)


def _socket_of(raw: Any) -> socket.socket | None:
    """The socket under a streamed urllib3 response, to shorten each read's timeout.

    Uses attributes that urllib3/http.client do not promise; when they are not
    there, reads fall back to the timeout given to the request.
    """
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:
        fp = getattr(getattr(raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (TimeoutError, socket.timeout, requests.Timeout)):
            return True
        if "timed out" in str(cur).lower() or "timeout" in type(cur).__name__.lower():
            return True
        cur = cur.__cause__ or cur.__context__
    return False


# A query string inside an error message ("Max retries exceeded with url: /s?token=..."):
# the URL is shown redacted beside it, so the message does not need it.
_QUERY_IN_TEXT = re.compile(r"\?[^\s'\")]+")


def _short(exc: BaseException) -> str:
    """An error description without URLs' credentials, query strings or long reprs."""
    name = type(exc).__name__
    text = str(exc)
    if "@" in text:
        return name
    text = _QUERY_IN_TEXT.sub("?...", text)
    return f"{name}: {text[:200]}" if text else name
