"""The driver protocol every storage backend implements.

A driver class is registered under the ``xprofiler.drivers`` entry point group, one entry per
URL scheme, and constructed as ``DriverClass(url)`` with a parsed :class:`~xprofiler.core.uri.URL`.
Construction must be cheap and must not contact the server; connect lazily on first use.

Contract (the conformance suite in :mod:`xprofiler.core.testing` checks it):

* ``notify(points)`` stores a batch. It is idempotent: a point delivered twice (same ``id``) is
  stored once. It must time out rather than hang (bounded by the driver's timeouts). On failure
  it raises, and what it raises matters:

  - :class:`~xprofiler.core.errors.StoreUnavailable` (or an ``OSError``) when the store cannot
    be reached or cannot take writes right now (down, refused, timed out, locked, full): the
    dispatcher keeps the batch and retries with backoff, up to its queue bound;
  - anything else when the store refused the *content*: the dispatcher retries a few times,
    then splits the batch to find the points it refuses, stores the rest, and rejects those
    points (dropped, counted in ``stats()["rejected"]``, logged).
* ``get_report(base_id)`` returns all points of one trace, each exactly as given, in any order;
  an empty list for an unknown trace.
* ``list_traces(filters)`` / ``list_error_traces(filters)`` return :class:`TraceSummary` rows
  with the semantics of :class:`TraceFilter` (newest first, paged).
* ``close()`` releases connections; calling it twice is harmless.
* Errors reaching the caller (CLI, web) are :class:`~xprofiler.core.errors.DriverError`
  subclasses where the driver can tell (``StoreUnavailable`` for a down server), and never
  contain the password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

from .points import Point, TraceFilter, TraceSummary
from .uri import URL

__all__ = ["Driver", "BaseDriver"]


@runtime_checkable
class Driver(Protocol):
    url: URL

    def notify(self, points: Sequence[Point]) -> None: ...

    def get_report(self, base_id: str) -> list[Point]: ...

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]: ...

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]: ...

    def close(self) -> None: ...


class BaseDriver:
    """Convenience base: stores the URL, implements list_error_traces via list_traces."""

    def __init__(self, url: URL) -> None:
        self.url = url

    def notify(self, points: Sequence[Point]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_report(self, base_id: str) -> list[Point]:  # pragma: no cover - abstract
        raise NotImplementedError

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        raise NotImplementedError  # pragma: no cover - abstract

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return self.list_traces(replace(filters or TraceFilter(), errors=True))

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.url)!r})"
