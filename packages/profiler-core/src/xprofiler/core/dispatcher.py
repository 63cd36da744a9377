"""The background batching dispatcher between traced code and a driver.

The hot path (:meth:`Dispatcher.put`) appends to a deque and, when a batch is ready, sets an
event; it never blocks on I/O and never raises. A daemon thread drains the queue in batches and
calls ``driver.notify``. A failing batch is kept and retried with capped backoff while new points
keep queueing up to ``max_queue``; beyond that points are dropped and counted. The counts are
readable through :meth:`stats` and logged (at most once per ``log_interval``).

Flushed at interpreter exit; after ``os.fork()`` the child gets an empty queue and a new thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any
from urllib.parse import quote

from .points import Point, safe_info
from .registry import load_driver
from .uri import URL

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

_instances: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


def _safe_error(exc: BaseException, secret: str | None) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails
        text = f"{type(exc).__name__}: <unprintable>"
    if secret:
        # The driver may have quoted its URL, decoded or percent-encoded.
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, "***")
    return text[:500]


class Dispatcher:
    """Bounded queue + background flusher in front of one driver."""

    def __init__(
        self,
        store: str | URL | Any,
        *,
        max_queue: int = 100_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        retry_backoff_max: float = 5.0,
        log_interval: float = 60.0,
        exit_timeout: float = 5.0,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or flush_interval <= 0:
            raise ValueError("max_queue and batch_size must be >= 1, flush_interval > 0")
        if isinstance(store, (str, URL)):
            from .uri import parse_url

            self._url: URL | None = parse_url(store)
            # Fail early on an unknown scheme (set-up time), connect later (background).
            from .registry import get_driver_class

            get_driver_class(self._url.scheme)
            # Constructing a driver must not contact the server (protocol), so build it now:
            # a connection string the driver refuses (sqlite with a host...) fails at set-up
            # instead of losing every point in the background.
            self._driver: Any = load_driver(self._url)
        else:
            self._url = getattr(store, "url", None)
            self._driver = store
        self._secret = self._url.password if self._url is not None else None
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_backoff_max = retry_backoff_max
        self.log_interval = log_interval
        self.exit_timeout = exit_timeout
        self._init_state()
        _instances.add(self)

    def _init_state(self) -> None:
        self._queue: deque[Point] = deque()
        self._pending: list[Point] = []  # the batch being delivered (kept across failures)
        self._wake = threading.Event()
        self._idle = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self.delivered = 0
        self.dropped = 0
        self._drop_lock = threading.Lock()
        self.failed_batches = 0
        self.retries = 0
        self.last_error: str | None = None
        self._last_drop_log = 0.0
        self._dropped_logged = 0
        self._failing = False

    # -- hot path -----------------------------------------------------------------------------
    def put(self, point: Point) -> None:
        """Queue one point. Never blocks, never raises."""
        q = self._queue
        # The batch being retried counts against the bound too: while the store is down at
        # most max_queue points are held in all.
        if len(q) + len(self._pending) >= self.max_queue or self._closed:
            with self._drop_lock:  # only on this rare path; += alone loses counts in threads
                self.dropped += 1
            return
        q.append(point)
        if self._thread is None:
            self._start_thread()
        if len(q) >= self.batch_size and not self._failing:
            self._wake.set()

    # -- control ------------------------------------------------------------------------------
    def _start_thread(self) -> None:
        try:
            with self._thread_lock:
                if self._pid != os.getpid():  # forked without the at-fork hook
                    self._after_fork()
                if self._thread is None:
                    t = threading.Thread(target=self._run, name="xprofiler-dispatcher", daemon=True)
                    self._thread = t
                    t.start()
        except Exception:  # noqa: BLE001 - must never reach traced code
            log.exception("xprofiler: cannot start the dispatcher thread")

    def _after_fork(self) -> None:
        # The child must not deliver the parent's points (the parent does) and must not
        # touch the parent's locks or thread.
        driver, url = self._driver, self._url
        self._init_state()
        self._driver = None if url is not None else driver

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Deliver everything queued so far. True when the queue drained within ``timeout``."""
        if self._thread is None and not self._queue:
            return True
        if self._thread is None:
            self._start_thread()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._queue or self._pending:
                self._wake.set()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self._queue) + len(self._pending),
            "delivered": self.delivered,
            "dropped": self.dropped,
            "failed_batches": self.failed_batches,
            "retries": self.retries,
            "last_error": self.last_error,
            "max_queue": self.max_queue,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Flush (up to ``timeout``), stop the thread, close the driver."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self._queue or self._pending:
            lost = len(self._queue) + len(self._pending)
            with self._drop_lock:
                self.dropped += lost
            log.warning(
                "xprofiler: %d trace points could not be delivered before shutdown "
                "(store: %s; last error: %s)",
                lost,
                self._url,
                self.last_error,
            )
        if self._driver is not None:
            try:
                self._driver.close()
            except Exception:  # noqa: BLE001
                log.debug("xprofiler: driver close failed", exc_info=True)

    # -- background ---------------------------------------------------------------------------
    def _get_driver(self) -> Any:
        if self._driver is None:
            assert self._url is not None
            self._driver = load_driver(self._url)
        return self._driver

    def _run(self) -> None:
        backoff = 0.0
        while True:
            self._wake.wait(backoff if backoff else self.flush_interval)
            self._wake.clear()
            try:
                backoff = self._deliver(backoff)
                self._log_drops()
            except Exception:  # noqa: BLE001 - this thread must outlive any surprise
                log.exception("xprofiler: unexpected error in the dispatcher thread")
                backoff = self.retry_backoff_max
            with self._idle:
                self._idle.notify_all()
            if self._closed and (not self._queue or self._failing):
                return

    def _deliver(self, backoff: float) -> float:
        """Send batches until the queue is empty or the store fails; returns the next wait."""
        while True:
            if not self._pending:
                batch = self._take()
                if not batch:
                    return 0.0
                self._pending = batch
            else:
                # Top up a retried batch so it does not stay small forever.
                room = self.batch_size - len(self._pending)
                if room > 0:
                    self._pending.extend(self._take(room))
            try:
                self._get_driver().notify(self._pending)
            except Exception as exc:  # noqa: BLE001 - counted, logged, retried
                self.failed_batches += 1
                self.last_error = _safe_error(exc, self._secret)
                if not self._failing:
                    log.warning(
                        "xprofiler: the trace store %s failed (%s); keeping up to %d points "
                        "and retrying",
                        self._url,
                        self.last_error,
                        self.max_queue,
                    )
                self._failing = True
                self.retries += 1
                return min(self.retry_backoff_max, max(0.05, backoff * 2 or 0.1))
            if self._failing:
                log.warning("xprofiler: the trace store %s is back", self._url)
            self._failing = False
            backoff = 0.0
            self.delivered += len(self._pending)
            self._pending = []

    def _take(self, n: int | None = None) -> list[Point]:
        q = self._queue
        n = self.batch_size if n is None else n
        out: list[Point] = []
        pop = q.popleft
        while len(out) < n:
            try:
                p = pop()
            except IndexError:
                break
            try:
                # Off the hot path: make user-supplied info JSON-safe and bounded, so one odd
                # or huge object cannot make a whole batch fail forever.
                p["info"] = safe_info(p["info"])
            except Exception:  # noqa: BLE001 - not a point at all: count it, go on
                with self._drop_lock:
                    self.dropped += 1
                continue
            out.append(p)
        return out

    def _log_drops(self) -> None:
        if self.dropped > self._dropped_logged:
            now = time.monotonic()
            if now - self._last_drop_log >= self.log_interval or self._dropped_logged == 0:
                log.warning(
                    "xprofiler: %d trace points dropped so far (queue bound %d; store %s; "
                    "last error: %s)",
                    self.dropped,
                    self.max_queue,
                    self._url,
                    self.last_error,
                )
                self._last_drop_log = now
                self._dropped_logged = self.dropped


def _flush_all_at_exit() -> None:
    for d in list(_instances):
        try:
            d.close(d.exit_timeout)
        except Exception:  # noqa: BLE001
            log.debug("xprofiler: flush at exit failed", exc_info=True)


def _after_fork_in_child() -> None:
    for d in list(_instances):
        d._after_fork()


atexit.register(_flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
