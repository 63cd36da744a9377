"""The tracing API: process-wide set-up, per-request trace state in contextvars, spans.

Trace state is an immutable chain of frames held in one ContextVar: each ``start`` sets a new
frame whose parent is the current one, each ``stop`` sets the parent back. Nothing is mutated
in place, so threads and asyncio tasks (which copy their context) never see each other's stack.

``start``/``stop`` are the hot path: a frame is a plain tuple, and a point is queued as a flat
tuple (see :class:`~xprofiler.core.dispatcher.SpanLabels`) that the dispatcher's thread turns
into the point dict.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .dispatcher import Dispatcher, SpanLabels
from .points import bounded_repr

__all__ = [
    "setup",
    "shutdown",
    "is_setup",
    "dispatcher_stats",
    "flush",
    "init",
    "get",
    "clean",
    "start",
    "stop",
    "Profiler",
    "safe_repr",
]

log = logging.getLogger(__name__)

ENV_CONNECTION_STRING = "PROFILER_CONNECTION_STRING"


@dataclass
class _Config:
    service: str
    project: str
    host: str
    hmac_keys: tuple[str, ...]
    dispatcher: Dispatcher
    max_repr: int
    connection_string: str
    labels: SpanLabels  # service, project, host: queued with each point
    put: Callable[[Any], None]  # dispatcher.put


_config: _Config | None = None
# What start/stop need of the config, in one global read: the dispatcher's queue, the
# dispatcher, the labels. put()'s fast path is inlined there (see Dispatcher.put).
_sink: tuple[deque[Any], Dispatcher, SpanLabels] | None = None
# After shutdown(), tracing stays off until setup() is called again (no silent default store).
_shut_down = False


class _TracingShutDown(Exception):
    pass


_config_lock = threading.Lock()
_auto_lock = threading.Lock()


# One level of the trace stack: (parent frame or None, trace_id, name, base_id, hmac_key).
# A tuple, because building one costs a tenth of an instance of a class with __slots__.
_Frame = tuple[Any, str, str, str, "str | None"]

_ctx: ContextVar[_Frame | None] = ContextVar("xprofiler_trace", default=None)
ctx_get = _ctx.get  # bound method: the cheapest "is anything being traced here?" check
_ctx_set = _ctx.set
_time_ns = time.time_ns

# Span ids: a random per-process prefix and a decimal counter (formatted in start(); decimal is
# the cheapest), far cheaper than uuid4 per span and unique across processes. Renewed after
# fork so parent and child never collide.
_prefix = ""
_counter = itertools.count()


def _renew_prefix() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex() + "-"
    _counter = itertools.count(1)


_renew_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_prefix)


# -- bounded, never-raising reprs ---------------------------------------------------------------
_max_repr = 500  # set by setup(max_repr=...)


def safe_repr(value: Any, limit: int | None = None) -> str:
    """repr() bounded in length that never raises (a failing __repr__ is reported as such)."""
    return bounded_repr(value, limit or _max_repr)


# -- set-up ---------------------------------------------------------------------------------------
def setup(
    connection_string: str | None = None,
    *,
    service: str | None = None,
    project: str = "",
    host: str | None = None,
    hmac_keys: str | list[str] | tuple[str, ...] | None = None,
    max_queue: int = 100_000,
    batch_size: int = 500,
    flush_interval: float = 0.5,
    max_repr: int = 500,
) -> Dispatcher:
    """Configure this process: where points go and how they are labelled.

    ``connection_string`` defaults to ``$PROFILER_CONNECTION_STRING`` and then to the embedded
    sqlite store in the per-user data directory. ``service`` defaults to the program name.
    ``hmac_keys`` are the keys accepted on incoming trace headers (the first one signs outgoing
    headers when a trace was started here without one). A malformed connection string or an
    unknown scheme raises here, at set-up; the store itself is contacted in the background.
    """
    global _config, _max_repr, _sink, _shut_down
    from .builtin.sqlite import default_path

    cs = connection_string or os.environ.get(ENV_CONNECTION_STRING) or f"sqlite:///{default_path()}"
    if isinstance(hmac_keys, str):
        hmac_keys = (hmac_keys,)
    dispatcher = Dispatcher(
        cs, max_queue=max_queue, batch_size=batch_size, flush_interval=flush_interval
    )
    service = service or os.path.basename(sys.argv[0] or "python") or "python"
    host = host or socket.gethostname()
    with _config_lock:
        _shut_down = False
        old = _config
        _config = _Config(
            service=service,
            project=project,
            host=host,
            hmac_keys=tuple(hmac_keys or ()),
            dispatcher=dispatcher,
            max_repr=max_repr,
            connection_string=cs,
            labels=SpanLabels(service, project, host),
            put=dispatcher.put,
        )
        _max_repr = max(16, max_repr)
        _sink = (dispatcher._queue, dispatcher, _config.labels)
    if old is not None:
        old.dispatcher.close()
    return dispatcher


def is_setup() -> bool:
    return _config is not None


def _cfg() -> _Config:
    cfg = _config
    if cfg is None:
        if _shut_down:
            raise _TracingShutDown("shutdown() was called; setup() turns tracing back on")
        with _auto_lock:
            if _config is None:
                setup()
                log.info("xprofiler: traced before setup(); using the default store")
        cfg = _config
        assert cfg is not None
    return cfg


def _auto_sink() -> tuple[deque[Any], Dispatcher, SpanLabels]:
    cfg = _cfg()
    return cfg.dispatcher._queue, cfg.dispatcher, cfg.labels


def configured_hmac_keys() -> tuple[str, ...]:
    return _config.hmac_keys if _config is not None else ()


def shutdown(timeout: float = 5.0) -> None:
    """Flush and close the process-wide dispatcher."""
    global _config, _sink, _shut_down
    with _config_lock:
        cfg, _config = _config, None
        _sink = None
        _shut_down = True
    if cfg is not None:
        cfg.dispatcher.close(timeout)


def flush(timeout: float | None = 10.0) -> bool:
    """Deliver all queued points now. True if everything was delivered within ``timeout``."""
    cfg = _config
    return True if cfg is None else cfg.dispatcher.flush(timeout)


def dispatcher_stats() -> dict[str, Any]:
    """Queued, delivered, dropped, failed batches... of the process-wide dispatcher."""
    cfg = _config
    if cfg is None:
        return {
            "queued": 0,
            "delivered": 0,
            "dropped": 0,
            "rejected": 0,
            "failed_batches": 0,
            "retries": 0,
            "last_error": None,
            "max_queue": 0,
        }
    return cfg.dispatcher.stats()


# -- per-request API ----------------------------------------------------------------------------
class Profiler:
    """A view of the current context's trace (what ``get()`` returns)."""

    __slots__ = ("_frame",)

    def __init__(self, frame: _Frame) -> None:
        self._frame = frame

    @property
    def hmac_key(self) -> str | None:
        return self._frame[4]

    def get_base_id(self) -> str:
        return self._frame[3]

    def get_id(self) -> str:
        """The current span's id (the parent of the next span started here)."""
        return self._frame[1]

    def get_parent_id(self) -> str:
        parent = self._frame[0]
        return parent[1] if parent is not None else self._frame[3]

    def start(self, name: str, info: dict[str, Any] | None = None) -> None:
        start(name, info)

    def stop(self, info: dict[str, Any] | None = None) -> None:
        stop(info)

    def __repr__(self) -> str:
        return f"<Profiler base_id={self.get_base_id()} id={self.get_id()}>"


