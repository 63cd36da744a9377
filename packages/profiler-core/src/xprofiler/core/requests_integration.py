"""Outgoing HTTP with ``requests``: trace each call and send the signed trace headers.

``session = TracedSession()`` (a ``requests.Session``), or ``patch_requests()`` to do the same
for every Session in the process (``unpatch_requests()`` undoes it). Credentials in URLs are
never recorded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from . import profiler as _p
from .propagation import get_trace_id_headers

__all__ = ["TracedSession", "patch_requests", "unpatch_requests"]

_original_request = requests.Session.request


def _clean_url(url: Any) -> str:
    try:
        parts = urlsplit(str(url))
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unparsable url>"


def _traced_request(self: requests.Session, method: str, url: Any, **kwargs: Any) -> Any:
    if _p.ctx_get() is None:
        return _original_request(self, method, url, **kwargs)
    _p.start("http", {"request": {"method": str(method).upper(), "url": _clean_url(url)}})
    try:
        extra = get_trace_id_headers()
        if extra:
            headers = dict(kwargs.get("headers") or {})
            headers.update(extra)
            kwargs["headers"] = headers
        response = _original_request(self, method, url, **kwargs)
    except BaseException as exc:
        _p.stop_with_error(exc)
        raise
    _p.stop({"response": {"status_code": response.status_code}})
    return response


class TracedSession(requests.Session):
    """A requests Session whose calls are traced and carry the trace headers."""

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if args:  # positional params/data/... as requests allows
            names = (
                "params",
                "data",
                "headers",
                "cookies",
                "files",
                "auth",
                "timeout",
                "allow_redirects",
                "proxies",
                "hooks",
                "stream",
                "verify",
                "cert",
                "json",
            )
            kwargs.update(zip(names, args, strict=False))
        return _traced_request(self, method, url, **kwargs)


def patch_requests() -> None:
    requests.Session.request = _traced_request  # type: ignore[method-assign,assignment]


def unpatch_requests() -> None:
    requests.Session.request = _original_request  # type: ignore[method-assign]
