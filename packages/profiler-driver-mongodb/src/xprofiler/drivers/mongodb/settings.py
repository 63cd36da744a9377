"""From a parsed connection string to what the driver and pymongo need.

Everything here runs at construction time and never contacts a server (not even DNS for
``mongodb+srv``): the options pymongo knows are checked with pymongo's own validators, ours
(``collection``, ``ttl``) are taken out, and the rest is re-rendered into the URI the client
is built from later.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from xprofiler.core.errors import DriverError
from xprofiler.core.uri import URL, URLError

__all__ = [
    "MongoSettings",
    "parse_settings",
    "DEFAULT_DATABASE",
    "DEFAULT_COLLECTION",
    "DEFAULT_TIMEOUTS_MS",
]

DEFAULT_DATABASE = "xprofiler"
DEFAULT_COLLECTION = "points"
SUMMARY_SUFFIX = "_traces"
LOCK_SUFFIX = "_locks"  # used only on servers without atomic updates (FerretDB 1.x)

# A tracer must give up quickly: the dispatcher retries, and a reader (CLI, web) wants an
# answer. Each one is overridden by the same pymongo option in the connection string.
DEFAULT_TIMEOUTS_MS: dict[str, int] = {
    "serverSelectionTimeoutMS": 3000,
    "connectTimeoutMS": 3000,
    "socketTimeoutMS": 10000,
}

# Options this driver reads itself; they are never passed to pymongo.
OWN_OPTIONS = ("collection", "ttl")

# pymongo reads these two raw (no percent-decoding), so ':' and ',' must stay literal.
_RAW_OPTIONS = {"authmechanismproperties", "readpreferencetags"}
# Only valid with mongodb+srv:// (pymongo rejects them otherwise, we do it before connecting).
_SRV_ONLY = {"srvservicename", "srvmaxhosts"}

_BAD_DB_CHARS = re.compile(r"[\s./\\*\"$<>:|?\x00]")


@dataclass(frozen=True)
class MongoSettings:
    """The checked settings of one driver. ``client_uri`` holds the password: never log it."""

    safe_uri: str  # the connection string with the password masked, for messages
    client_uri: str = field(repr=False)
    client_kwargs: dict[str, Any]
    database: str
    collection: str
    summary_collection: str
    lock_collection: str
    ttl_seconds: int | None
    password: str | None = field(default=None, repr=False)


def _fail(safe_uri: str, what: str) -> DriverError:
    return DriverError(f"bad MongoDB connection string {safe_uri}: {what}")


def _scrub(text: str, password: str | None) -> str:
    if password:
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, "***")
    return text


def _check_database(name: str, safe_uri: str) -> None:
    if not name or len(name.encode()) >= 64 or _BAD_DB_CHARS.search(name):
        raise _fail(
            safe_uri,
            "the database name (the path) must be 1 to 63 bytes without spaces or any of "
            '/ \\ . " $ * < > : | ? ; for example mongodb://host:27017/xprofiler',
        )


def _check_collection(name: str, safe_uri: str) -> None:
    if (
        not name
        or "$" in name
        or "\x00" in name
        or name.startswith("system.")
        or len(name.encode()) > 120
    ):
        raise _fail(
            safe_uri,
            "option 'collection' must be 1 to 120 bytes, without '$', and must not start "
            "with 'system.'; for example ?collection=points",
        )


def _validate_client_options(items: list[tuple[str, str]], url: URL, safe_uri: str) -> None:
    """Run pymongo's own option validators (no I/O) so a bad option fails at construction."""
    from pymongo.errors import ConfigurationError
    from pymongo.uri_parser import split_options

    lowered = {k.lower(): v for k, v in items}
    srv = url.scheme == "mongodb+srv"
    if not srv:
        for key in _SRV_ONLY & lowered.keys():
            raise _fail(safe_uri, f"option {key!r} is only valid with mongodb+srv://")
    if len(url.hosts) > 1 and lowered.get("directconnection", "").lower() == "true":
        raise _fail(safe_uri, "directConnection=true cannot be used with several hosts")
    if not items:
        return
    text = "&".join(f"{k}={_quote_value(k, v)}" for k, v in items)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymongo warns about repeated options
            split_options(text, validate=True, warn=False)
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise _fail(safe_uri, _scrub(str(exc), url.password)) from None


