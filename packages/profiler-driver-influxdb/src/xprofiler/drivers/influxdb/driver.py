"""``influxdb://[user:password@]host[:port]/database[?options]``: trace points in InfluxDB 1.x.

``influxdb+https://`` talks HTTPS. See the package README for the options, the schema and its
cardinality trade-off. Every value that comes from a caller (trace ids, service and span names,
times) reaches InfluxQL as a bound parameter (the ``params`` form field of ``/query``, bound by
the server); query text is assembled only from fixed fragments, parameter names and identifiers
that were validated when the connection string was parsed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests

from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError
from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import Point, TraceFilter, TraceSummary
from xprofiler.core.protocol import BaseDriver
from xprofiler.core.uri import URL, URLError, parse_duration

from .lineproto import BadPoint, decode_tag, encode_tag, index_lines, point_line, row_to_points

__all__ = ["InfluxDBDriver", "Options", "parse_options"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8086
DEFAULT_DATABASE = "xprofiler"
DEFAULT_MEASUREMENT = "trace_points"
DEFAULT_RP_NAME = "xprofiler"
# InfluxDB's default [http] max-body-size is 25 MB; stay under it.
MAX_BODY_BYTES = 20_000_000
# Base ids per "base_id = $b0 OR ..." statement.
IDS_PER_STATEMENT = 200
# Above this many candidate traces, list_traces scans and intersects instead of OR-ing ids.
MAX_OR_CANDIDATES = 1_000

_PRECISIONS = {"ns": ("n", 1), "n": ("n", 1), "u": ("u", 1_000), "us": ("u", 1_000)}
_PRECISIONS.update({"ms": ("ms", 1_000_000), "s": ("s", 1_000_000_000)})
_IDENT_RE = re.compile(r"^[A-Za-z0-9_\-.]{1,200}$")
_GO_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DROPPED_RE = re.compile(r"dropped=(\d+)")

KNOWN_OPTIONS = (
    "precision",
    "retention",
    "rp",
    "measurement",
    "create_database",
    "timeout",
    "connect_timeout",
    "verify",
    "ca_certs",
    "max_scan",
)


@dataclass(frozen=True)
class Options:
    database: str
    measurement: str
    precision: str  # write precision parameter: n, u, ms, s
    divisor: int  # nanoseconds per precision unit
    rp: str | None  # retention policy written to and read from (None: the database default)
    retention: float | None  # seconds; 0.0 is INF; None: do not create or alter a policy
    create_database: bool
    timeout: float
    connect_timeout: float
    verify: bool | str
    max_scan: int


def _ident(value: str, what: str) -> str:
    if not _IDENT_RE.match(value):
        raise URLError(
            f"the {what} {value!r} may hold only letters, digits, '_', '-' and '.' "
            f"(at most 200 characters)"
        )
    return value


def parse_options(url: URL) -> Options:
    """Validate a connection string's parts and options; raises URLError naming the problem."""
    unknown = sorted({k for k, _ in url.query} - set(KNOWN_OPTIONS))
    if unknown:
        raise URLError(
            f"unknown option(s) for influxdb: {', '.join(unknown)}; "
            f"known options: {', '.join(KNOWN_OPTIONS)}"
        )
    if len(url.hosts) > 1:
        raise URLError(
            "influxdb connection strings take one host (InfluxDB 1.x OSS is a single server)"
        )
    database = _ident(url.database or DEFAULT_DATABASE, "database name")
    measurement = _ident(url.get("measurement") or DEFAULT_MEASUREMENT, "measurement")
    raw_precision = (url.get("precision") or "ns").lower()
    if raw_precision not in _PRECISIONS:
        raise URLError(
            f"option 'precision' must be one of ns, u, ms, s (got {raw_precision!r}); "
            f"ns (the default) keeps timestamps exact"
        )
    precision, divisor = _PRECISIONS[raw_precision]
    retention: float | None = None
    raw_retention = url.get("retention")
    if raw_retention is not None:
        if raw_retention.strip().lower() in ("inf", "infinite", "0"):
            retention = 0.0
        else:
            try:
                retention = parse_duration(raw_retention)
            except URLError as exc:
                raise URLError(f"option 'retention': {exc}") from None
            if retention < 3600:
                raise URLError(
                    "option 'retention' must be at least 1h (InfluxDB's minimum), or inf"
                )
    rp = url.get("rp")
    if rp is not None:
        rp = _ident(rp, "retention policy name (option 'rp')")
    elif retention is not None:
        rp = DEFAULT_RP_NAME
    timeout = url.get_duration("timeout", 5.0)
    connect_timeout = url.get_duration("connect_timeout", 2.0)
    assert timeout is not None and connect_timeout is not None
    if not 0 < timeout <= 300 or not 0 < connect_timeout <= 300:
        raise URLError("options 'timeout' and 'connect_timeout' must be between 0 and 300s")
    verify: bool | str = bool(url.get_bool("verify", True))
    ca_certs = url.get("ca_certs")
    if ca_certs:
        if url.scheme != "influxdb+https":
            raise URLError("option 'ca_certs' needs the influxdb+https:// scheme")
        verify = ca_certs
    max_scan = url.get_int("max_scan", 200_000)
    assert max_scan is not None
    if max_scan < 1:
        raise URLError("option 'max_scan' must be a positive integer")
    return Options(
        database=database,
        measurement=measurement,
        precision=precision,
        divisor=divisor,
        rp=rp,
        retention=retention,
        create_database=bool(url.get_bool("create_database", True)),
        timeout=timeout,
        connect_timeout=connect_timeout,
        verify=verify,
        max_scan=max_scan,
    )


