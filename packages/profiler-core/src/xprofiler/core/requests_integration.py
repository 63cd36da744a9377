"""Outgoing HTTP with ``requests``: trace each call and send the signed trace headers.

``session = TracedSession()`` (a ``requests.Session``), or ``patch_requests()`` to do the same
for every Session in the process (``unpatch_requests()`` undoes it). Credentials in URLs are
never recorded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

try:
    import requests
except ModuleNotFoundError as exc:  # requests is optional for core
    raise ModuleNotFoundError(
        "xprofiler.core.requests_integration needs the 'requests' library: "
        "pip install 'profiler-core[requests]' (or pip install requests)",
        name=exc.name,
    ) from exc

from . import profiler as _p
from .propagation import get_trace_id_headers

__all__ = ["TracedSession", "patch_requests", "unpatch_requests"]

_original_request = requests.Session.request


def _clean_url(url: Any) -> str:
    """The URL without credentials, query or fragment (they may hold secrets)."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unparsable url>"


def _secrets(url: Any) -> list[str]:
    """Credential and query strings of ``url``, decoded and as written, longest first."""
    try:
        parts = urlsplit(str(url))
        found = {parts.password, parts.query}
        found |= {unquote(x) for x in found if x}
        if parts.netloc and "@" in parts.netloc:
            found.add(parts.netloc.rpartition("@")[0])
    except ValueError:
        return []
    return sorted((x for x in found if x), key=len, reverse=True)


def _full_url(url: Any, params: Any) -> str | None:
    """The URL as requests sends it, with ``params=`` merged into its query (or None)."""
    if not params:
        return None
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, params)
        return prepared.url
    except Exception:  # noqa: BLE001 - a URL requests refuses: nothing more to scrub
        return None


def _error_info(exc: BaseException, url: Any, params: Any = None) -> dict[str, Any]:
    # requests quotes the whole URL in some errors (InvalidURL, ConnectionError's "Max retries
    # exceeded with url: /path?token=..."): scrub what _clean_url leaves out, the query built
    # from params= included, before it is recorded.
    message = _p.safe_repr_text(exc)
    secrets = set(_secrets(url))
    full = _full_url(url, params)
    if full is not None:
        secrets.update(_secrets(full))
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return {"etype": type(exc).__name__, "message": message}


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
        _p.stop(_error_info(exc, url, kwargs.get("params")), error=True)
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
