"""Serve the viewer with the standard library (``profiler serve``): threaded, loopback first."""

from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

__all__ = ["make_server", "serve", "is_loopback", "LOOPBACK_NAMES"]

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.info("%s - %s", self.address_string(), format % args)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(app: Any, host: str = "127.0.0.1", port: int = 0) -> WSGIServer:
    """A threaded stdlib WSGI server bound to ``host:port`` (0: a free port); not started."""
    host = host.strip("[]")
    cls = _ThreadingServer6 if ":" in host else _ThreadingServer
    server = cls((host, port), _Handler)
    server.set_app(app)
    return server


def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> None:  # pragma: no cover - CLI
    server = make_server(app, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