def _go_duration_seconds(text: str) -> float:
    """Seconds in a duration as InfluxDB prints it (``168h0m0s``; ``0s`` is infinite)."""
    return sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION_RE.findall(text))


def _any_of(key: str, values: Sequence[str], prefix: str) -> tuple[str, dict[str, str]]:
    """``("key" = $p0 OR "key" = $p1 ...)`` with the values as bound parameters."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    clause = "(" + " OR ".join(f'"{key}" = ${n}' for n in names) + ")"
    return clause, dict(zip(names, values, strict=True))


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class InfluxDBDriver(BaseDriver):
    """Trace points in one InfluxDB 1.x measurement (see the package README)."""

    def __init__(self, url: URL) -> None:
        super().__init__(url)
        if url.scheme not in ("influxdb", "influxdb+https"):
            raise URLError(f"the influxdb driver does not serve the scheme {url.scheme!r}")
        self.options = parse_options(url)
        self._ssl = url.scheme == "influxdb+https"
        self._client: InfluxDBClient | None = None
        self._lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._ready = False
        # Lines not stored: malformed points skipped by notify, and lines (points and their
        # trace-index entries) the server dropped as older than the retention policy.
        self.rejected = 0
        o = self.options
        self._index = f"{o.measurement}_by_trace"
        prefix = f'"{o.rp}".' if o.rp else ""
        self._from = f'{prefix}"{o.measurement}"'
        self._from_index = f'{prefix}"{self._index}"'

    # -- connection -----------------------------------------------------------------------------
    def _get_client(self) -> InfluxDBClient:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    o = self.options
                    self._client = InfluxDBClient(
                        host=self.url.host or "127.0.0.1",
                        port=self.url.port or DEFAULT_PORT,
                        username=self.url.username,
                        password=self.url.password,
                        database=o.database,
                        ssl=self._ssl,
                        verify_ssl=o.verify,
                        timeout=(o.connect_timeout, o.timeout),
                        retries=1,  # one attempt: the dispatcher owns retrying
                        headers={"Accept": "application/json"},
                    )
                client = self._client
        return client

    def _where(self) -> str:
        return str(self.url)

    def _unavailable(self, exc: BaseException, doing: str) -> StoreUnavailable:
        reason = type(exc).__name__
        if isinstance(exc, requests.exceptions.Timeout):
            reason = f"timed out after {self.options.timeout:g}s"
        elif isinstance(exc, requests.exceptions.ConnectionError):
            reason = "connection failed (refused, reset or unresolvable)"
        elif isinstance(exc, InfluxDBServerError):
            reason = f"server error: {self._safe(exc)}"
        after = (
            " (the dispatcher keeps the points and retries)" if doing.startswith("write") else ""
        )
        return StoreUnavailable(
            f"cannot {doing} InfluxDB at {self._where()}: {reason}; check that influxd is "
            f"running and reachable{after}"
        )

    def _safe(self, exc: BaseException) -> str:
        content = getattr(exc, "content", None) or (exc.args[0] if exc.args else str(exc))
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        text = str(content)
        pw = self.url.password
        if pw:
            text = text.replace(pw, "***")
        return text.strip()[:400]

    def _client_error(self, exc: Exception, doing: str) -> DriverError:
        code = getattr(exc, "code", None)
        msg = self._safe(exc)
        if code == 401:
            return DriverError(
                f"InfluxDB at {self._where()} refused the credentials while trying to {doing}: "
                f"check the user name and password in the connection string"
            )
        if code == 403:
            return DriverError(
                f"InfluxDB at {self._where()} does not allow this user to {doing} ({msg}); "
                f"grant the user access to the database, or have an admin create it"
            )
        if "database not found" in msg:
            return DriverError(
                f"InfluxDB at {self._where()} has no database {self.options.database!r}; "
                f"create it, or drop create_database=false from the connection string"
            )
        if "retention policy not found" in msg:
            return DriverError(
                f"InfluxDB at {self._where()} has no retention policy {self.options.rp!r} "
                f"on {self.options.database!r}; create it or add ?retention=<duration>"
            )
        return DriverError(f"InfluxDB at {self._where()} refused to {doing}: {msg}")

    def _request(self, doing: str, **kwargs: Any) -> requests.Response:
        client = self._get_client()
        try:
            resp: requests.Response = client.request(**kwargs)
        except (requests.exceptions.RequestException, InfluxDBServerError) as exc:
            raise self._unavailable(exc, doing) from None
        except InfluxDBClientError as exc:
            raise self._client_error(exc, doing) from None
        return resp

    def _query_iter(
        self, q: str, params: dict[str, Any] | None = None, *, doing: str = "query"
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """Run one or more statements; yield ``(statement_id, series)`` as chunks arrive.

        The query and its bound parameters go in the POST body (``q`` and ``params``), so
        neither length nor content of the values touches the query text or the URL.
        """
        form = {"q": q}
        if params:
            form["params"] = json.dumps(params)
        resp = self._request(
            doing,
            url="query",
            method="POST",
            params={
                "db": self.options.database,
                "epoch": "ns",
                "chunked": "true",
                "chunk_size": "10000",
            },
            data=urlencode(form),
            stream=True,
            expected_response_code=200,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        with closing(resp):
            try:
                for line in resp.iter_lines():
                    if not line:
                        continue
                    try:
                        chunk = json.loads(line)
                    except ValueError:
                        raise DriverError(
                            f"InfluxDB at {self._where()} sent an answer that is not JSON while "
                            f"trying to {doing}; is this an InfluxDB 1.x HTTP endpoint?"
                        ) from None
                    if chunk.get("error"):
                        raise DriverError(
                            f"InfluxDB at {self._where()} failed to {doing}: {chunk['error']}"
                        )
                    for result in chunk.get("results", ()):
                        if result.get("error"):
                            raise self._statement_error(result["error"], doing)
                        sid = int(result.get("statement_id", 0))
                        for series in result.get("series", ()):
                            yield sid, series
            except requests.exceptions.RequestException as exc:
                raise self._unavailable(exc, doing) from None

    def _statement_error(self, message: str, doing: str) -> DriverError:
        if "database not found" in message:
            return _NoDatabase(message)
        return DriverError(f"InfluxDB at {self._where()} failed to {doing}: {message}")

    def _query(
        self, q: str, params: dict[str, Any] | None = None, *, doing: str = "query"
    ) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for sid, series in self._query_iter(q, params, doing=doing):
            out.setdefault(sid, []).append(series)
        return out

    # -- set-up ---------------------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._setup_lock:
            if not self._ready:
                self._set_up()

    def _set_up(self) -> None:
        o = self.options
        if o.create_database:
            try:
                self._query(f'CREATE DATABASE "{o.database}"', doing="create the database")
            except DriverError as exc:
                if "does not allow" not in str(exc):
                    raise
                # Not permitted: carry on, the database may exist already (writes will say).
                log.debug("xprofiler: not allowed to create database %s", o.database)
        if o.retention is not None and o.rp:
            self._ensure_retention_policy(o.rp, o.retention)
        self._ready = True

    def _ensure_retention_policy(self, name: str, seconds: float) -> None:
        o = self.options
        existing: float | None = None
        rows = self._query(
            f'SHOW RETENTION POLICIES ON "{o.database}"', doing="read the retention policies"
        )
        for series in rows.get(0, ()):
            cols = series["columns"]
            for values in series.get("values", ()):
                row = dict(zip(cols, values, strict=False))
                if row.get("name") == name:
                    existing = _go_duration_seconds(str(row.get("duration", "")))
        duration = "INF" if seconds == 0 else f"{int(seconds)}s"
        if existing is None:
            verb = "CREATE"
        elif abs(existing - seconds) >= 1:
            verb = "ALTER"
        else:
            return
        q = f'{verb} RETENTION POLICY "{name}" ON "{o.database}" DURATION {duration}'
        if verb == "CREATE":
            q += " REPLICATION 1"
        self._query(q, doing=f"{verb.lower()} the retention policy {name!r}")
        log.info("xprofiler: %s retention policy %s on %s (%s)", verb, name, o.database, duration)

    # -- writes ---------------------------------------------------------------------------------
    def notify(self, points: Sequence[Point]) -> None:
        o = self.options
        lines: list[str] = []
        good: list[Point] = []
        problems: list[str] = []
        for p in points:
            try:
                lines.append(point_line(p, o.measurement, o.divisor))
            except BadPoint as exc:
                problems.append(str(exc))
            else:
                good.append(p)
        try:
            body = "\n".join(lines).encode("utf-8")
        except UnicodeEncodeError:
            # Rare: a lone surrogate somewhere. Find the lines at fault, keep the rest.
            kept = [(ln, p) for ln, p in zip(lines, good, strict=True) if _utf8(ln)]
            problems += ["a text value is not valid UTF-8 (a lone surrogate)"] * (
                len(lines) - len(kept)
            )
            lines = [ln for ln, _ in kept]
            good = [p for _, p in kept]
            body = "\n".join(lines).encode("utf-8")
        if problems:
            # Skipped, not raised: a point that can never be stored must not make the
            # dispatcher retry its whole batch forever.
            self.rejected += len(problems)
            log.warning(
                "xprofiler: skipped %d malformed trace point(s) of %d (first problem: %s)",
                len(problems),
                len(points),
                problems[0],
            )
        if not lines:
            return
        index = list(index_lines(good, self._index, o.divisor))
        body += ("\n" + "\n".join(index) + "\n").encode("utf-8")
        self._ensure_ready()
        if len(body) <= MAX_BODY_BYTES:
            self._write(body)  # the usual case: one request per batch
            return
        for part in self._split(lines + index):
            self._write(part)

    @staticmethod
    def _split(lines: list[str]) -> Iterator[bytes]:
        """Bodies under InfluxDB's request size limit (default max-body-size is 25 MB)."""
        part: list[bytes] = []
        size = 0
        for line in lines:
            raw = line.encode("utf-8") + b"\n"
            if part and size + len(raw) > MAX_BODY_BYTES:
                yield b"".join(part)
                part, size = [], 0
            part.append(raw)
            size += len(raw)
        if part:
            yield b"".join(part)

    def _write(self, body: bytes) -> None:
        o = self.options
        params = {"db": o.database, "precision": o.precision}
        if o.rp:
            params["rp"] = o.rp
        client = self._get_client()
        try:
            client.request(
                url="write",
                method="POST",
                params=params,
                data=body,
                expected_response_code=204,
                headers={"Content-Type": "application/octet-stream"},
            )
        except requests.exceptions.RequestException as exc:
            raise self._unavailable(exc, "write trace points to") from None
        except (InfluxDBClientError, InfluxDBServerError) as exc:
            msg = self._safe(exc)
            if isinstance(exc, InfluxDBServerError) and "not found" not in msg:
                raise self._unavailable(exc, "write trace points to") from None
            if (
                "partial write" in msg
                and "beyond retention policy" in msg
                and all(
                    kind not in msg for kind in ("unable to parse", "conflict", "limit exceeded")
                )
            ):
                # Older than the retention policy keeps: InfluxDB stored the rest.
                m = _DROPPED_RE.search(msg)
                dropped = int(m.group(1)) if m else 0
                self.rejected += dropped
                log.warning(
                    "xprofiler: InfluxDB dropped %d line(s) (trace points and their trace-index "
                    "entries) older than the retention policy %s keeps; the rest of the batch "
                    "is stored",
                    dropped,
                    o.rp or "(default)",
                )
                return
            if "limit exceeded" in msg:
                raise DriverError(
                    f"InfluxDB at {self._where()} refused points: {msg}; raise "
                    f"max-values-per-tag / max-series-per-database in influxdb.conf (0 is "
                    f"unlimited) or shorten ?retention= (see the driver's README)"
                ) from None
            if "database not found" in msg:
                self._ready = False  # dropped behind our back: create it again next time
            raise self._client_error(exc, "write trace points to") from None

    # -- reads ----------------------------------------------------------------------------------
    def _select(
        self, what: str, where: Sequence[str] = (), group: str = '"base_id"', index: bool = False
    ) -> str:
        """One SELECT statement on our measurement.

        Every argument is fixed text of this module: a selection, conditions whose values are
        ``$name`` bound parameters (see :func:`_any_of`), a GROUP BY list. The measurement and
        retention policy names were validated against ``[A-Za-z0-9_.-]`` at construction.
        """
        source = self._from_index if index else self._from
        q = f"SELECT {what} FROM {source}"  # noqa: S608 - no caller value in the text
        if where:
            q += " WHERE " + " AND ".join(where)
        if group:
            q += f" GROUP BY {group}"
        return q

    def get_report(self, base_id: str) -> list[Point]:
        if not isinstance(base_id, str) or not base_id:
            return []
        q = self._select("*", ['"base_id" = $base_id'], group="")
        out: list[Point] = []
        try:
            for _sid, series in self._query_iter(
                q, {"base_id": encode_tag(base_id)}, doing="read a trace from"
            ):
                cols = series["columns"]
                for values in series.get("values", ()):
                    out.extend(row_to_points(dict(zip(cols, values, strict=False))))  # type: ignore[arg-type]
        except _NoDatabase:
            return []
        return out

    def _tag_candidates(self, f: TraceFilter) -> set[str] | None:
        """Stored base ids having a point with the service/name/error asked for (index only)."""
        wanted: list[tuple[str, str]] = []
        if f.service is not None:
            wanted.append(("service", encode_tag(f.service)))
        if f.name is not None:
            wanted.append(("name", encode_tag(f.name)))
        if f.errors:
            wanted.append(("error", "true"))
        if not wanted:
            return None
        stmts = [
            f'SHOW TAG VALUES FROM {self._from} WITH KEY = "base_id" WHERE "{key}" = $v{i}'
            for i, (key, _) in enumerate(wanted)
        ]
        params = {f"v{i}": value for i, (_, value) in enumerate(wanted)}
        found: dict[int, set[str]] = {i: set() for i in range(len(wanted))}
        for sid, series in self._query_iter("; ".join(stmts), params, doing="list traces in"):
            idx = series["columns"].index("value")
            found.setdefault(sid, set()).update(v[idx] for v in series.get("values", ()))
        result = found[0]
        for i in range(1, len(wanted)):
            result &= found[i]
        return result

    def _firsts(self, f: TraceFilter, candidates: set[str] | None) -> list[tuple[int, str, str]]:
        """``(start, decoded base_id, stored base_id)`` per trace whose start may match."""
        conds: list[str] = []
        params: dict[str, Any] = {}
        if f.since is not None:
            conds.append("time >= $since")
            params["since"] = f.since
        if f.until is not None:
            conds.append("time <= $until")
            params["until"] = f.until
        groups: Iterable[Sequence[str] | None]
        if candidates is not None and len(candidates) <= MAX_OR_CANDIDATES:
            groups = _chunks(sorted(candidates), IDS_PER_STATEMENT)
        else:
            groups = [None]
        rows: list[tuple[int, str, str]] = []
        for ids in groups:
            where = list(conds)
            p = dict(params)
            if ids is not None:
                clause, bound = _any_of("base_id", ids, "b")
                where.append(clause)
                p.update(bound)
            q = self._select('FIRST("n")', where, index=True)
            for _sid, series in self._query_iter(q, p, doing="list traces in"):
                stored = series.get("tags", {}).get("base_id", "")
                if candidates is not None and stored not in candidates:
                    continue
                for values in series.get("values", ()):
                    rows.append((int(values[0]), decode_tag(stored), stored))
                if len(rows) > self.options.max_scan:
                    raise DriverError(
                        f"more than {self.options.max_scan} traces match in {self._where()}: "
                        f"narrow the listing with since/until (or a service/name filter), "
                        f"or raise max_scan in the connection string"
                    )
        return rows

    def _ends(self, f: TraceFilter, ids: Sequence[str] | None) -> dict[str, int]:
        """Last point time per stored base id (all of time, or from ``since`` on)."""
        out: dict[str, int] = {}
        groups: Iterable[Sequence[str] | None] = (
            [None] if ids is None else _chunks(list(ids), IDS_PER_STATEMENT)
        )
        for group in groups:
            where: list[str] = []
            p: dict[str, Any] = {}
            if f.since is not None:
                where.append("time >= $since")
                p["since"] = f.since
            if group is not None:
                clause, bound = _any_of("base_id", group, "b")
                where.append(clause)
                p.update(bound)
            q = self._select('LAST("n")', where, index=True)
            for _sid, series in self._query_iter(q, p, doing="list traces in"):
                stored = series.get("tags", {}).get("base_id", "")
                for values in series.get("values", ()):
                    out[stored] = int(values[0])
        return out

    def _started_before(self, since: int, ids: Sequence[str]) -> set[str]:
        """Stored base ids among ``ids`` with a point before ``since``."""
        clause, bound = _any_of("base_id", ids, "b")
        q = self._select('LAST("n")', ["time < $since", clause], index=True)
        found: set[str] = set()
        for _sid, series in self._query_iter(q, {"since": since, **bound}, doing="list traces"):
            found.add(series.get("tags", {}).get("base_id", ""))
        return found

    def list_traces(self, filters: TraceFilter | None = None) -> list[TraceSummary]:
        f = filters or TraceFilter()
        if f.limit == 0:
            return []
        try:
            candidates = self._tag_candidates(f)
            if candidates is not None and not candidates:
                return []
            rows = self._firsts(f, candidates)
        except _NoDatabase:
            return []
        ends: dict[str, int] | None = None
        if f.min_duration is not None:
            # For traces that pass `since`, every point is at or after it: the ends are exact.
            few = candidates is not None and len(rows) <= MAX_OR_CANDIDATES
            ends = self._ends(f, [r[2] for r in rows] if few else None)
            rows = [r for r in rows if ends.get(r[2], r[0]) - r[0] >= f.min_duration]
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        want = f.offset + f.limit
        if f.since is None:
            page = rows[f.offset : want]
        else:
            # A trace that started before `since` but has later points was seen from its
            # first point at or after `since`: drop such traces, in order, until the page
            # is full (usually one round trip).
            kept: list[tuple[int, str, str]] = []
            for i in range(0, len(rows), IDS_PER_STATEMENT):
                chunk = rows[i : i + IDS_PER_STATEMENT]
                early = self._started_before(f.since, [r[2] for r in chunk])
                kept.extend(r for r in chunk if r[2] not in early)
                if len(kept) >= want:
                    break
            page = kept[f.offset : want]
        if not page:
            return []
        return self._summaries(page, ends)

    def _summaries(
        self, page: list[tuple[int, str, str]], ends: dict[str, int] | None
    ) -> list[TraceSummary]:
        """Summaries of one page of traces, mostly from the series index, not the points.

        Per chunk of traces, one request: the earliest start point of each (its name), the
        last trace-index entry (the end), the distinct span ids, which have an error (series
        index), and per trace its services (``SHOW TAG VALUES``, series index).
        """
        stored = [r[2] for r in page]
        detail: dict[str, dict[str, Any]] = {s: {"services": set()} for s in stored}
        need_first: list[str] = []
        for group in _chunks(stored, IDS_PER_STATEMENT):
            clause, bound = _any_of("base_id", group, "b")
            m = self._from
            stmts = [
                self._select('FIRST("start_id"), "name"', [clause]),
                self._select('LAST("n")', [clause], index=True),
                self._select('COUNT(DISTINCT("span"))', [clause]),
                f'SHOW TAG VALUES FROM {m} WITH KEY = "base_id" WHERE "error" = \'true\' AND '
                + clause,
            ]
            stmts.extend(
                f'SHOW TAG VALUES FROM {m} WITH KEY = "service" WHERE "base_id" = $b{i}'
                for i in range(len(group))
            )
            for sid, series in self._query_iter(
                "; ".join(stmts), bound, doing="summarise traces in"
            ):
                cols = series.get("columns", [])
                values_list = series.get("values", ())
                if sid < 3:
                    d = detail.get(series.get("tags", {}).get("base_id", ""))
                    if d is None:
                        continue
                    for values in values_list:
                        if sid == 0:
                            d["first_start"] = (int(values[0]), values[2])
                        elif sid == 1:
                            d["end"] = int(values[0])
                        else:
                            d["spans"] = int(values[1])
                elif sid == 3:
                    idx = cols.index("value")
                    for values in values_list:
                        if values[idx] in detail:
                            detail[values[idx]]["error"] = True
                else:
                    idx = cols.index("value")
                    d = detail[group[sid - 4]]
                    d["services"].update(decode_tag(v[idx]) for v in values_list)
        for start, _base_id, key in page:
            first_start = detail[key].get("first_start")
            if first_start is None or first_start[0] != start:
                need_first.append(key)  # a stop point is the earliest: rare, ask for it
        for group in _chunks(need_first, IDS_PER_STATEMENT):
            clause, bound = _any_of("base_id", group, "b")
            q = self._select('FIRST("span"), "name"', [clause])
            for _sid, series in self._query_iter(q, bound, doing="summarise traces in"):
                d = detail.get(series.get("tags", {}).get("base_id", ""))
                for values in series.get("values", ()) if d is not None else ():
                    d["first_start"] = (int(values[0]), values[2])  # type: ignore[index]
        out: list[TraceSummary] = []
        for start, base_id, key in page:
            d = detail[key]
            end = d.get("end", (ends or {}).get(key, start))
            out.append(
                TraceSummary(
                    base_id=base_id,
                    start=start,
                    end=max(end, start),
                    span_count=d.get("spans", 0),
                    services=tuple(sorted(d["services"])),
                    error=bool(d.get("error", False)),
                    name=decode_tag(d.get("first_start", (0, None))[1]),
                )
            )
        return out

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            self._ready = False
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing must not raise
                log.debug("xprofiler: closing the InfluxDB client failed", exc_info=True)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _NoDatabase(DriverError):
    """A read from a database that does not exist (yet): reads as empty."""
