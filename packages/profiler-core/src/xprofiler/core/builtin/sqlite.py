"""``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``: the embedded default store.

Three slashes then a relative path, four for an absolute one (as SQLAlchemy reads them); ``~``
is expanded. Options: ``timeout`` (lock wait, default 5s).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import DriverError, StoreUnavailable
from ..points import POINT_KEYS, Point, TraceFilter, TraceSummary
from ..protocol import BaseDriver
from ..uri import URL

__all__ = ["SQLiteDriver", "default_path"]

# The table's columns are the point's keys, in POINT_KEYS order; all but the last two are
# stored as they are, error as 0/1 and info as JSON text.
_AS_IS = POINT_KEYS[:-2]
assert POINT_KEYS[-2:] == ("error", "info")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id TEXT PRIMARY KEY,
    base_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    event TEXT NOT NULL,
    name TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    service TEXT NOT NULL,
    project TEXT NOT NULL,
    host TEXT NOT NULL,
    error INTEGER NOT NULL,
    info TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS points_base_id ON points (base_id, timestamp);
CREATE INDEX IF NOT EXISTS points_timestamp ON points (timestamp);
"""


def default_path() -> Path:
    """The per-user data file used when no connection string is given."""
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return Path(base) / "xprofiler" / "traces.sqlite3"


class SQLiteDriver(BaseDriver):
    def __init__(self, url: URL) -> None:
        super().__init__(url)
        if url.hosts:
            raise DriverError(
                "sqlite connection strings have no host: write sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        if not url.database:
            raise DriverError(
                "sqlite connection string needs a file path, e.g. sqlite:///traces.db"
            )
        self.path = Path(os.path.expanduser(url.database))
        self._timeout = url.get_duration("timeout", 5.0) or 5.0
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    str(self.path), timeout=self._timeout, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"cannot open the sqlite store {self.path}: {exc}") from exc
            self._conn = conn
        return self._conn

    def notify(self, points: Sequence[Point]) -> None:
        rows = [
            (
                *(p[k] for k in _AS_IS),  # type: ignore[literal-required]
                int(bool(p["error"])),
                json.dumps(p["info"], separators=(",", ":")),
            )
            for p in points
        ]
        with self._lock:
            conn = self._connect()
            try:
                with conn:
                    conn.executemany(
                        "INSERT OR IGNORE INTO points VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows
                    )
            except sqlite3.OperationalError as exc:
                # Locked, disk full, I/O error, file gone: the store is unavailable for now,
                # not the points' fault, so the dispatcher must keep them and retry.
                raise StoreUnavailable(f"the sqlite store {self.path} failed: {exc}") from exc

    def _row_to_point(self, row: Sequence[Any]) -> Point:
        point: dict[str, Any] = dict(zip(_AS_IS, row, strict=False))
        point["error"] = bool(row[-2])
        point["info"] = json.loads(row[-1])
        return point  # type: ignore[return-value]

    def get_report(self, base_id: str) -> list[Point]:
        with self._lock:
            cur = self._connect().execute(
                "SELECT * FROM points WHERE base_id = ? ORDER BY timestamp", (base_id,)
            )
            return [self._row_to_point(r) for r in cur.fetchall()]

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        f = filters or TraceFilter()
        having: list[str] = []
        args: list[Any] = []
        if f.service is not None:
            having.append("SUM(service = ?) > 0")
            args.append(f.service)
        if f.name is not None:
            having.append("SUM(name = ?) > 0")
            args.append(f.name)
        if f.since is not None:
            having.append("MIN(timestamp) >= ?")
            args.append(f.since)
        if f.until is not None:
            having.append("MIN(timestamp) <= ?")
            args.append(f.until)
        if f.min_duration is not None:
            having.append("MAX(timestamp) - MIN(timestamp) >= ?")
            args.append(f.min_duration)
        if f.errors:
            having.append("MAX(error) = 1")
        # Only fixed clause text is joined here; every value goes through a placeholder.
        where = " HAVING " + " AND ".join(having) if having else ""
        sql = (
            "SELECT base_id, MIN(timestamp) AS start, MAX(timestamp), COUNT(DISTINCT trace_id), "  # noqa: S608
            "MAX(error) FROM points GROUP BY base_id"
            + where
            + " ORDER BY start DESC, base_id DESC LIMIT ? OFFSET ?"
        )
        args.extend([f.limit, f.offset])
        with self._lock:
            conn = self._connect()
            rows = conn.execute(sql, args).fetchall()
            out = []
            for base_id, start, end, spans, error in rows:
                first = conn.execute(
                    "SELECT name FROM points WHERE base_id = ? "
                    "ORDER BY timestamp, event != 'start' LIMIT 1",
                    (base_id,),
                ).fetchone()
                services = conn.execute(
                    "SELECT DISTINCT service FROM points WHERE base_id = ?", (base_id,)
                ).fetchall()
                out.append(
                    TraceSummary(
                        base_id=base_id,
                        start=start,
                        end=end,
                        span_count=spans,
                        services=tuple(sorted(s[0] for s in services)),
                        error=bool(error),
                        name=first[0] if first else "",
                    )
                )
            return out

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return self.list_traces(replace(filters or TraceFilter(), errors=True))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
