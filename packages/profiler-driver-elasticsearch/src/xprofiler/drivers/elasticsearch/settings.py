"""Connection string -> validated settings, without contacting the server.

``elasticsearch://[user[:password]@]host[:port][,host[:port]...][/index_prefix][?options]``
(plain HTTP) or ``elasticsearch+https://...`` (TLS). See the package README for the options.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from xprofiler.core.errors import DriverError
from xprofiler.core.uri import URL, URLError

__all__ = ["Settings", "parse_settings", "KNOWN_OPTIONS", "SECRET_OPTIONS", "DEFAULT_PREFIX"]

DEFAULT_PORT = 9200
DEFAULT_PREFIX = "xprofiler"
PERIODS = ("day", "month")
_PERIOD_ALIASES = {"day": "day", "daily": "day", "month": "month", "monthly": "month"}
# Lowercase letters, digits and '_' only: no '-', so the read pattern "<prefix>-*" of one store
# can never match the indices of another store whose prefix merely starts with this one.
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,99}$")

TLS_OPTIONS = (
    "ca_certs",
    "verify_certs",
    "client_cert",
    "client_key",
    "ssl_assert_fingerprint",
)
SECRET_OPTIONS = ("api_key",)
KNOWN_OPTIONS = (
    "index_prefix",
    "index_period",
    "api_key",
    "timeout",
    "read_timeout",
    "max_retries",
    "bulk_size",
    "shards",
    "replicas",
    "retention_days",
    "refresh_on_read",
    *TLS_OPTIONS,
)


@dataclass(frozen=True)
class Settings:
    """Everything the driver needs from its connection string."""

    where: str  # the connection string with every secret masked: for messages and logs
    scheme: str  # "http" or "https"
    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | tuple[str, str] | None = field(default=None, repr=False)
    prefix: str = DEFAULT_PREFIX
    period: str = "day"
    timeout: float = 10.0
    read_timeout: float = 30.0
    max_retries: int = 2
    bulk_size: int = 1000
    shards: int = 1
    replicas: int | None = None
    retention_days: int | None = None
    refresh_on_read: bool = True
    tls: dict[str, Any] = field(default_factory=dict)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret string, for scrubbing messages (longest first)."""
        found: list[str] = []
        if self.password:
            found.append(self.password)
        if isinstance(self.api_key, tuple):
            found.extend(s for s in self.api_key if s)
        elif self.api_key:
            found.append(self.api_key)
        return tuple(sorted({s for s in found if len(s) >= 1}, key=len, reverse=True))


def masked_url(url: URL) -> URL:
    """``url`` with secret options (the API key) replaced by ``***`` (belt and braces: URL's
    own rendering masks the password and options named like secrets too)."""
    hidden = {k: "***" for k in SECRET_OPTIONS if url.get(k) is not None}
    return url.with_options(**hidden) if hidden else url


def _fail(where: str, what: str) -> DriverError:
    return DriverError(f"bad Elasticsearch connection string {where}: {what}")


