"""Metric names: sanitising parts that come from JSON, and name templates.

A StatsD line is ``name:value|type[|@rate]``, several per datagram separated by
newlines, and Graphite splits names on dots. A project or table name taken from
a response could therefore carry ``:``, ``|``, ``@``, a newline, a space, a dot
or a slash and add a metric, change a value's type or move a value to another
name. Every part taken from JSON is passed through :func:`sanitize_part`, which
keeps only ``[A-Za-z0-9_-]`` (one ``_`` per other character, so a non-ASCII
letter also becomes ``_``) and bounds the length. Names written in the config
are checked against the same alphabet, so a finished name is always parts of
that alphabet joined by single dots.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import jsonpath

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PART = re.compile(r"[A-Za-z0-9_-]+")
DEFAULT_MAX_PART = 64
_HASH_LEN = 8


def sanitize_part(raw: str, max_len: int = DEFAULT_MAX_PART) -> str:
    """Return ``raw`` as one safe name part of at most ``max_len`` characters.

    A part longer than ``max_len`` keeps its start and ends with ``_`` plus a
    short hash of the whole original, so two long names that share a prefix
    stay two names.
    """
    safe = _UNSAFE.sub("_", raw)
    if not safe:
        safe = "_"
    if len(safe) > max_len:
        digest = hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
        keep = max(1, max_len - _HASH_LEN - 1)
        safe = f"{safe[:keep]}_{digest}"
    return safe


def is_safe_name(name: str) -> bool:
    """True when ``name`` is dot-separated parts of the safe alphabet (no empty part)."""
    return bool(name) and all(_PART.fullmatch(p) for p in name.split("."))


def join(*parts: str) -> str:
    """Join already-safe names, skipping empty ones."""
    return ".".join(p for p in parts if p)


class TemplateError(ValueError):
    """A name template in the config is malformed; the message says how to fix it."""


class NameRejected(Exception):
    """A template could not be filled from this JSON item (missing or non-scalar part)."""


@dataclass(frozen=True)
class _Capture:
    number: int  # 0 means "the last wildcard"


@dataclass(frozen=True)
class _Field:
    path: jsonpath.JsonPath


_Token = str | _Capture | _Field


@dataclass(frozen=True)
class NameTemplate:
    """A metric name with ``{...}`` placeholders, e.g. ``queues.{name}.depth``.

    ``{*}`` is the key/index captured by the last wildcard of the value path,
    ``{*1}``, ``{*2}``... the first, second... wildcard; ``{path}`` is a string
    or integer read at ``path`` relative to the item selected by ``each`` (or the
    document root). Every placeholder fills (part of) one dot-separated part
    and is sanitised.
    """

    text: str
    parts: tuple[tuple[_Token, ...], ...]

    @property
    def fields(self) -> list[jsonpath.JsonPath]:
        return [t.path for part in self.parts for t in part if isinstance(t, _Field)]

    @property
    def max_capture(self) -> int:
        numbers = [t.number for part in self.parts for t in part if isinstance(t, _Capture)]
        return max(numbers, default=-1)

    def render(self, captures: Sequence[str], item: Any, max_part: int) -> str:
        out: list[str] = []
        for part in self.parts:
            pieces: list[str] = []
            for tok in part:
                if isinstance(tok, str):
                    pieces.append(tok)
                    continue
                if isinstance(tok, _Capture):
                    if not captures or tok.number > len(captures):
                        raise NameRejected(f"{{*{tok.number or ''}}} has no wildcard to fill it")
                    raw = captures[-1] if tok.number == 0 else captures[tok.number - 1]
                else:
                    try:
                        value = tok.path.get(item)
                    except (jsonpath.PathMissing, jsonpath.PathShape) as exc:
                        raise NameRejected(str(exc)) from None
                    if isinstance(value, bool) or not isinstance(value, (str, int)):
                        raise NameRejected(
                            f"{{{tok.path.text}}} is {type(value).__name__}, not a string"
                        )
                    raw = str(value)
                pieces.append(sanitize_part(raw, max_part))
            joined = "".join(pieces)
            if len(joined) > max_part and len(part) > 1:
                joined = sanitize_part(joined, max_part)
            out.append(joined)
        return ".".join(out)


def parse_template(text: str) -> NameTemplate:
    """Parse a name template; raise :class:`TemplateError` with what to change."""
    if not isinstance(text, str) or not text:
        raise TemplateError("a metric name must be a non-empty string such as 'queue.{*}.depth'")
    parts: list[tuple[_Token, ...]] = []
    for raw_part in _split_parts(text):
        if raw_part == "":
            raise TemplateError(f"name {text!r} has an empty part (two dots, or a dot at an end)")
        tokens: list[_Token] = []
        i = 0
        while i < len(raw_part):
            j = raw_part.find("{", i)
            literal = raw_part[i:] if j < 0 else raw_part[i:j]
            if literal:
                if "}" in literal:
                    raise TemplateError(f"name {text!r}: '}}' without '{{'")
                if not _PART.fullmatch(literal):
                    raise TemplateError(
                        f"name {text!r}: {literal!r} may only hold letters A-Z a-z, digits, "
                        "'_' and '-' (parts taken from JSON go in {...} and are sanitised)"
                    )
                tokens.append(literal)
            if j < 0:
                break
            k = raw_part.find("}", j)
            if k < 0:
                raise TemplateError(f"name {text!r}: '{{' is never closed")
            inner = raw_part[j + 1 : k].strip()
            tokens.append(_placeholder(inner, text))
            i = k + 1
        parts.append(tuple(tokens))
    return NameTemplate(text=text, parts=tuple(parts))


def _split_parts(text: str) -> list[str]:
    """Split on dots that are outside ``{...}`` (a field path may contain dots)."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for c in text:
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        if c == "." and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def _placeholder(inner: str, text: str) -> _Token:
    if inner == "*":
        return _Capture(0)
    if inner.startswith("*"):
        digits = inner[1:]
        if not digits.isdigit() or int(digits) < 1:
            raise TemplateError(f"name {text!r}: {{{inner}}} must be {{*}} or {{*1}}, {{*2}}...")
        return _Capture(int(digits))
    try:
        path = jsonpath.parse(inner)
    except jsonpath.PathSyntaxError as exc:
        raise TemplateError(f"name {text!r}: placeholder {{{inner}}}: {exc}") from None
    if path.wildcards:
        raise TemplateError(
            f"name {text!r}: placeholder {{{inner}}} may not hold a wildcard; "
            "use {*} to name the member a wildcard walked over"
        )
    return _Field(path)
