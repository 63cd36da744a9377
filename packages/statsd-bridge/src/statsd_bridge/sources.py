"""What one poll of a source produces: samples, and counts of rejected values.

Three kinds: ``http`` (any JSON, mapped by the config's rules), ``magnetodb``
(MagnetoDB's monitoring API) and ``profiler`` (this project's web viewer,
``GET /api/stats``). A collector either returns a whole :class:`PollResult` or
raises :class:`~statsd_bridge.errors.PollError`; nothing is sent in between,
so a poll is all or nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from . import jsonpath, names
from .config import MetricRule, Source
from .errors import REASON_BAD_SHAPE, REASON_MISSING_PATH, PollError
from .values import REJECT_BAD_NAME, REJECT_DUPLICATE, Number, ValueRejected, to_number

log = logging.getLogger(__name__)

REJECT_MISSING = "missing"


@dataclass(frozen=True)
class Sample:
    """One metric to send: ``name`` is complete except for the StatsD target prefix."""

    name: str
    type: str
    value: Number


@dataclass
class PollResult:
    samples: list[Sample] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    # (reason, where) for each rejection, for logging; never the value itself.
    rejections: list[tuple[str, str]] = field(default_factory=list)
    # How many units of the source were read (tables for MagnetoDB, values otherwise).
    units: int = 0
    _names: set[str] = field(default_factory=set, repr=False)

    def add(self, name: str, mtype: str, value: Number, where: str) -> bool:
        if name in self._names:
            # Two JSON members sanitised to one name: sending both would let
            # one overwrite the other, so the later one is dropped and counted.
            self.reject(REJECT_DUPLICATE, f"{where} -> {name}")
            return False
        self._names.add(name)
        self.samples.append(Sample(name, mtype, value))
        return True

    def reject(self, reason: str, where: str) -> None:
        self.rejected[reason] += 1
        if len(self.rejections) < 100:
            self.rejections.append((reason, where))


class Fetch(Protocol):
    def get_json(
        self, url: str, deadline: float, params: dict[str, str | int] | None = None
    ) -> Any: ...


class Collector(Protocol):
    def collect(self, fetch: Fetch, deadline: float) -> PollResult: ...


def apply_rules(
    rules: tuple[MetricRule, ...] | list[MetricRule],
    doc: Any,
    prefix: str,
    max_part: int,
    result: PollResult,
) -> None:
    """Evaluate mapping rules against one JSON document, adding to ``result``."""
    for rule in rules:
        try:
            items = list(rule.each.select(doc, rule.optional)) if rule.each else [((), doc)]
            for each_caps, item in items:
                for value_caps, raw in list(rule.value.select(item, rule.optional)):
                    caps = each_caps + value_caps
                    where = f"{rule.location or 'metric'} {rule.value.text}"
                    try:
                        value = to_number(raw, rule.scale)
                    except ValueRejected as rej:
                        result.reject(rej.reason, where)
                        continue
                    try:
                        name = rule.name.render(caps, item, max_part)
                    except names.NameRejected as exc:
                        result.reject(REJECT_BAD_NAME, f"{where}: {exc}")
                        continue
                    result.units += 1
                    result.add(names.join(prefix, name), rule.type, value, where)
        except jsonpath.PathMissing as exc:
            raise PollError(
                REASON_MISSING_PATH,
                f"{rule.location}: {exc} in the response; "
                "set optional = true on this metric if it may be absent",
            ) from None
        except jsonpath.PathShape as exc:
            raise PollError(REASON_BAD_SHAPE, f"{rule.location}: {exc}") from None


class HttpCollector:
    """Any JSON endpoint, mapped by ``[[sources.metrics]]`` rules."""

    def __init__(self, source: Source, max_part: int) -> None:
        self.source = source
        self.max_part = max_part

    def collect(self, fetch: Fetch, deadline: float) -> PollResult:
        doc = fetch.get_json(self.source.url, deadline)
        result = PollResult()
        apply_rules(self.source.metrics, doc, self.source.prefix, self.max_part, result)
        return result


def _profiler_rules() -> tuple[MetricRule, ...]:
    def rule(value: str, name: str, optional: bool = False) -> MetricRule:
        return MetricRule(
            value=jsonpath.parse(value),
            name=names.parse_template(name),
            type="gauge",
            optional=optional,
            location=f"profiler {value}",
        )

    return (
        rule("$.traces", "traces"),
        rule("$.errors", "errors"),
        rule("$.services.*.traces", "services.{*}.traces"),
        rule("$.services.*.errors", "services.{*}.errors"),
        rule("$.spans", "spans", optional=True),
    )


PROFILER_RULES = _profiler_rules()
PROFILER_STATS_PATH = "/api/stats"


def profiler_stats_url(url: str) -> str:
    """The viewer root (or the stats URL itself) -> its /api/stats URL; a query stays a query
    (``http://h/viewer?window=2h`` -> ``http://h/viewer/api/stats?window=2h``)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith(PROFILER_STATS_PATH):
        path += PROFILER_STATS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class ProfilerCollector:
    """The project's web viewer: ``GET /api/stats``.

    Response: ``{"traces": N, "errors": N, "services": {name: {"traces": N,
    "errors": N}}, "spans": N}``.
    """

    def __init__(self, source: Source, max_part: int) -> None:
        self.source = source
        self.max_part = max_part
        self.url = profiler_stats_url(source.url)

    def collect(self, fetch: Fetch, deadline: float) -> PollResult:
        doc = fetch.get_json(self.url, deadline)
        if not isinstance(doc, dict):
            raise PollError(REASON_BAD_SHAPE, f"GET {PROFILER_STATS_PATH}: expected an object")
        if not isinstance(doc.get("services", {}), dict):
            raise PollError(
                REASON_BAD_SHAPE, f"GET {PROFILER_STATS_PATH}: services is not an object"
            )
        result = PollResult()
        apply_rules(PROFILER_RULES, doc, self.source.prefix, self.max_part, result)
        return result


MAGNETODB_STATUSES = ("ACTIVE", "CREATING", "DELETING", "CREATE_FAILED", "DELETE_FAILED")
MAGNETODB_FIELDS = ("size", "item_count")


class MagnetoDBCollector:
    """MagnetoDB's monitoring API.

    1. ``GET {api}/projects`` lists every table as ``{"tenant", "name",
       "status", "usage_detailes"}``. It is read only to find the projects and
       to count tables per status: its paging (``limit``,
       ``last_evaluated_project``/``_table``) is followed defensively, and rows
       already seen end the walk.
    2. Per project, ``GET {api}/projects/{project}`` (``walk = "project"``)
       gives ``[{"table_name", "usage_detailes": {"size", "item_count"}}]``;
       or, with ``walk = "table"``, ``GET {api}/projects/{p}/tables/{t}`` per
       ACTIVE table gives ``{"size", "item_count"}``.

    Tables whose ``usage_detailes`` is empty (MagnetoDB sends that for tables
    that are not ACTIVE) are skipped; they show up in the per-status counts.
    """

    def __init__(self, source: Source, max_part: int) -> None:
        self.source = source
        self.max_part = max_part
        self.base = source.url.rstrip("/") + source.api_path

    def part(self, raw: str) -> str:
        return names.sanitize_part(raw, self.max_part)

    def collect(self, fetch: Fetch, deadline: float) -> PollResult:
        rows = self._list_tables(fetch, deadline)
        statuses: dict[str, Counter[str]] = {}
        active: dict[str, list[str]] = {}
        for tenant, table, status in rows:
            statuses.setdefault(tenant, Counter())[status] += 1
            if status == "ACTIVE":
                active.setdefault(tenant, []).append(table)
        projects = list(self.source.projects) if self.source.projects else list(statuses)

        result = PollResult()
        prefix = self.source.prefix
        for project in projects:
            if self.source.walk == "project":
                tables = self._project_tables(fetch, project, deadline)
            else:
                tables = [
                    (t, self._table_usage(fetch, project, t, deadline))
                    for t in active.get(project, [])
                ]
            p = self.part(project)
            totals = dict.fromkeys(MAGNETODB_FIELDS, 0)
            for table, usage in tables:
                if not usage:
                    continue  # not ACTIVE: counted by status instead
                result.units += 1
                t = self.part(table)
                for fld in MAGNETODB_FIELDS:
                    where = f"project {p} table {t} {fld}"
                    if fld not in usage:
                        result.reject(REJECT_MISSING, where)
                        continue
                    try:
                        value = to_number(usage[fld])
                    except ValueRejected as rej:
                        result.reject(rej.reason, where)
                        continue
                    # Totals count every table, even one whose name collided.
                    totals[fld] += value
                    result.add(names.join(prefix, p, t, fld), "gauge", value, where)
            for fld in MAGNETODB_FIELDS:
                result.add(names.join(prefix, p, fld), "gauge", totals[fld], f"project {p} total")
            counts = statuses.get(project, Counter())
            for status in sorted(set(MAGNETODB_STATUSES) | set(counts)):
                metric = "tables_" + self.part(status.lower())
                result.add(
                    names.join(prefix, p, metric), "gauge", counts[status], f"project {p} {status}"
                )
        return result

    def _list_tables(self, fetch: Fetch, deadline: float) -> list[tuple[str, str, str]]:
        url = f"{self.base}/projects"
        size = self.source.page_size
        params: dict[str, str | int] = {"limit": size}
        seen: set[tuple[str, str]] = set()
        rows: list[tuple[str, str, str]] = []
        for _page in range(self.source.max_pages):
            data = fetch.get_json(url, deadline, params)
            if not isinstance(data, list):
                raise PollError(REASON_BAD_SHAPE, f"GET {url}: expected a list of tables")
            new = 0
            for row in data:
                if not isinstance(row, dict):
                    raise PollError(REASON_BAD_SHAPE, f"GET {url}: a row is not an object")
                tenant, name, status = row.get("tenant"), row.get("name"), row.get("status")
                if not all(isinstance(v, str) for v in (tenant, name, status)):
                    raise PollError(
                        REASON_BAD_SHAPE,
                        f"GET {url}: a row lacks string tenant/name/status",
                    )
                assert isinstance(tenant, str) and isinstance(name, str)
                assert isinstance(status, str)
                if (tenant, name) in seen:
                    continue
                seen.add((tenant, name))
                rows.append((tenant, name, status))
                new += 1
            if len(data) < size or new == 0:
                return rows
            last = data[-1]
            params = {
                "limit": size,
                "last_evaluated_project": last["tenant"],
                "last_evaluated_table": last["name"],
            }
        log.warning(
            "source %s: the table listing has more than max_pages=%d pages; "
            "projects beyond them are not polled (raise max_pages)",
            self.source.name,
            self.source.max_pages,
        )
        return rows

    def _project_tables(
        self, fetch: Fetch, project: str, deadline: float
    ) -> list[tuple[str, dict[str, Any] | None]]:
        url = f"{self.base}/projects/{quote(project, safe='')}"
        data = fetch.get_json(url, deadline)
        if not isinstance(data, list):
            raise PollError(REASON_BAD_SHAPE, f"project {self.part(project)}: expected a list")
        out: list[tuple[str, dict[str, Any] | None]] = []
        for row in data:
            if not isinstance(row, dict) or not isinstance(row.get("table_name"), str):
                raise PollError(
                    REASON_BAD_SHAPE, f"project {self.part(project)}: a row lacks table_name"
                )
            usage = row.get("usage_detailes")
            if usage is not None and not isinstance(usage, dict):
                raise PollError(
                    REASON_BAD_SHAPE,
                    f"project {self.part(project)}: usage_detailes is not an object",
                )
            out.append((row["table_name"], usage))
        return out

    def _table_usage(
        self, fetch: Fetch, project: str, table: str, deadline: float
    ) -> dict[str, Any]:
        url = f"{self.base}/projects/{quote(project, safe='')}/tables/{quote(table, safe='')}"
        data = fetch.get_json(url, deadline)
        if not isinstance(data, dict):
            raise PollError(
                REASON_BAD_SHAPE,
                f"project {self.part(project)} table {self.part(table)}: expected an object",
            )
        return data


def make_collector(source: Source, max_part: int) -> Collector:
    if source.kind == "magnetodb":
        return MagnetoDBCollector(source, max_part)
    if source.kind == "profiler":
        return ProfilerCollector(source, max_part)
    return HttpCollector(source, max_part)
