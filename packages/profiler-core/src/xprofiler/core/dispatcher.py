"""The background batching dispatcher between traced code and a driver.

The hot path (:meth:`Dispatcher.put`) appends to a deque and, when a batch is ready, sets an
event; it never blocks on I/O and never raises. The profiler queues flat tuples (see
:class:`SpanLabels`) and the point dicts are built here, on the delivery thread. A daemon
thread drains the queue in batches and calls ``driver.notify``.

A batch that fails because the store cannot be reached (``StoreUnavailable``, or any
``OSError``: connection refused, timeout...) is kept and retried with capped backoff, forever,
while new points keep queueing up to ``max_queue``; beyond that points are dropped and counted.
A batch the store refuses for any other reason (its content) is retried a few times, then
split in halves that are delivered separately, so good points get through; a single point that
still fails is rejected: dropped and counted in ``stats()["rejected"]``. The counts are readable
through :meth:`stats` and logged (at most once per ``log_interval``).

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
from collections.abc import Iterable
from typing import Any, NamedTuple

from .errors import StoreUnavailable
from .points import Point, safe_info
from .registry import load_driver
from .uri import URL, scrub_secrets

__all__ = ["Dispatcher", "SpanLabels"]

log = logging.getLogger(__name__)

_instances: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


class SpanLabels(NamedTuple):
    """The process labels of a point. The profiler queues a point as the flat tuple
    ``(labels, base_id, trace_id, parent_id, event, name, timestamp, error, info)``, with
    ``labels`` an instance of this class, and :meth:`Dispatcher._take` builds the dict."""

    service: str
    project: str
    host: str


# Failures that mean "the store cannot be reached": keep the batch, retry forever.
_UNAVAILABLE = (StoreUnavailable, OSError)


def _safe_error(exc: BaseException, secrets: Iterable[str]) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails
        text = f"{type(exc).__name__}: <unprintable>"
    # The driver may have quoted its URL (password, api_key, a nested store's password),
    # decoded or percent-encoded.
    return scrub_secrets(text, secrets)[:500]


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
        max_attempts: int = 3,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or flush_interval <= 0 or max_attempts < 1:
            raise ValueError(
                "max_queue, batch_size and max_attempts must be >= 1, flush_interval > 0"
            )
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
        self._secrets: tuple[str, ...] = self._url.secrets() if isinstance(self._url, URL) else ()
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_backoff_max = retry_backoff_max
        self.log_interval = log_interval
        self.exit_timeout = exit_timeout
        self.max_attempts = max_attempts
        self._init_state()
        _instances.add(self)

    def _init_state(self) -> None:
        # Point dicts and the profiler's flat tuples. The same deque object for the
        # dispatcher's whole life (emptied after fork): the profiler keeps a reference to it.
        q: deque[Any] | None = getattr(self, "_queue", None)
        if q is None:
            q = deque()
        else:
            q.clear()
        self._queue: deque[Any] = q
        # The batch being delivered, as parts: one list normally, halves of halves while a
        # refused batch is split. Kept across failures; ``_held`` counts the points in it.
        self._parts: deque[list[Point]] = deque()
        self._held = 0
        self._splitting = False  # the parts come from splitting a refused batch
        self._attempts = 0  # refused (not unreachable) attempts of the front part
        self._wake = threading.Event()
        self._idle = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self.delivered = 0
        self.dropped = 0
        self.rejected = 0
        self._drop_lock = threading.Lock()
        self.failed_batches = 0
        self.retries = 0
        self.last_error: str | None = None
        self._last_drop_log = 0.0
        self._dropped_logged = 0
        self._last_reject_log = 0.0
        self._rejected_logged = 0
        self._last_reject: str = ""  # which point, and why
        self._last_refuse_log = 0.0
        self._failing = False  # the store cannot be reached
        self._refusing = False  # the store refuses the front part
        # put() appends without further checks while len(queue) < _gate; at the gate it takes
        # the slow path (start the thread, wake it for a full batch, or drop at the bound).
        self._gate = 0

    def _regate(self) -> None:
        if self._closed or self._thread is None:
            self._gate = 0
            return
        room = self.max_queue - self._held
        if self._failing or self._refusing:
            self._gate = max(0, room)
        else:
            self._gate = max(0, min(room, self.batch_size - 1))

    # -- hot path -----------------------------------------------------------------------------
    def put(self, point: Point) -> None:
        """Queue one point. Never blocks, never raises.

        (``profiler.start``/``stop`` inline these lines: keep them in step.)
        """
        q = self._queue
        n = len(q)
        if n < self._gate:
            q.append(point)
            return
        self._put_slow(point, n)

    def _put_slow(self, point: Any, n: int) -> None:
        # The batch being delivered counts against the bound too: while the store is down at
        # most max_queue points are held in all.
        if self._closed or n + self._held >= self.max_queue:
            with self._drop_lock:  # only on this rare path; += alone loses counts in threads
                self.dropped += 1
            return
        self._queue.append(point)
        if self._thread is None:
            self._start_thread()
        if n + 1 >= self.batch_size and not (self._failing or self._refusing):
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
                self._regate()
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
            self._wake.set()  # one attempt now, even while the store is failing
            while self._queue or self._held:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(0.05 if remaining is None else min(0.05, remaining))
                # While the store fails, the thread keeps its backoff: waking it after every
                # attempt would hammer the store (and burn a core) for the whole timeout.
                if not (self._failing or self._refusing):
                    self._wake.set()
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self._queue) + self._held,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "rejected": self.rejected,
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
        self._gate = 0
        self._wake.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        lost = len(self._queue) + self._held
        if lost:
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
            self._close_driver(timeout)

    def _close_driver(self, timeout: float) -> None:
        """Close the driver, waiting at most ``timeout``: a driver stuck in notify() may hold
        the lock its close() needs, and the process must still be able to exit."""
        driver = self._driver

        def run() -> None:
            try:
                driver.close()
            except Exception:  # noqa: BLE001
                log.debug("xprofiler: driver close failed", exc_info=True)

        closer = threading.Thread(target=run, name="xprofiler-close", daemon=True)
        try:
            closer.start()
        except RuntimeError:  # no new threads (interpreter finalizing): close inline
            run()
            return
        closer.join(max(timeout, 0.1))
        if closer.is_alive():
            log.warning(
                "xprofiler: the trace store %s did not close within %.1f s (still busy "
                "delivering?); leaving it",
                self._url,
                timeout,
            )

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
                self._log_rejects()
            except Exception:  # noqa: BLE001 - this thread must outlive any surprise
                log.exception("xprofiler: unexpected error in the dispatcher thread")
                backoff = self.retry_backoff_max
            with self._idle:
                self._idle.notify_all()
            if self._closed and (not self._queue or self._failing or self._refusing):
                return

    def _next_backoff(self, backoff: float) -> float:
        return min(self.retry_backoff_max, max(0.05, backoff * 2 or 0.1))

    def _deliver(self, backoff: float) -> float:
        """Send batches until the queue is empty or the store fails; returns the next wait."""
        parts = self._parts
        while True:
            if not parts:
                self._splitting = False
                self._attempts = 0
                batch = self._take()
                if not batch:
                    return 0.0
                parts.append(batch)
            elif not self._splitting and self._attempts == 0:
                # Top up a batch kept while the store was unreachable so it does not stay
                # small forever.
                room = self.batch_size - len(parts[0])
                if room > 0:
                    parts[0].extend(self._take(room))
            part = parts[0]
            try:
                self._get_driver().notify(part)
            except Exception as exc:  # noqa: BLE001 - counted, logged, retried or split
                self.failed_batches += 1
                self.last_error = _safe_error(exc, self._secrets)
                if isinstance(exc, _UNAVAILABLE):
                    return self._unreachable(backoff)
                backoff = self._refused(part, backoff)
                if backoff:
                    return backoff
                continue
            if self._failing:
                log.warning("xprofiler: the trace store %s is back", self._url)
            parts.popleft()
            self._failing = self._refusing = False
            self._attempts = 0
            backoff = 0.0
            self.delivered += len(part)
            self._held -= len(part)
            self._regate()

    def _unreachable(self, backoff: float) -> float:
        if not self._failing:
            log.warning(
                "xprofiler: the trace store %s failed (%s); keeping up to %d points and retrying",
                self._url,
                self.last_error,
                self.max_queue,
            )
        self._failing = True
        self._attempts = 0  # unreachable attempts do not count towards refusing a point
        self.retries += 1
        self._regate()
        return self._next_backoff(backoff)

    def _refused(self, part: list[Point], backoff: float) -> float:
        """The store refused the front part for its content: the wait before retrying it, or
        0.0 once it was split (halves first) or, a single point, rejected."""
        self._attempts += 1
        # A batch taken from the queue gets max_attempts tries; a part split from it gets one
        # before it is split again; a single point gets max_attempts before it is rejected.
        allowed = self.max_attempts if (len(part) == 1 or not self._splitting) else 1
        if self._attempts < allowed:
            now = time.monotonic()
            if not self._refusing and (
                not self._last_refuse_log or now - self._last_refuse_log >= self.log_interval
            ):
                self._last_refuse_log = now
                log.warning(
                    "xprofiler: the trace store %s refused %d points (%s); retrying, then "
                    "splitting the batch to find the points it refuses",
                    self._url,
                    len(part),
                    self.last_error,
                )
            self._refusing = True
            self.retries += 1
            self._regate()
            return self._next_backoff(backoff)
        self._attempts = 0
        parts = self._parts
        parts.popleft()
        if len(part) > 1:
            mid = len(part) // 2
            parts.appendleft(part[mid:])
            parts.appendleft(part[:mid])
            self._splitting = True
        else:
            self._held -= 1
            self.rejected += 1
            self._last_reject = f"{_describe(part[0])} ({self.last_error})"
            self._log_rejects()
        self._regate()
        return 0.0

    def _take(self, n: int | None = None) -> list[Point]:
        q = self._queue
        k = min(self.batch_size if n is None else n, len(q))
        if k <= 0:
            return []
        # Counted as held before they leave the queue, so put()'s bound never misses them.
        self._held += k
        self._regate()
        out: list[Point] = []
        pop = q.popleft
        bad = 0
        for _ in range(k):
            try:
                p = pop()
            except IndexError:  # cannot happen (only this thread takes); be safe
                bad += 1
                continue
            try:
                if type(p) is tuple:
                    labels, base, tid, parent, event, name, ts, error, info = p
                    if type(labels) is not SpanLabels:
                        raise TypeError("not a point")
                    p = {
                        "id": f"{tid}-{event}",
                        "base_id": base,
                        "trace_id": tid,
                        "parent_id": parent,
                        "event": event,
                        "name": name,
                        "timestamp": ts,
                        "service": labels.service,
                        "project": labels.project,
                        "host": labels.host,
                        "error": error,
                        # Off the hot path: make user-supplied info JSON-safe and bounded, so
                        # one odd or huge object cannot make a whole batch fail.
                        "info": safe_info(info) if info else {},
                    }
                else:
                    p["info"] = safe_info(p["info"])
            except Exception:  # noqa: BLE001 - not a point at all: count it, go on
                bad += 1
                continue
            out.append(p)
        if bad:
            self._held -= bad
            with self._drop_lock:
                self.dropped += bad
            self._regate()
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

    def _log_rejects(self) -> None:
        if self.rejected > self._rejected_logged:
            now = time.monotonic()
            if now - self._last_reject_log >= self.log_interval or self._rejected_logged == 0:
                log.warning(
                    "xprofiler: the trace store %s refused %d trace points so far, each after "
                    "%d attempts, and they were dropped; the last one: %s",
                    self._url,
                    self.rejected,
                    self.max_attempts,
                    self._last_reject,
                )
                self._last_reject_log = now
                self._rejected_logged = self.rejected


def _describe(point: Any) -> str:
    try:
        return f"point {point.get('id')!r:.140} of trace {point.get('base_id')!r:.140}"
    except Exception:  # noqa: BLE001 - a driver may hand back anything
        return "a point"


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