def _quote_value(key: str, value: str) -> str:
    if key.lower() in _RAW_OPTIONS:
        return quote(value, safe=":,")
    return quote(value, safe="")


def _render_client_uri(url: URL, items: list[tuple[str, str]]) -> str:
    out = [url.scheme, "://"]
    if url.username is not None:
        out.append(quote(url.username, safe=""))
        if url.password is not None:
            out.append(":" + quote(url.password, safe=""))
        out.append("@")
    hosts = []
    for host, port in url.hosts:
        h = f"[{host}]" if ":" in host else quote(host, safe="")
        hosts.append(h if port is None else f"{h}:{port}")
    out.append(",".join(hosts))
    if url.database is not None:
        # Keep the path as written: pymongo uses it as the default authSource.
        out.append("/" + quote(url.database, safe=""))
    if items:
        out.append("?" + "&".join(f"{quote(k, safe='')}={_quote_value(k, v)}" for k, v in items))
    return "".join(out)


def parse_settings(url: URL) -> MongoSettings:
    """Check ``url`` and derive the driver's settings. Raises DriverError/URLError if bad."""
    safe_uri = url.render(hide_password=True)
    if url.scheme not in ("mongodb", "mongodb+srv"):
        raise _fail(safe_uri, "the scheme must be mongodb:// or mongodb+srv://")
    if not url.hosts:
        raise _fail(safe_uri, "no host; write mongodb://host:27017/database")
    if url.scheme == "mongodb+srv":
        if len(url.hosts) != 1:
            raise _fail(safe_uri, "mongodb+srv:// takes exactly one host name (the SRV record)")
        if url.port is not None:
            raise _fail(safe_uri, "mongodb+srv:// host names take no port number")

    # The path is "database" or, as pymongo also reads it, "database.collection".
    database, collection_in_path = DEFAULT_DATABASE, None
    if url.database is not None:
        database, dot, rest = url.database.partition(".")
        collection_in_path = rest if dot else None
    _check_database(database, safe_uri)

    collection_opt = url.get("collection")
    if collection_opt is not None and collection_in_path not in (None, collection_opt):
        raise _fail(
            safe_uri,
            "the collection is given twice (in the path and as ?collection=); keep one",
        )
    collection = collection_opt or collection_in_path or DEFAULT_COLLECTION
    _check_collection(collection, safe_uri)

    ttl_seconds: int | None = None
    try:
        ttl = url.get_duration("ttl")
    except URLError as exc:
        raise _fail(safe_uri, str(exc)) from None
    if ttl is not None:
        if ttl < 1:
            raise _fail(
                safe_uri,
                "option 'ttl' must be at least 1s (for example ?ttl=7d); "
                "leave it out to keep traces forever",
            )
        ttl_seconds = round(ttl)

    items = [(k, v) for k, v in url.query if k not in OWN_OPTIONS]
    _validate_client_options(items, url, safe_uri)

    given = {k.lower() for k, _ in items}
    kwargs: dict[str, Any] = {
        k: v for k, v in DEFAULT_TIMEOUTS_MS.items() if k.lower() not in given
    }
    if "appname" not in given:
        kwargs["appname"] = "xprofiler"

    return MongoSettings(
        safe_uri=safe_uri,
        client_uri=_render_client_uri(url, items),
        client_kwargs=kwargs,
        database=database,
        collection=collection,
        summary_collection=collection + SUMMARY_SUFFIX,
        lock_collection=collection + LOCK_SUFFIX,
        ttl_seconds=ttl_seconds,
        password=url.password,
    )
