"""Stream entries: how a batch of points is written to the bus and read back.

One entry carries up to ``entry_size`` points (a dispatcher batch is usually one entry)::

    v = "1"                  format version
    n = "<count>"            number of points, checked on read (a truncated entry is refused)
    p = "[{point}, ...]"     the points as a JSON array (ASCII; non-ASCII escaped)

An entry per batch rather than per point: one XADD, one stream entry, one consumer-group
delivery and one XACK per few hundred points instead of per point. bench/bench_messaging.py
measures both in one run: one entry per point published at 1/1.2 to 1/2.4 of the rate even
pipelined, and Redis held about 10% more memory per point (entry ids and headers per point).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xprofiler.core.errors import DriverError
from xprofiler.core.points import Point

__all__ = [
    "FORMAT_VERSION",
    "Decoded",
    "MalformedEntry",
    "encode",
    "decode",
    "check_point",
]

FORMAT_VERSION = b"1"

_STR_KEYS = ("id", "base_id", "trace_id", "parent_id", "name", "service", "project", "host")
_MAX_REASON = 300


class MalformedEntry(ValueError):
    """A stream entry that is not a batch of points in a format this collector reads."""


@dataclass
class Decoded:
    points: list[Point] = field(default_factory=list)
    # Points that are not valid points: (reason, the point's JSON text).
    bad: list[tuple[str, str]] = field(default_factory=list)


def encode(points: Sequence[Point], entry_size: int) -> list[dict[bytes, bytes]]:
    """Stream entries (field maps) for a batch. Raises DriverError for a non-JSON point."""
    out: list[dict[bytes, bytes]] = []
    dumps = json.JSONEncoder(separators=(",", ":"), check_circular=True).encode
    for start in range(0, len(points), entry_size):
        chunk = list(points[start : start + entry_size])
        try:
            payload = dumps(chunk)
        except (TypeError, ValueError) as exc:
            raise DriverError(
                f"a trace point cannot be written to the bus ({type(exc).__name__}: "
                f"{str(exc)[:200]}); points' info must be JSON-safe (the dispatcher makes it so)"
            ) from None
        out.append({b"v": FORMAT_VERSION, b"n": str(len(chunk)).encode(), b"p": payload.encode()})
    return out


def _reason(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def check_point(p: Any) -> str | None:
    """Why ``p`` is not a storable point, or None when it is one."""
    if not isinstance(p, dict):
        return f"a point must be a JSON object, not {type(p).__name__}"
    for key in _STR_KEYS:
        if not isinstance(p.get(key), str) or not p[key]:
            return f"point field {key!r} must be a non-empty string"
    if p.get("event") not in ("start", "stop"):
        return "point field 'event' must be 'start' or 'stop'"
    ts = p.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < 2**63:
        return "point field 'timestamp' must be an integer of nanoseconds since the epoch"
    if not isinstance(p.get("error"), bool):
        return "point field 'error' must be true or false"
    if not isinstance(p.get("info"), dict):
        return "point field 'info' must be an object"
    return None


def decode(fields: Mapping[bytes, bytes] | None) -> Decoded:
    """The points of one entry; MalformedEntry when the entry as a whole cannot be read."""
    if not fields:
        raise MalformedEntry("the entry has no fields")
    version = fields.get(b"v")
    if version != FORMAT_VERSION:
        shown = "missing" if version is None else repr(version[:20])
        raise MalformedEntry(
            f"unknown entry format version ({shown}); this collector reads version 1 "
            "(upgrade the collector if producers are newer)"
        )
    raw = fields.get(b"p")
    if raw is None:
        raise MalformedEntry("the entry has no 'p' (points) field")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise MalformedEntry("the points field is not UTF-8") from None
    except ValueError as exc:
        raise MalformedEntry(_reason(f"the points field is not JSON ({exc})")) from None
    if not isinstance(data, list):
        raise MalformedEntry("the points field must be a JSON array")
    count = fields.get(b"n")
    if count is not None and count != str(len(data)).encode():
        raise MalformedEntry(
            f"the entry says it holds {count[:20]!r} points but carries {len(data)} "
            "(truncated or altered)"
        )
    out = Decoded()
    for p in data:
        why = check_point(p)
        if why is None:
            out.points.append(p)
        else:
            out.bad.append((why, json.dumps(p, separators=(",", ":"))[:65536]))
    return out
