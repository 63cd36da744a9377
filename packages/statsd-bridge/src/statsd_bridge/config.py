"""Loading and validating ``bridge.toml``.

Every problem is collected with its location (``sources[1] "magneto".timeout``)
before :class:`~statsd_bridge.errors.ConfigError` is raised, so ``check``
reports all of them in one go.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from . import jsonpath, names
from .errors import ConfigError, Problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KINDS = ("http", "magnetodb", "profiler")
METRIC_TYPES = ("gauge", "counter", "timer")
PROTOCOLS = ("udp", "tcp")
WALKS = ("project", "table")

MAGNETODB_DEFAULT_PORT = 8480
MIN_INTERVAL = 0.01
MAX_INTERVAL = 7 * 24 * 3600.0
DEFAULT_INTERVAL = 10.0
DEFAULT_MAX_BODY = 8 * 1024 * 1024
MIN_DATAGRAM = 64
MAX_DATAGRAM = 65507  # largest UDP payload over IPv4

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class StatsdTarget:
    host: str = "127.0.0.1"
    port: int = 8125
    prefix: str = ""
    protocol: str = "udp"
    max_datagram: int = 512
    timeout: float = 2.0
    ipv6: bool = False
    max_rate: int = 10000  # metric lines per second over UDP; 0 = unpaced


@dataclass(frozen=True)
class MetricRule:
    """One mapping from a JSON path to a metric name."""

    value: jsonpath.JsonPath
    name: names.NameTemplate
    type: str = "gauge"
    scale: float | int | None = None
    each: jsonpath.JsonPath | None = None
    optional: bool = False
    location: str = ""


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    url: str
    interval: float = DEFAULT_INTERVAL
    timeout: float = 5.0
    jitter: float = 0.0
    backoff_max: float = 300.0
    max_body: int = DEFAULT_MAX_BODY
    prefix: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)
    verify: bool | str = True
    metrics: tuple[MetricRule, ...] = ()
    # magnetodb only
    walk: str = "project"
    projects: tuple[str, ...] = ()
    page_size: int = 1000
    max_pages: int = 100
    api_path: str = "/v1/monitoring"

    @property
    def safe_url(self) -> str:
        """The URL with any user:password removed, for logs."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        # Header values and passwords are secrets: only their names are shown.
        hdrs = ", ".join(sorted(self.headers))
        auth = "basic(***)" if self.auth else "none"
        return (
            f"Source(name={self.name!r}, kind={self.kind!r}, url={self.safe_url!r}, "
            f"interval={self.interval}, timeout={self.timeout}, headers=[{hdrs}], auth={auth})"
        )


@dataclass(frozen=True)
class BridgeSettings:
    self_prefix: str = "statsd_bridge"
    max_name_part: int = names.DEFAULT_MAX_PART


@dataclass(frozen=True)
class Config:
    path: str
    statsd: StatsdTarget
    bridge: BridgeSettings
    sources: tuple[Source, ...]


# Query parameters whose values are credentials (?access_token=, ?api_key=, ?sig=...).
_SECRET_PARAM = re.compile(r"pass|secret|token|api_?key|auth|credential|sig", re.IGNORECASE)


def _redact_query(query: str) -> str:
    out = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        out.append(f"{key}=***" if eq and _SECRET_PARAM.search(unquote(key)) else item)
    return "&".join(out)


def redact_url(url: str) -> str:
    """``url`` for logs: no user:password, no value of a query parameter named like a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    query = _redact_query(parts.query) if parts.query else parts.query
    if parts.username is None and parts.password is None:
        if query == parts.query:
            return url
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_duration(value: Any) -> float:
    """Seconds from ``10``, ``2.5``, ``"250ms"``, ``"10s"``, ``"5m"``, ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '250ms'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration; write e.g. '250ms', '10s', '5m', '1h'")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError("a duration must be a number of seconds or a string like '250ms'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be finite and not negative")
    return seconds