def init(
    hmac_key: str | None, base_id: str | None = None, parent_id: str | None = None
) -> Profiler:
    """Begin (or continue, given ids from a caller) a trace in the current context."""
    # Ids are strings in every point, header and store: a UUID object (or any other value)
    # given here is used as its text, so it cannot fail later inside a traced call.
    base = str(base_id) if base_id else str(uuid.uuid4())
    frame: _Frame = (None, str(parent_id) if parent_id else base, "", base, hmac_key)
    _ctx.set(frame)
    return Profiler(frame)


def get() -> Profiler | None:
    """The current context's trace, or None when nothing is being traced here."""
    frame = _ctx.get()
    return None if frame is None else Profiler(frame)


def clean() -> None:
    """Forget the current context's trace."""
    _ctx.set(None)


def _info(info: Any) -> dict[str, Any] | None:
    """A shallow copy of the caller's info (it may change the dict after the call), or None."""
    if not info:
        return None
    if type(info) is dict:
        return info.copy()
    try:
        return dict(info)
    except Exception:  # noqa: BLE001 - not a mapping: keep it, under a key
        return {"info": info}


def start(name: str, info: dict[str, Any] | None = None) -> None:
    """Open a span named ``name`` under the current one. A no-op when not tracing."""
    frame = ctx_get()
    if frame is None:
        return
    # The frame is pushed first and unconditionally, so a matching stop() always pops it.
    tid = f"{_prefix}{next(_counter)}"
    base = frame[3]
    _ctx_set((frame, tid, name, base, frame[4]))
    try:
        q, d, labels = _sink or _auto_sink()
        # (labels, base_id, trace_id, parent_id, event, name, timestamp, error, info): the
        # dispatcher builds the point dict on its own thread. The caller may change its info
        # dict after the call: a shallow copy is queued.
        t = (
            labels,
            base,
            tid,
            frame[1],
            "start",
            name,
            _time_ns(),
            False,
            (info.copy() if type(info) is dict else _info(info)) if info else None,
        )
        n = len(q)
        if n < d._gate:  # Dispatcher.put, inlined
            q.append(t)
        else:
            d._put_slow(t, n)
    except Exception:  # noqa: BLE001 - tracing never raises into traced code
        log.debug("xprofiler: start failed", exc_info=True)


def stop(info: dict[str, Any] | None = None, *, error: bool = False) -> None:
    """Close the current span. A no-op when not tracing or no span is open."""
    frame = ctx_get()
    if frame is None:
        return
    parent = frame[0]
    if parent is None:
        return
    try:
        _ctx_set(parent)
        q, d, labels = _sink or _auto_sink()
        t = (
            labels,
            frame[3],
            frame[1],
            parent[1],
            "stop",
            frame[2],
            _time_ns(),
            error,
            (info.copy() if type(info) is dict else _info(info)) if info else None,
        )
        n = len(q)
        if n < d._gate:  # Dispatcher.put, inlined
            q.append(t)
        else:
            d._put_slow(t, n)
    except Exception:  # noqa: BLE001
        log.debug("xprofiler: stop failed", exc_info=True)


def _error_info(exc: BaseException, info: dict[str, Any] | None = None) -> dict[str, Any]:
    out = dict(info) if info else {}
    out["etype"] = type(exc).__name__
    out["message"] = safe_repr_text(exc)
    return out


def safe_repr_text(exc: BaseException, limit: int = 2000) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001
        text = f"<unprintable {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stop_with_error(exc: BaseException, info: dict[str, Any] | None = None) -> None:
    stop(_error_info(exc, info), error=True)


def current_frame() -> _Frame | None:
    return _ctx.get()


def set_frame(frame: _Frame | None) -> None:
    _ctx.set(frame)
