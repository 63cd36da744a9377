"""The Elasticsearch driver: bulk writes into daily indices, aggregation-based listing.

Write path: ``notify`` sends ``create`` actions through the bulk API with the point's id as
document id, into the index of the point's own day. ``409`` (already there) counts as stored,
so re-delivery never duplicates. Items refused with a retryable status (429, 502, 503, 504) are
sent again (bounded); if some still fail, ``notify`` raises :class:`StoreUnavailable` so the
dispatcher keeps the batch (the items already stored come back as ``409``). Items refused for
good (mapping errors, write blocks) are counted in :meth:`stats` and logged, never retried.

Read path: reads refresh the store's indices first (read-your-writes without slowing the bulk
path with ``refresh=wait_for``), then ``get_report`` pages with ``search_after`` (and a
point-in-time once a trace needs more than one page), and ``list_traces`` uses the walk in
:mod:`.listing`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import elasticsearch
from elasticsearch import Elasticsearch
from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import Point, TraceFilter, TraceSummary
from xprofiler.core.protocol import BaseDriver
from xprofiler.core.uri import URL

from .listing import TraceLister
from .schema import (
    IndexNamer,
    PointRejected,
    from_document,
    period_bounds,
    read_pattern,
    template_body,
    template_name,
    to_document,
)
from .settings import Settings, parse_settings

__all__ = ["ElasticsearchDriver", "PermissionDenied"]

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
_PAGE = 5000  # hits per get_report page (the default result window is 10,000)
_PIT_KEEP_ALIVE = "2m"
_HITS_ONLY = ["hits.hits._source", "hits.hits.sort", "pit_id"]
_BACKOFF_START = 0.2
_BACKOFF_MAX = 2.0
_DELETE_BATCH = 20  # index names per delete request (keeps the URL short)
_LOG_REFUSED = 10  # refused items logged one by one per bulk request; the rest are summed up


class PermissionDenied(DriverError):
    """The server knows the user but denies the action (403): a missing privilege."""


class ElasticsearchDriver(BaseDriver):
    """``elasticsearch://`` and ``elasticsearch+https://`` connection strings."""

    def __init__(self, url: URL) -> None:
        self.settings: Settings = parse_settings(url)
        super().__init__(url)  # its str/repr mask the password and the api_key option
        self._client: Elasticsearch | None = None
        self._lock = threading.Lock()
        self._template_ready = False
        self._refresh_denied = False
        self._closed = False
        self._pattern = read_pattern(self.settings.prefix)
        self._counts = {
            "stored": 0,
            "duplicates": 0,
            "rejected": 0,
            "retried": 0,
            "bulk_requests": 0,
        }
        self._counts_lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self.settings.prefix

    def stats(self) -> dict[str, int]:
        """Counters since construction: points ``stored``, ``duplicates`` (already there),
        ``rejected`` (refused for good: bad point, mapping error, write block), ``retried``
        (items sent again after a retryable refusal), ``bulk_requests``."""
        with self._counts_lock:
            return dict(self._counts)

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for key, value in deltas.items():
                self._counts[key] += value

    def client(self) -> Elasticsearch:
        """The underlying client, created on first use (construction never connects)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> Elasticsearch:
        s = self.settings
        kwargs: dict[str, Any] = {
            "hosts": [{"scheme": s.scheme, "host": h, "port": p} for h, p in s.hosts],
            "request_timeout": s.timeout,
            "max_retries": s.max_retries,
            "retry_on_timeout": True,  # every write is idempotent (create with an id)
            "retry_on_status": tuple(sorted(RETRYABLE_STATUSES - {429})),
            # A node that failed is retried after 1s, 2s, ... at most 10s (default 30s).
            "max_dead_node_backoff": 10.0,
        }
        if s.api_key is not None:
            kwargs["api_key"] = s.api_key
        elif s.username is not None:
            kwargs["basic_auth"] = (s.username, s.password or "")
        kwargs.update(s.tls)
        try:
            return Elasticsearch(**kwargs)
        except (ValueError, TypeError) as exc:
            raise DriverError(
                f"cannot set up the Elasticsearch client for {s.where}: {self._scrub(str(exc))}"
            ) from None

    def _scrub(self, text: str) -> str:
        for secret in self.settings.secrets:
            text = text.replace(secret, "***")
        return text[:1000]

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn client exceptions into DriverError/StoreUnavailable; never leak a secret."""
        where = self.settings.where
        try:
            yield
        except elasticsearch.SSLError as exc:
            raise StoreUnavailable(
                f"cannot {action}: the TLS handshake with Elasticsearch at {where} failed "
                f"({self._scrub(str(exc))[:300]}); check ca_certs / ssl_assert_fingerprint / "
                f"verify_certs in the connection string"
            ) from None
        except (elasticsearch.ConnectionError, elasticsearch.ConnectionTimeout) as exc:
            raise StoreUnavailable(
                f"cannot {action}: Elasticsearch at {where} did not answer "
                f"({type(exc).__name__}); check that it runs and that the connection string's "
                f"hosts and scheme (elasticsearch:// is HTTP, elasticsearch+https:// is TLS) "
                f"are right"
            ) from None
        except elasticsearch.AuthenticationException:
            raise DriverError(
                f"cannot {action}: Elasticsearch at {where} refused the credentials (401); "
                f"check the user name and password or the api_key option"
            ) from None
        except elasticsearch.AuthorizationException as exc:
            raise PermissionDenied(
                f"cannot {action}: Elasticsearch at {where} denied it (403: "
                f"{self._scrub(_reason(exc))}); give the user the privileges listed in the "
                f"driver's README for indices {self._pattern}"
            ) from None
        except elasticsearch.ApiError as exc:
            status = _status(exc)
            cls = StoreUnavailable if status in RETRYABLE_STATUSES else DriverError
            raise cls(
                f"cannot {action}: Elasticsearch at {where} answered {status} "
                f"({self._scrub(_reason(exc))})"
            ) from None
        except elasticsearch.SerializationError as exc:
            raise DriverError(
                f"cannot {action}: a request or answer could not be (de)serialized "
                f"({self._scrub(str(exc))[:300]})"
            ) from None
        except elasticsearch.TransportError as exc:
            raise StoreUnavailable(
                f"cannot {action}: transport error talking to Elasticsearch at {where} "
                f"({type(exc).__name__}: {self._scrub(str(exc))[:300]})"
            ) from None

    # -- set-up -------------------------------------------------------------------------------
    def ensure_template(self) -> None:
        """Install (or update) the index template; done once per driver, on first write."""
        if self._template_ready:
            return
        s = self.settings
        body = template_body(s.prefix, s.shards, s.replicas)
        try:
            with self._errors("install the index template"):
                self.client().indices.put_index_template(
                    name=template_name(s.prefix),
                    index_patterns=body["index_patterns"],
                    priority=body["priority"],
                    template=body["template"],
                    meta=body["_meta"],
                )
        except PermissionDenied as exc:
            # A writer without manage_index_templates: an administrator may have installed the
            # template (README: "Privileges"); writing goes on, warned once.
            log.warning(
                "xprofiler: %s; assuming the template %s was installed by an administrator",
                exc,
                template_name(s.prefix),
            )
        self._template_ready = True

    # -- writes -------------------------------------------------------------------------------
    def notify(self, points: Sequence[Point]) -> None:
        if not points:
            return
        namer = IndexNamer(self.settings.prefix, self.settings.period)
        ops: list[tuple[str, str, dict[str, Any]]] = []
        bad = 0
        first_reason = ""
        for p in points:
            try:
                ops.append(to_document(p, namer))
            except PointRejected as exc:
                bad += 1
                if bad == 1:
                    first_reason = str(exc)
        if bad:
            self._count(rejected=bad)
            log.warning(
                "xprofiler: %d trace point(s) cannot be stored in %s and are dropped (first: %s)",
                bad,
                self.settings.where,
                first_reason,
            )
        if not ops:
            return
        self.ensure_template()
        size = self.settings.bulk_size
        for i in range(0, len(ops), size):
            self._bulk(ops[i : i + size])

    def _bulk(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Send items; retry retryable refusals a bounded number of times, count the rest."""
        todo = items
        attempt = 0
        while True:
            body: list[dict[str, Any]] = []
            for index, pid, doc in todo:
                body.append({"create": {"_index": index, "_id": pid}})
                body.append(doc)
            resp = self._send(body)
            if resp is None:
                if len(todo) == 1:
                    # One document the server cannot take at all (e.g. unparsable).
                    self._reject(todo[0], 400, "document_refused", "the bulk request was refused")
                    return
                # The whole request was refused (too large, unparsable line): split it, so
                # that one bad document cannot hold back the others forever.
                half = len(todo) // 2
                self._bulk(todo[:half])
                self._bulk(todo[half:])
                return
            self._count(bulk_requests=1)
            retry: list[tuple[str, str, dict[str, Any]]] = []
            last_reason = ""
            stored = duplicates = refused = 0
            for item, result in zip(todo, resp["items"], strict=True):
                r = result.get("create") or next(iter(result.values()))
                status = int(r.get("status", 0))
                if 200 <= status < 300:
                    stored += 1
                elif status == 409:
                    duplicates += 1
                elif status in RETRYABLE_STATUSES:
                    retry.append(item)
                    last_reason = _item_reason(r)
                else:
                    refused += 1
                    self._reject(item, status, *_item_error(r), log_it=refused <= _LOG_REFUSED)
            self._count(stored=stored, duplicates=duplicates)
            if refused > _LOG_REFUSED:
                log.warning(
                    "xprofiler: ... and %d more trace point(s) of the same bulk request refused "
                    "for good by Elasticsearch at %s",
                    refused - _LOG_REFUSED,
                    self.settings.where,
                )
            if not retry:
                return
            attempt += 1
            if attempt > self.settings.max_retries:
                raise StoreUnavailable(
                    f"Elasticsearch at {self.settings.where} refused {len(retry)} trace "
                    f"point(s) temporarily ({self._scrub(last_reason)}) after {attempt} tries; "
                    f"they will be sent again (points already stored are not duplicated)"
                )
            self._count(retried=len(retry))
            log.info(
                "xprofiler: Elasticsearch refused %d point(s) temporarily (%s); retry %d of %d",
                len(retry),
                self._scrub(last_reason),
                attempt,
                self.settings.max_retries,
            )
            time.sleep(min(_BACKOFF_MAX, _BACKOFF_START * 2 ** (attempt - 1)))
            todo = retry

    def _send(self, body: list[dict[str, Any]]) -> dict[str, Any] | None:
        """One bulk request; None when the request as a whole was refused as bad (400, 413 or
        not serializable), so the caller splits it."""
        with self._errors("store trace points"):
            try:
                return dict(self.client().bulk(operations=body))
            except elasticsearch.SerializationError:
                return None
            except elasticsearch.ApiError as exc:
                if _status(exc) in (400, 413):
                    return None
                raise

    def _reject(
        self,
        item: tuple[str, str, dict[str, Any]],
        status: int,
        etype: str,
        why: str,
        *,
        log_it: bool = True,
    ) -> None:
        index, pid, _ = item
        self._count(rejected=1)
        if not log_it:
            return
        log.warning(
            "xprofiler: Elasticsearch at %s refused trace point %r for index %s for good "
            "(status %s, %s: %s); it is dropped",
            self.settings.where,
            pid,
            index,
            status or "-",
            etype,
            self._scrub(why)[:300],
        )

    # -- reads --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Make everything written so far searchable (reads call this first)."""
        if not self.settings.refresh_on_read or self._refresh_denied:
            return
        try:
            with self._errors("refresh the trace indices"):
                self._reader().indices.refresh(
                    index=self._pattern, ignore_unavailable=True, allow_no_indices=True
                )
        except PermissionDenied as exc:
            # A reader without the maintenance privilege sees points once the server's own
            # refresh (1s by default) has run; warned once, then reads go on without refreshing.
            self._refresh_denied = True
            log.warning("xprofiler: %s; reading without refreshing first", exc)

    def _reader(self) -> Elasticsearch:
        return self.client().options(request_timeout=self.settings.read_timeout)

    def get_report(self, base_id: str) -> list[Point]:
        self.refresh()
        query = {"term": {"base_id": base_id}}
        sort: list[Any] = [
            {"timestamp": {"order": "asc", "unmapped_type": "long"}},
            {"id": {"order": "asc", "unmapped_type": "keyword"}},
        ]
        with self._errors("read a trace"):
            resp = self._reader().search(
                index=self._pattern,
                query=query,
                sort=sort,
                size=_PAGE,
                track_total_hits=False,
                ignore_unavailable=True,
                allow_no_indices=True,
                filter_path=_HITS_ONLY,
            )
        hits = resp.get("hits", {}).get("hits", [])
        points: list[Point] = [from_document(h["_source"]) for h in hits]  # type: ignore[misc]
        if len(hits) < _PAGE:
            return points
        # A large trace: page on through a point-in-time (a consistent view) with search_after
        # on (timestamp, id), a total order, so no point is skipped or seen twice.
        with self._errors("read a large trace"):
            pit = self._reader().open_point_in_time(
                index=self._pattern, keep_alive=_PIT_KEEP_ALIVE, ignore_unavailable=True
            )["id"]
        try:
            after = hits[-1]["sort"][:2]
            while True:
                with self._errors("read a large trace"):
                    resp = self._reader().search(
                        pit={"id": pit, "keep_alive": _PIT_KEEP_ALIVE},
                        query=query,
                        sort=sort,
                        size=_PAGE,
                        search_after=after,
                        track_total_hits=False,
                        filter_path=_HITS_ONLY,
                    )
                pit = resp.get("pit_id", pit)
                hits = resp.get("hits", {}).get("hits", [])
                points.extend(from_document(h["_source"]) for h in hits)  # type: ignore[misc]
                if len(hits) < _PAGE:
                    return points
                after = hits[-1]["sort"][:2]
        finally:
            try:
                self._reader().close_point_in_time(id=pit)
            except Exception:  # noqa: BLE001 - it expires by itself
                log.debug("xprofiler: closing a point-in-time failed", exc_info=True)

    def _search_all(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._errors("list traces"):
            resp = self._reader().search(
                index=self._pattern, ignore_unavailable=True, allow_no_indices=True, **body
            )
        return dict(resp)

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        f = filters or TraceFilter()
        self.refresh()
        return TraceLister(self._search_all).run(f)

    def list_error_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        return self.list_traces(replace(filters or TraceFilter(), errors=True))

    # -- maintenance --------------------------------------------------------------------------
    def indices(self) -> list[str]:
        """Names of this store's time-based indices (open or closed), oldest first."""
        with self._errors("list the trace indices"):
            resp = self._reader().indices.resolve_index(
                name=self._pattern, expand_wildcards=["open", "closed"]
            )
        names = [i["name"] for i in resp.get("indices", [])]
        return sorted(n for n in names if period_bounds(self.settings.prefix, n) is not None)

    def apply_retention(self, days: int | None = None, *, now: datetime | None = None) -> list[str]:
        """Delete this store's indices whose whole period ended more than ``days`` days ago.

        ``days`` defaults to the ``retention_days`` option. Returns the deleted index names.
        Only indices named ``<prefix>-YYYY.MM.DD`` / ``<prefix>-YYYY.MM`` are considered.
        """
        if days is None:
            days = self.settings.retention_days
        if days is None:
            raise DriverError(
                f"no retention period for {self.settings.where}: pass days, or add "
                f"?retention_days=N to the connection string"
            )
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise DriverError(f"retention days must be a whole number >= 1, got {days!r}")
        now = now or datetime.now(timezone.utc)
        cutoff = now - timedelta(days=days)
        old = []
        for name in self.indices():
            bounds = period_bounds(self.settings.prefix, name)
            if bounds is not None and bounds[1] <= cutoff:
                old.append(name)
        for i in range(0, len(old), _DELETE_BATCH):
            batch = old[i : i + _DELETE_BATCH]
            with self._errors("delete old trace indices"):
                self._reader().indices.delete(
                    index=",".join(batch), ignore_unavailable=True, allow_no_indices=True
                )
            log.info("xprofiler: retention (%d days) deleted %s", days, ", ".join(batch))
        return old

    def maintenance(self) -> dict[str, Any]:
        """What ``profiler maintenance`` runs: retention, when ``retention_days`` is set."""
        if self.settings.retention_days is None:
            return {"retention_days": None, "deleted_indices": []}
        deleted = self.apply_retention()
        return {"retention_days": self.settings.retention_days, "deleted_indices": deleted}

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                log.debug("xprofiler: closing the Elasticsearch client failed", exc_info=True)


def _status(exc: Exception) -> int:
    meta = getattr(exc, "meta", None)
    return int(getattr(meta, "status", 0) or getattr(exc, "status_code", 0) or 0)


def _reason(exc: Exception) -> str:
    info = getattr(exc, "info", None) or getattr(exc, "body", None)
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict):
            return f"{err.get('type', 'error')}: {err.get('reason', '')}"[:300]
        if isinstance(err, str):
            return err[:300]
    return str(getattr(exc, "message", "") or type(exc).__name__)[:300]


def _item_error(r: dict[str, Any]) -> tuple[str, str]:
    err = r.get("error")
    if isinstance(err, dict):
        return str(err.get("type", "error")), str(err.get("reason", ""))
    return "error", str(err or "")


def _item_reason(r: dict[str, Any]) -> str:
    etype, why = _item_error(r)
    return f"status {r.get('status')}, {etype}: {why}"[:300]
