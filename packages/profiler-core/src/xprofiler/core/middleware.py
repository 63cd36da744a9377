"""WSGI and ASGI middleware that continue a trace from signed incoming headers.

Only requests carrying a valid signed ``X-Trace-Info``/``X-Trace-HMAC`` pair are traced (as
OSProfiler does: tracing is opt-in per request, so nobody can make a service trace itself
without the key). ``start_new_traces=True`` makes an edge service begin a trace for every
request instead; the base id is then returned in the ``X-Trace-Id`` response header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from . import profiler as _p
from .propagation import X_TRACE_HMAC, X_TRACE_INFO, trace_from_headers
from .tracing import Trace

__all__ = ["WsgiMiddleware", "AsgiMiddleware", "TRACE_ID_HEADER"]

TRACE_ID_HEADER = "X-Trace-Id"
_WSGI_INFO = "HTTP_" + X_TRACE_INFO.upper().replace("-", "_")
_WSGI_HMAC = "HTTP_" + X_TRACE_HMAC.upper().replace("-", "_")


def _keys(hmac_keys: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if hmac_keys is None:
        return None
    if isinstance(hmac_keys, str):
        return tuple(k.strip() for k in hmac_keys.split(",") if k.strip())
    return tuple(hmac_keys)


class WsgiMiddleware:
    """Wrap a WSGI app: ``app = WsgiMiddleware(app, hmac_keys=["secret"])``."""

    def __init__(
        self,
        application: Callable[..., Any],
        hmac_keys: str | Iterable[str] | None = None,
        enabled: bool = True,
        name: str = "wsgi",
        start_new_traces: bool = False,
    ) -> None:
        self.application = application
        self.hmac_keys = _keys(hmac_keys)
        self.enabled = enabled
        self.name = name
        self.start_new_traces = start_new_traces

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not self.enabled:
            return self.application(environ, start_response)
        info = trace_from_headers(
            {X_TRACE_INFO: environ.get(_WSGI_INFO), X_TRACE_HMAC: environ.get(_WSGI_HMAC)},
            self.hmac_keys,
        )
        saved = _p.current_frame()
        if info is None and not self.start_new_traces:
            try:
                return self.application(environ, start_response)
            finally:
                # A trace the application began itself must not outlive the request on this
                # (reused) server thread.
                _p.set_frame(saved)
        if info is not None:
            prof = _p.init(info["hmac_key"], info["base_id"], info.get("parent_id"))
        else:
            keys = self.hmac_keys or _p.configured_hmac_keys()
            prof = _p.init(keys[0] if keys else None)
        base_id = prof.get_base_id()

        def _start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            if info is None:
                headers = [*headers, (TRACE_ID_HEADER, base_id)]
            return start_response(status, headers, *exc)

        request = {
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "method": environ.get("REQUEST_METHOD", ""),
            "scheme": environ.get("wsgi.url_scheme", ""),
        }
        try:
            with Trace(self.name, info={"request": request}):
                return self.application(environ, _start_response)
        finally:
            _p.set_frame(saved)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AsgiMiddleware:
    """Wrap an ASGI app: ``app = AsgiMiddleware(app, hmac_keys=["secret"])``."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        hmac_keys: str | Iterable[str] | None = None,
        enabled: bool = True,
        name: str = "asgi",
        start_new_traces: bool = False,
    ) -> None:
        self.app = app
        self.hmac_keys = _keys(hmac_keys)
        self.enabled = enabled
        self.name = name
        self.start_new_traces = start_new_traces

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for k, v in scope.get("headers") or ():
            try:
                headers[k.decode("latin-1").lower()] = v.decode("latin-1")
            except (AttributeError, UnicodeError):
                continue
        info = trace_from_headers(headers, self.hmac_keys)
        saved = _p.current_frame()
        if info is None and not self.start_new_traces:
            try:
                await self.app(scope, receive, send)
            finally:
                _p.set_frame(saved)
            return
        if info is not None:
            prof = _p.init(info["hmac_key"], info["base_id"], info.get("parent_id"))
        else:
            keys = self.hmac_keys or _p.configured_hmac_keys()
            prof = _p.init(keys[0] if keys else None)
        base_id = prof.get_base_id().encode("latin-1")

        async def _send(message: MutableMapping[str, Any]) -> None:
            if info is None and message.get("type") == "http.response.start":
                message = dict(message)
                message["headers"] = [
                    *(message.get("headers") or []),
                    (TRACE_ID_HEADER.lower().encode("latin-1"), base_id),
                ]
            await send(message)

        query = scope.get("query_string", b"")
        request = {
            "path": scope.get("path", ""),
            "query": query.decode("latin-1") if isinstance(query, bytes) else str(query),
            "method": scope.get("method", ""),
            "scheme": scope.get("scheme", ""),
        }
        try:
            async with Trace(self.name, info={"request": request}):
                await self.app(scope, receive, _send)
        finally:
            _p.set_frame(saved)
