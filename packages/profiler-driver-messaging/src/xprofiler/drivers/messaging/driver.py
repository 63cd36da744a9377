"""``redis://`` / ``rediss://``: publish trace points to a Redis stream; read from the store.

Writing (``notify``) appends the batch to the stream with pipelined XADDs and, when ``maxlen``
is set, one approximate ``XTRIM MAXLEN ~`` whose reply is the number of entries cut: collectors
trim what they acknowledged, so whatever the bound cuts was never stored. It is counted (in
``<stream>:stats``, field ``trimmed_entries``, and in :meth:`MessagingDriver.stats`) and logged.

Reading (``get_report``, ``list_traces``...) goes to the store named by the ``store`` option,
so the CLI and the web viewer work with the very connection string the services use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from xprofiler.core.errors import DriverError
from xprofiler.core.points import Point, TraceFilter, TraceSummary
from xprofiler.core.protocol import BaseDriver
from xprofiler.core.registry import load_driver
from xprofiler.core.uri import URL

from .bus import bus_error, bus_status, clean_text, connect
from .codec import encode
from .config import BusConfig, masked_url, parse_bus_url

__all__ = ["MessagingDriver"]

log = logging.getLogger(__name__)

_TRIM_LOG_INTERVAL = 60.0


class MessagingDriver(BaseDriver):
    """The producer side of the bus, and a reader through the bus's store."""

    def __init__(self, url: URL) -> None:
        cfg = parse_bus_url(url)
        # The store URI in the options may hold the store's password: core masks only ours.
        super().__init__(masked_url(cfg.url))
        self.config: BusConfig = cfg
        self._client: redis.Redis | None = None
        self._store: Any = None
        self._lock = threading.Lock()
        self.sent_entries = 0
        self.sent_points = 0
        self.trimmed_entries = 0
        self._last_trim_log = 0.0

    # -- writing ------------------------------------------------------------------------------
    def _redis(self) -> redis.Redis:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = connect(self.config)
        return self._client

    def notify(self, points: Sequence[Point]) -> None:
        if not points:
            return
        cfg = self.config
        entries = encode(points, cfg.entry_size)
        try:
            pipe = self._redis().pipeline(transaction=False)
            for fields in entries:
                pipe.xadd(cfg.stream, fields)  # type: ignore[arg-type]
            if cfg.maxlen:
                pipe.xtrim(cfg.stream, maxlen=cfg.maxlen, approximate=True)
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise bus_error(cfg, "publish trace points", exc) from None
        self.sent_entries += len(entries)
        self.sent_points += len(points)
        if cfg.maxlen and replies[-1]:
            self._count_trim(int(replies[-1]))

    def _count_trim(self, cut: int) -> None:
        self.trimmed_entries += cut
        try:
            self._redis().hincrby(self.config.stats_key, "trimmed_entries", cut)
        except redis.RedisError as exc:
            log.debug("xprofiler bus: cannot count trimmed entries: %s", type(exc).__name__)
        now = time.monotonic()
        if now - self._last_trim_log >= _TRIM_LOG_INTERVAL or not self._last_trim_log:
            self._last_trim_log = now
            log.warning(
                "xprofiler bus %s: the backlog passed maxlen=%d entries, %d entries (up to %d "
                "points each) cut before a collector stored them (%d so far from this process); "
                "start more collectors (profiler collect) or raise maxlen",
                self.config.where,
                self.config.maxlen,
                cut,
                self.config.entry_size,
                self.trimmed_entries,
            )

    # -- reading, through the store -----------------------------------------------------------
    def store(self) -> Any:
        """The store driver named by ``?store=`` (built on first use)."""
        if self._store is None:
            if self.config.store is None:
                raise DriverError(
                    f"the bus {self.config.where} holds trace points only until collectors "
                    "store them; reading traces needs the store: add ?store=<store URI, "
                    "percent-encoded> to the connection string, e.g. "
                    "redis://host:6379/0?store=sqlite%3A%2F%2F%2Ftraces.db"
                )
            with self._lock:
                if self._store is None:
                    self._store = load_driver(self.config.store)
        return self._store

    def get_report(self, base_id: str) -> list[Point]:
        return list(self.store().get_report(base_id))

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return list(self.store().list_traces(filters))

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return list(self.store().list_error_traces(filters))

    # -- monitoring ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The bus's state and the collectors' counters (shown by the web viewer's /api/stats)."""
        try:
            out: dict[str, Any] = bus_status(self._redis(), self.config, now=time.time())
        except redis.RedisError as exc:
            raise bus_error(self.config, "read the bus's counters", exc) from None
        out["producer"] = {
            "entries": self.sent_entries,
            "points": self.sent_points,
            "trimmed_entries": self.trimmed_entries,
        }
        store_stats = getattr(self._store, "stats", None)
        if callable(store_stats):
            try:
                out["store"] = store_stats()
            except Exception as exc:  # noqa: BLE001 - the store's counters are optional
                out["store"] = {"error": clean_text(type(exc).__name__, self.config)}
        return out

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            store, self._store = self._store, None
        if client is not None:
            try:
                client.close()
            except redis.RedisError:
                pass
        if store is not None:
            store.close()
