"""Query-string parsing for the viewer: every value is checked, every mistake is a clear 400."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from urllib.parse import parse_qs

from ..uri import URLError, parse_duration

__all__ = ["BadRequest", "Query", "parse_query"]

MAX_FIELDS = 32
MAX_TEXT = 256


class BadRequest(ValueError):
    """The request is malformed; the message says what to send instead (HTTP 400)."""


class Query:
    """The parsed query string of one request: one value per known name."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def text(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        if not value:
            return None
        if len(value) > MAX_TEXT:
            raise BadRequest(f"{name} is longer than {MAX_TEXT} characters")
        return value

    def flag(self, name: str) -> bool:
        value = self.values.get(name, "").strip().lower()
        if value in ("", "0", "false", "no", "off"):
            return False
        if value in ("1", "true", "yes", "on"):
            return True
        raise BadRequest(f"{name} must be 1 or 0 (true/false), not {_show(value)}")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.values.get(name, "").strip()
        if not value:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise BadRequest(f"{name} must be a whole number, not {_show(value)}") from None
        if not low <= number <= high:
            raise BadRequest(f"{name} must be between {low} and {high}, not {number}")
        return number

    def number(self, name: str, low: float, high: float) -> float | None:
        value = self.values.get(name, "").strip()
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            raise BadRequest(f"{name} must be a number, not {_show(value)}") from None
        if not low <= number <= high:  # also rejects nan
            raise BadRequest(f"{name} must be between {low:g} and {high:g}")
        return number

    def time_ns(self, name: str) -> int | None:
        """An ISO time (UTC unless it has an offset) or an age such as ``15m``, ``2h``."""
        value = self.values.get(name, "").strip()
        if not value:
            return None
        try:
            seconds = parse_duration(value)
        except URLError:
            pass
        else:
            if not math.isfinite(seconds):
                raise BadRequest(f"{name} is too far back")
            return _clamp(time.time_ns() - int(seconds * 1e9))
        try:
            dt = datetime.fromisoformat(value)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            stamp = dt.timestamp()
        except (ValueError, OverflowError):
            raise BadRequest(
                f"{name} must be an ISO time like 2026-11-22T10:00 or an age like 15m or 2h, "
                f"not {_show(value)}"
            ) from None
        return _clamp(int(stamp * 1e9))

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self.values.get(name, "").strip() or default
        if value not in options:
            raise BadRequest(f"{name} must be one of {', '.join(options)}, not {_show(value)}")
        return value

    def duration_seconds(self, name: str, default: float) -> float:
        value = self.values.get(name, "").strip()
        if not value:
            return default
        try:
            seconds = parse_duration(value)
        except URLError:
            raise BadRequest(
                f"{name} must be a duration like 30s, 15m, 1h or 1d, not {_show(value)}"
            ) from None
        if seconds <= 0:
            raise BadRequest(f"{name} must be longer than zero")
        if not math.isfinite(seconds):
            raise BadRequest(f"{name} is too long; write a duration like 1h or 7d")
        return seconds


def _clamp(ns: int) -> int:
    # Stores keep timestamps as signed 64-bit integers: stay inside, from the epoch on.
    return max(0, min(ns, 2**63 - 1))


def _show(value: str) -> str:
    # Echo a short, printable form of the bad value (it is escaped again where rendered).
    value = "".join(c if c.isprintable() else "?" for c in value)
    return repr(value if len(value) <= 40 else value[:37] + "...")


def parse_query(query_string: str, allowed: Iterable[str]) -> Query:
    """Parse a WSGI ``QUERY_STRING``; unknown, repeated or undecodable fields are a 400."""
    allowed = tuple(allowed)
    if not query_string:
        return Query({})
    try:
        raw = query_string.encode("latin-1")  # WSGI hands over the bytes as latin-1 text
        fields = parse_qs(
            raw.decode("ascii", "strict") if raw.isascii() else raw.decode("utf-8", "strict"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeError, ValueError):
        raise BadRequest(
            f"the query string is not valid UTF-8 URL encoding or has more than {MAX_FIELDS} fields"
        ) from None
    values: dict[str, str] = {}
    for name, items in fields.items():
        if name not in allowed:
            known = ", ".join(allowed) if allowed else "no parameters"
            raise BadRequest(f"unknown query parameter {_show(name)}; this page takes: {known}")
        if len(items) > 1:
            raise BadRequest(f"query parameter {name} is given {len(items)} times; give it once")
        values[name] = items[0]
    return Query(values)