def parse_size(value: Any) -> int:
    """Bytes from ``1048576``, ``"512KiB"``, ``"8MiB"``, ``"1MB"``."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '8MiB'")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a size; write e.g. 1048576, '512KiB', '8MiB'")
        n = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    else:
        raise ValueError("a size must be a number of bytes or a string like '8MiB'")
    if n <= 0:
        raise ValueError("a size must be positive")
    return n


class _Table:
    """Typed access to one TOML table that records problems and unknown keys."""

    def __init__(self, data: Mapping[str, Any], location: str, problems: list[Problem]):
        self.data = data
        self.location = location
        self.problems = problems
        self.used: set[str] = set()

    def loc(self, key: str) -> str:
        return f"{self.location}.{key}" if self.location else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.loc(key), message))

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        self.used.add(key)
        if key not in self.data:
            if required:
                self.problem(key, "is required")
            return default
        v = self.data[key]
        if not isinstance(v, str):
            self.problem(key, f"must be a string, not {type(v).__name__}")
            return default
        return v

    def int(self, key: str, default: int, lo: int, hi: int) -> int:
        self.used.add(key)
        if key not in self.data:
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.problem(key, f"must be an integer, not {type(v).__name__}")
            return default
        if not lo <= v <= hi:
            self.problem(key, f"must be between {lo} and {hi}, not {v}")
            return default
        return v

    def bool(self, key: str, default: bool) -> bool:
        self.used.add(key)
        if key not in self.data:
            return default
        v = self.data[key]
        if not isinstance(v, bool):
            self.problem(key, "must be true or false")
            return default
        return v

    def duration(self, key: str, default: float | None) -> float | None:
        self.used.add(key)
        if key not in self.data:
            return default
        try:
            return parse_duration(self.data[key])
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def size(self, key: str, default: int) -> int:
        self.used.add(key)
        if key not in self.data:
            return default
        try:
            return parse_size(self.data[key])
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.str(key, default)
        if v is None:
            return default
        if v not in choices:
            self.problem(key, f"must be one of {', '.join(choices)}; got {v!r}")
            return default
        return v

    def table(self, key: str) -> _Table | None:
        self.used.add(key)
        if key not in self.data:
            return None
        v = self.data[key]
        if not isinstance(v, dict):
            self.problem(key, "must be a table, e.g. [" + self.loc(key) + "] or { ... }")
            return None
        return _Table(v, self.loc(key), self.problems)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                self.problem(key, "unknown key (check its spelling against the README)")


def load(path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raise :class:`ConfigError` listing every problem."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(path, [Problem(path, f"cannot read the file: {exc.strerror}")]) from None
    return loads(raw.decode("utf-8", "replace"), path, environ)


def loads(text: str, path: str = "<config>", environ: Mapping[str, str] | None = None) -> Config:
    """Validate config text; ``path`` is only used in messages."""
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [Problem(path, f"not valid TOML: {exc}")]) from None

    problems: list[Problem] = []
    root = _Table(data, "", problems)
    target = _read_statsd(root, problems)
    bridge = _read_bridge(root, problems)
    sources: list[Source] = []
    raw_sources = root.raw("sources")
    if raw_sources is None:
        problems.append(Problem("sources", "no [[sources]] table: add at least one source"))
    elif not isinstance(raw_sources, list) or not all(isinstance(s, dict) for s in raw_sources):
        problems.append(Problem("sources", "must be an array of tables: write [[sources]]"))
    else:
        if not raw_sources:
            problems.append(Problem("sources", "is empty: add at least one [[sources]] table"))
        seen: dict[str, int] = {}
        for i, raw_src in enumerate(raw_sources):
            name = raw_src.get("name")
            if isinstance(name, str) and name in seen:
                problems.append(
                    Problem(
                        f"sources[{i}] ({name}).name",
                        f"{name!r} is already the name of sources[{seen[name]}]; "
                        "source names must be unique",
                    )
                )
            elif isinstance(name, str):
                seen[name] = i
            src = _read_source(raw_src, i, env, problems)
            if src is not None:
                sources.append(src)
    root.finish()
    if problems:
        raise ConfigError(path, problems)
    return Config(path=path, statsd=target, bridge=bridge, sources=tuple(sources))


def _read_statsd(root: _Table, problems: list[Problem]) -> StatsdTarget:
    t = root.table("statsd")
    if t is None:
        if not root.has("statsd"):
            problems.append(Problem("statsd", "no [statsd] table: say where StatsD listens"))
        return StatsdTarget()
    host = t.str("host", "127.0.0.1") or "127.0.0.1"
    port = t.int("port", 8125, 1, 65535)
    prefix = t.str("prefix", "") or ""
    if prefix and not names.is_safe_name(prefix):
        t.problem("prefix", f"{prefix!r} must be dot-separated parts of A-Z a-z 0-9 _ -")
        prefix = ""
    protocol = t.choice("protocol", "udp", PROTOCOLS)
    max_datagram = t.int("max_datagram", 512, MIN_DATAGRAM, MAX_DATAGRAM)
    timeout = t.duration("timeout", 2.0) or 2.0
    ipv6 = t.bool("ipv6", False)
    max_rate = t.int("max_rate", 10000, 0, 100_000_000)
    t.finish()
    return StatsdTarget(
        host=host,
        port=port,
        prefix=prefix,
        protocol=protocol,
        max_datagram=max_datagram,
        timeout=timeout,
        ipv6=ipv6,
        max_rate=max_rate,
    )


def _read_bridge(root: _Table, problems: list[Problem]) -> BridgeSettings:
    t = root.table("bridge")
    if t is None:
        return BridgeSettings()
    self_prefix = t.str("self_prefix", "statsd_bridge")
    if self_prefix is None:
        self_prefix = "statsd_bridge"
    if self_prefix and not names.is_safe_name(self_prefix):
        t.problem(
            "self_prefix",
            f"{self_prefix!r} must be dot-separated parts of A-Z a-z 0-9 _ - "
            '(or "" to turn self-metrics off)',
        )
        self_prefix = "statsd_bridge"
    max_part = t.int("max_name_part", names.DEFAULT_MAX_PART, 16, 200)
    t.finish()
    return BridgeSettings(self_prefix=self_prefix, max_name_part=max_part)


def _read_source(
    raw: dict[str, Any], index: int, env: Mapping[str, str], problems: list[Problem]
) -> Source | None:
    label = raw.get("name")
    location = f"sources[{index}]" + (f" ({label})" if isinstance(label, str) else "")
    t = _Table(raw, location, problems)
    start = len(problems)
    name = t.str("name", required=True) or ""
    if name and (not names.is_safe_name(name) or "." in name):
        t.problem("name", f"{name!r} may only hold A-Z a-z 0-9 _ - (it is a metric name part)")
    kind = t.choice("kind", "http", KINDS)
    if not t.has("kind"):
        t.problem("kind", f"is required: one of {', '.join(KINDS)}")

    url = t.str("url", required=True) or ""
    if url:
        url = _check_url(t, url, kind)

    interval = t.duration("interval", DEFAULT_INTERVAL)
    assert interval is not None
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        t.problem("interval", f"must be between {MIN_INTERVAL}s and 7 days, not {interval}s")
        interval = DEFAULT_INTERVAL
    default_timeout = min(5.0, interval * 0.8)
    timeout = t.duration("timeout", default_timeout)
    assert timeout is not None
    if timeout <= 0 or timeout >= interval:
        t.problem(
            "timeout",
            f"must be above 0 and below the interval ({interval:g}s), not {timeout:g}s, "
            "so one poll ends before the next is due",
        )
    jitter = t.duration("jitter", 0.0) or 0.0
    if jitter >= interval:
        t.problem("jitter", f"must be below the interval ({interval:g}s), not {jitter:g}s")
    backoff_max = t.duration("backoff_max", max(interval, 300.0))
    assert backoff_max is not None
    if backoff_max < interval:
        t.problem("backoff_max", f"must be at least the interval ({interval:g}s)")
    max_body = t.size("max_body", DEFAULT_MAX_BODY)
    verify_raw = t.raw("tls_verify")
    verify: bool | str = True
    if verify_raw is not None:
        if isinstance(verify_raw, (bool, str)):
            verify = verify_raw
        else:
            t.problem("tls_verify", "must be true, false or the path of a CA bundle")

    default_prefix = {"magnetodb": "magnetodb", "profiler": "profiler"}.get(kind, name)
    prefix = t.str("prefix", default_prefix)
    if prefix is None:
        prefix = default_prefix
    if prefix and not names.is_safe_name(prefix):
        t.problem("prefix", f"{prefix!r} must be dot-separated parts of A-Z a-z 0-9 _ -")

    headers = _read_headers(t, env)
    auth = _read_auth(t, env)

    metrics: tuple[MetricRule, ...] = ()
    raw_metrics = t.raw("metrics")
    if kind == "http":
        if raw_metrics is None:
            t.problem("metrics", "is required for kind 'http': add [[sources.metrics]] tables")
        else:
            metrics = _read_metrics(t, raw_metrics, problems)
    elif raw_metrics is not None:
        t.problem("metrics", f"is not used by kind {kind!r}: its metrics are built in")

    walk, projects, page_size, max_pages, api_path = "project", (), 1000, 100, "/v1/monitoring"
    if kind == "magnetodb":
        walk = t.choice("walk", "project", WALKS)
        raw_projects = t.raw("projects")
        if raw_projects is not None:
            if not isinstance(raw_projects, list) or not all(
                isinstance(p, str) for p in raw_projects
            ):
                t.problem("projects", "must be a list of project ids (strings)")
            else:
                projects = tuple(raw_projects)
        page_size = t.int("page_size", 1000, 1, 100000)
        max_pages = t.int("max_pages", 100, 1, 100000)
        api_path = t.str("api_path", "/v1/monitoring") or "/v1/monitoring"
        if not api_path.startswith("/"):
            t.problem("api_path", "must start with '/'")
        api_path = api_path.rstrip("/")
    t.finish()
    if len(problems) > start:
        return None
    return Source(
        name=name,
        kind=kind,
        url=url,
        interval=interval,
        timeout=timeout,
        jitter=jitter,
        backoff_max=backoff_max,
        max_body=max_body,
        prefix=prefix,
        headers=headers,
        auth=auth,
        verify=verify,
        metrics=metrics,
        walk=walk,
        projects=projects,
        page_size=page_size,
        max_pages=max_pages,
        api_path=api_path,
    )


def _check_url(t: _Table, url: str, kind: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        t.problem("url", "is not a valid URL (the port must be a number)")
        return url
    if parts.scheme not in ("http", "https") or not parts.hostname:
        t.problem("url", "must be an http:// or https:// URL with a host")
        return url
    if kind == "magnetodb" and port is None:
        netloc = parts.netloc + f":{MAGNETODB_DEFAULT_PORT}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _read_headers(t: _Table, env: Mapping[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    h = t.table("headers")
    if h is not None:
        for key, value in h.data.items():
            h.used.add(key)
            if not _HEADER_NAME.match(key):
                h.problem(key, "is not a valid HTTP header name")
            elif not isinstance(value, str) or "\r" in value or "\n" in value:
                h.problem(key, "must be a string without line breaks")
            else:
                headers[key] = value
    he = t.table("headers_env")
    if he is not None:
        for key, var in he.data.items():
            he.used.add(key)
            if not _HEADER_NAME.match(key):
                he.problem(key, "is not a valid HTTP header name")
            elif not isinstance(var, str):
                he.problem(key, "must name an environment variable")
            elif var not in env:
                he.problem(key, f"environment variable {var} is not set; export it first")
            elif "\r" in env[var] or "\n" in env[var]:
                he.problem(key, f"environment variable {var} holds a line break")
            else:
                headers[key] = env[var]
    return headers


def _read_auth(t: _Table, env: Mapping[str, str]) -> tuple[str, str] | None:
    a = t.table("auth")
    if a is None:
        return None
    user = a.str("username", required=True) or ""
    password = a.str("password")
    var = a.str("password_env")
    a.finish()
    if password is not None and var is not None:
        a.problem("password", "give either password or password_env, not both")
        return None
    if var is not None:
        if var not in env:
            a.problem("password_env", f"environment variable {var} is not set; export it first")
            return None
        password = env[var]
    if password is None:
        a.problem("password", "is required (or password_env naming an environment variable)")
        return None
    return (user, password)


def _read_metrics(t: _Table, raw: Any, problems: list[Problem]) -> tuple[MetricRule, ...]:
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        t.problem("metrics", "must be an array of tables: write [[sources.metrics]]")
        return ()
    if not raw:
        t.problem("metrics", "is empty: add at least one [[sources.metrics]] table")
    rules: list[MetricRule] = []
    for i, m in enumerate(raw):
        mt = _Table(m, f"{t.location}.metrics[{i}]", problems)
        start = len(problems)
        value_text = mt.str("value", required=True)
        each_text = mt.str("each")
        name_text = mt.str("name", required=True)
        mtype = mt.choice("type", "gauge", METRIC_TYPES)
        optional = mt.bool("optional", False)
        scale: float | int | None = None
        raw_scale = mt.raw("scale")
        if raw_scale is not None:
            if (
                isinstance(raw_scale, bool)
                or not isinstance(raw_scale, (int, float))
                or not math.isfinite(raw_scale)
                or raw_scale == 0
            ):
                mt.problem("scale", "must be a finite, non-zero number, e.g. 0.001")
            else:
                scale = raw_scale
        value_path = each_path = template = None
        if value_text is not None:
            try:
                value_path = jsonpath.parse(value_text)
            except jsonpath.PathSyntaxError as exc:
                mt.problem("value", str(exc))
        if each_text is not None:
            try:
                each_path = jsonpath.parse(each_text)
            except jsonpath.PathSyntaxError as exc:
                mt.problem("each", str(exc))
        if name_text is not None:
            try:
                template = names.parse_template(name_text)
            except names.TemplateError as exc:
                mt.problem("name", str(exc))
        if template is not None and value_path is not None:
            wildcards = value_path.wildcards + (each_path.wildcards if each_path else 0)
            if template.max_capture > wildcards or (template.max_capture == 0 and not wildcards):
                mt.problem(
                    "name",
                    f"refers to a wildcard capture but the paths have only {wildcards} wildcard(s)",
                )
            elif wildcards and template.max_capture < 0 and not template.fields:
                mt.problem(
                    "name",
                    "the path selects many values but the name has no {*} or {field}: "
                    "every value would get the same name",
                )
        mt.finish()
        if len(problems) > start or value_path is None or template is None:
            continue
        rules.append(
            MetricRule(
                value=value_path,
                name=template,
                type=mtype,
                scale=scale,
                each=each_path,
                optional=optional,
                location=mt.location,
            )
        )
    return tuple(rules)
