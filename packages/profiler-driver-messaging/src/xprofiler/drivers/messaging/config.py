"""The bus connection string: ``redis://[user:pw@]host[:port][/db][?options]``.

Options (all optional):

* ``stream`` (default ``xprofiler``): the stream's key. Related keys share it as a prefix:
  ``<stream>:dead`` (dead-letter stream), ``<stream>:collectors`` (collector counters),
  ``<stream>:stats`` (bus-wide counters).
* ``group`` (default ``xprofiler-collectors``): the collectors' consumer group.
* ``maxlen`` (default 10000, 0 = unbounded): the backlog bound, in stream entries.
* ``entry_size`` (default 500): at most this many points per stream entry.
* ``store``: the store collectors write to and readers read from, percent-encoded.
* ``timeout`` (default 5s), ``connect_timeout`` (default 3s).
* ``rediss`` only: ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` (paths),
  ``ssl_cert_reqs`` (``required``/``optional``/``none``), ``ssl_check_hostname`` (bool).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from xprofiler.core.errors import DriverError
from xprofiler.core.uri import URL, URLError, parse_url

__all__ = ["BusConfig", "parse_bus_url", "masked_url", "DEFAULTS"]

DEFAULTS: dict[str, Any] = {
    "stream": "xprofiler",
    "group": "xprofiler-collectors",
    "maxlen": 10_000,
    "entry_size": 500,
    "timeout": 5.0,
    "connect_timeout": 3.0,
}

_COMMON = {"stream", "group", "maxlen", "entry_size", "store", "timeout", "connect_timeout"}
_SSL = {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
_KEY_RE = re.compile(r"^[A-Za-z0-9_.:{}\-]{1,200}$")
_MAX_ENTRY_SIZE = 10_000


@dataclass(frozen=True)
class BusConfig:
    """Everything the producer and the collectors need, validated."""

    url: URL  # as given (holds the passwords: never render it unmasked in a message)
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    ssl: bool
    ssl_options: tuple[tuple[str, Any], ...]
    stream: str
    group: str
    maxlen: int
    entry_size: int
    store: str | None
    timeout: float
    connect_timeout: float

    @property
    def dead_key(self) -> str:
        return f"{self.stream}:dead"

    @property
    def collectors_key(self) -> str:
        return f"{self.stream}:collectors"

    @property
    def stats_key(self) -> str:
        return f"{self.stream}:stats"

    @property
    def where(self) -> str:
        """The bus, for messages: no credentials, no store URI."""
        return f"{self.url.scheme}://{self.host}:{self.port}/{self.db} stream {self.stream!r}"

    def client_kwargs(self, *, socket_timeout: float | None = None) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis``: bounded timeouts, no hidden retries."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "socket_timeout": socket_timeout if socket_timeout is not None else self.timeout,
            "socket_connect_timeout": self.connect_timeout,
            "health_check_interval": 30,
        }
        if self.ssl:
            kwargs["ssl"] = True
            kwargs.update(dict(self.ssl_options))
        return kwargs


def _fail(message: str) -> DriverError:
    return DriverError(f"redis bus connection string: {message}")


def parse_bus_url(value: str | URL) -> BusConfig:
    """Validate a bus connection string. Raises URLError/DriverError naming what to fix."""
    url = parse_url(value)
    if url.scheme not in ("redis", "rediss"):
        raise _fail(f"scheme must be redis or rediss, not {url.scheme!r}")
    if len(url.hosts) != 1:
        raise _fail(
            "name exactly one host, e.g. redis://127.0.0.1:6379/0 (Sentinel and Cluster are "
            "not supported)"
        )
    host, port = url.hosts[0]
    db = 0
    if url.database is not None:
        if not url.database.isdigit():
            raise _fail("the path is the database number, e.g. redis://host:6379/0")
        db = int(url.database)
    allowed = _COMMON | (_SSL if url.scheme == "rediss" else set())
    unknown = sorted({k for k, _ in url.query} - allowed)
    if unknown:
        raise _fail(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
            + ("" if url.scheme == "rediss" else " (ssl_* options need rediss://)")
        )
    stream = url.get("stream", DEFAULTS["stream"]) or ""
    group = url.get("group", DEFAULTS["group"]) or ""
    for key, name in (("stream", stream), ("group", group)):
        if not _KEY_RE.match(name):
            raise _fail(f"option {key!r} must be 1-200 characters of letters, digits and _.:{{}}-")
    maxlen = url.get_int("maxlen", DEFAULTS["maxlen"])
    assert maxlen is not None
    if maxlen < 0:
        raise _fail("option 'maxlen' must be 0 (unbounded) or a positive number of entries")
    entry_size = url.get_int("entry_size", DEFAULTS["entry_size"])
    assert entry_size is not None
    if not 1 <= entry_size <= _MAX_ENTRY_SIZE:
        raise _fail(f"option 'entry_size' must be between 1 and {_MAX_ENTRY_SIZE} points")
    timeout = url.get_duration("timeout", DEFAULTS["timeout"])
    connect_timeout = url.get_duration("connect_timeout", DEFAULTS["connect_timeout"])
    assert timeout is not None and connect_timeout is not None
    if not (0 < timeout <= 300 and 0 < connect_timeout <= 300):
        raise _fail("options 'timeout' and 'connect_timeout' must be between 0 and 300s")
    store = url.get("store")
    if store is not None:
        store = store.strip()
        if not store:
            raise _fail(
                "option 'store' is empty; give a store URI, e.g. store=sqlite%3A%2F%2F%2Fx.db"
            )
        try:
            inner = parse_url(store)
        except URLError as exc:
            raise _fail(f"option 'store' is not a connection string ({exc})") from None
        if inner.scheme in ("redis", "rediss"):
            raise _fail("option 'store' must name a store (sqlite, mongodb, ...), not another bus")
    ssl_options: list[tuple[str, Any]] = []
    if url.scheme == "rediss":
        for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if url.get(key) is not None:
                ssl_options.append((key, url.get(key)))
        reqs = url.get("ssl_cert_reqs")
        if reqs is not None:
            if reqs not in ("required", "optional", "none"):
                raise _fail("option 'ssl_cert_reqs' must be required, optional or none")
            ssl_options.append(("ssl_cert_reqs", reqs))
        check = url.get_bool("ssl_check_hostname")
        if check is not None:
            ssl_options.append(("ssl_check_hostname", check))
    return BusConfig(
        url=url,
        host=host,
        port=port or 6379,
        db=db,
        username=url.username,
        password=url.password,
        ssl=url.scheme == "rediss",
        ssl_options=tuple(ssl_options),
        stream=stream,
        group=group,
        maxlen=maxlen,
        entry_size=entry_size,
        store=store,
        timeout=timeout,
        connect_timeout=connect_timeout,
    )


def masked_url(url: URL) -> URL:
    """``url`` with the nested store URI's password masked too (core masks only the bus's)."""
    store = url.get("store")
    if store is None:
        return url
    try:
        shown = parse_url(store).render(hide_password=True)
    except URLError:
        shown = "<unparsable>"
    return url.with_options(store=shown)
