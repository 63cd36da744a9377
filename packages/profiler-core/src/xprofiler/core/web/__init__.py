"""The trace viewer: a small read-only WSGI application (``profiler serve`` runs it).

Deploy it under any WSGI server::

    gunicorn 'xprofiler.core.web:make_app("sqlite:////var/lib/xprofiler/traces.db")'
    PROFILER_CONNECTION_STRING=mongodb://... gunicorn xprofiler.core.web:app

``app`` reads ``$PROFILER_CONNECTION_STRING`` (then the embedded default store) on its first
request; ``$PROFILER_VIEWER_ALLOWED_HOSTS`` (comma-separated host names) restricts the Host
header it answers to. See docs/web-viewer.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from .app import HTTPError, ViewerApp
from .server import make_server, serve

__all__ = ["make_app", "app", "ViewerApp", "HTTPError", "make_server", "serve"]


def make_app(
    connection_string: str | None = None,
    *,
    allowed_hosts: Iterable[str] | None = None,
    stats_max_traces: int | None = None,
) -> ViewerApp:
    """A viewer over the store at ``connection_string``.

    ``None`` means ``$PROFILER_CONNECTION_STRING``, then the embedded sqlite store. The string
    is parsed and its driver loaded now (a bad string or a missing driver raises here, with a
    message that says what to fix); the store itself is contacted on the first request.
    ``allowed_hosts``: host names the ``Host`` header may carry (None: any).
    """
    from ..cli import resolve_connection_string
    from ..registry import load_driver

    driver = load_driver(resolve_connection_string(connection_string))
    return ViewerApp(driver, allowed_hosts=allowed_hosts, stats_max_traces=stats_max_traces)


class _EnvApp:
    """A module-level WSGI callable for servers that import an object rather than call one."""

    def __init__(self) -> None:
        self._app: ViewerApp | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    hosts = os.environ.get("PROFILER_VIEWER_ALLOWED_HOSTS", "").strip()
                    self._app = make_app(
                        None,
                        allowed_hosts=[h.strip() for h in hosts.split(",") if h.strip()]
                        if hosts
                        else None,
                    )
        return self._app(environ, start_response)


app = _EnvApp()