def parse_settings(url: URL) -> Settings:
    """Validate ``url`` and return the settings; raise DriverError saying what to fix."""
    where = masked_url(url).render(hide_password=True)
    if url.base_scheme != "elasticsearch" or url.scheme not in (
        "elasticsearch",
        "elasticsearch+https",
    ):
        raise _fail(where, "the scheme must be elasticsearch:// or elasticsearch+https://")
    scheme = "https" if url.scheme == "elasticsearch+https" else "http"

    unknown = sorted({k for k, _ in url.query} - set(KNOWN_OPTIONS))
    if unknown:
        raise _fail(
            where,
            f"unknown option(s) {', '.join(unknown)}; known options: {', '.join(KNOWN_OPTIONS)}",
        )

    hosts = tuple((h, p if p is not None else DEFAULT_PORT) for h, p in url.hosts) or (
        ("localhost", DEFAULT_PORT),
    )

    try:
        prefix_opt = url.get("index_prefix")
        if prefix_opt is not None and url.database is not None and prefix_opt != url.database:
            raise _fail(
                where,
                "the index prefix is given twice (as the path and as ?index_prefix=) with "
                "different values; keep one",
            )
        prefix = prefix_opt if prefix_opt is not None else (url.database or DEFAULT_PREFIX)
        if not _PREFIX_RE.match(prefix):
            raise _fail(
                where,
                "the index prefix must be 1 to 100 characters of lowercase letters, digits and "
                "'_', starting with a letter or digit (no '-': indices are named "
                "<prefix>-YYYY.MM.DD)",
            )

        period_raw = (url.get("index_period") or "day").lower()
        period = _PERIOD_ALIASES.get(period_raw)
        if period is None:
            raise _fail(where, "option 'index_period' must be day (the default) or month")

        timeout = url.get_duration("timeout", 10.0)
        read_timeout = url.get_duration("read_timeout", 30.0)
        for name, value in (("timeout", timeout), ("read_timeout", read_timeout)):
            if value is None or not 0 < value <= 600:
                raise _fail(where, f"option {name!r} must be between 1ms and 10m, e.g. 10s")

        max_retries = _int_in(url, where, "max_retries", 2, 0, 10)
        bulk_size = _int_in(url, where, "bulk_size", 1000, 1, 10_000)
        shards = _int_in(url, where, "shards", 1, 1, 64)
        replicas = _int_in(url, where, "replicas", None, 0, 16)
        retention_days = _int_in(url, where, "retention_days", None, 1, 100_000)
        refresh_on_read = url.get_bool("refresh_on_read", True)
        assert refresh_on_read is not None

        api_key: str | tuple[str, str] | None = None
        raw_key = url.get("api_key")
        if raw_key is not None:
            if not raw_key:
                raise _fail(where, "option 'api_key' is empty")
            if url.username is not None or url.password is not None:
                raise _fail(where, "give either user:password or api_key, not both")
            # "id:key" as two parts, otherwise the base64 "encoded" form the server hands out.
            ident, colon, secret = raw_key.partition(":")
            api_key = (ident, secret) if colon else raw_key

        tls = _tls_options(url, where, scheme)
    except URLError as exc:
        raise _fail(where, str(exc)) from None

    return Settings(
        where=where,
        scheme=scheme,
        hosts=hosts,
        username=url.username,
        password=url.password,
        api_key=api_key,
        prefix=prefix,
        period=period,
        timeout=float(timeout),
        read_timeout=float(read_timeout),
        max_retries=max_retries if max_retries is not None else 2,
        bulk_size=bulk_size if bulk_size is not None else 1000,
        shards=shards if shards is not None else 1,
        replicas=replicas,
        retention_days=retention_days,
        refresh_on_read=refresh_on_read,
        tls=tls,
    )


def _int_in(url: URL, where: str, key: str, default: int | None, low: int, high: int) -> int | None:
    value = url.get_int(key, default)
    if value is not None and not low <= value <= high:
        raise _fail(where, f"option {key!r} must be between {low} and {high}, got {value}")
    return value


def _tls_options(url: URL, where: str, scheme: str) -> dict[str, Any]:
    given = [k for k in TLS_OPTIONS if url.get(k) is not None]
    if given and scheme != "https":
        raise _fail(
            where,
            f"TLS option(s) {', '.join(given)} need the elasticsearch+https:// scheme",
        )
    tls: dict[str, Any] = {}
    for key in ("ca_certs", "client_cert", "client_key"):
        path = url.get(key)
        if path is None:
            continue
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            raise _fail(where, f"option {key!r}: no such file {path!r}")
        tls[key] = path
    if ("client_cert" in tls) != ("client_key" in tls):
        raise _fail(where, "client_cert and client_key must be given together")
    verify = url.get_bool("verify_certs")
    if verify is not None:
        tls["verify_certs"] = verify
        if not verify:
            tls["ssl_show_warn"] = False
    fingerprint = url.get("ssl_assert_fingerprint")
    if fingerprint is not None:
        cleaned = fingerprint.replace(":", "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", cleaned):
            raise _fail(
                where,
                "option 'ssl_assert_fingerprint' must be a SHA-256 fingerprint "
                "(64 hex digits, colons allowed)",
            )
        tls["ssl_assert_fingerprint"] = cleaned
    return tls
