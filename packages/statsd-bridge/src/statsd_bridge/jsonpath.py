"""A small JSON path language: enough to point at numbers in a monitoring response.

Syntax (``$`` optional at the start)::

    $.services.*.traces      key, then every member of an object, then key
    queues[*].depth          every item of a list
    items[0].size            one list item
    stats["disk.used"]       a key that holds dots or other punctuation

``*`` / ``[*]`` is a wildcard: it walks every member of an object (capturing
its key) or every item of a list (capturing its index). Captures are what a
metric name template refers to as ``{*}``, ``{*1}``, ``{*2}``...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class PathSyntaxError(ValueError):
    """A path in the config does not parse; the message says where."""


class PathMissing(LookupError):
    """A key or index named by a path is not in the document."""


class PathShape(TypeError):
    """The document has another shape than the path expects (e.g. a key into a list)."""


@dataclass(frozen=True)
class Key:
    name: str


@dataclass(frozen=True)
class Index:
    index: int


@dataclass(frozen=True)
class Wildcard:
    pass


Segment = Key | Index | Wildcard

_BARE_STOP = set(".[]'\"*{} \t\n")


@dataclass(frozen=True)
class JsonPath:
    text: str
    segments: tuple[Segment, ...]

    @property
    def wildcards(self) -> int:
        return sum(1 for s in self.segments if isinstance(s, Wildcard))

    def select(self, doc: Any, skip_missing: bool = False) -> Iterator[tuple[tuple[str, ...], Any]]:
        """Yield ``(captures, value)`` for every match.

        A missing key or index raises :class:`PathMissing`, or with
        ``skip_missing`` drops just that match (the other members a wildcard
        walks over are still yielded).
        """
        yield from _walk(self, self.segments, doc, (), skip_missing)

    def get(self, doc: Any) -> Any:
        """The single value at a path without wildcards."""
        if self.wildcards:
            raise PathShape(f"path {self.text!r} has wildcards; it selects many values")
        for _caps, value in self.select(doc):
            return value
        raise PathMissing(self.text)  # pragma: no cover - select always yields or raises

    def __str__(self) -> str:
        return self.text


def _walk(
    path: JsonPath,
    segments: tuple[Segment, ...],
    node: Any,
    caps: tuple[str, ...],
    skip: bool,
) -> Iterator[tuple[tuple[str, ...], Any]]:
    if not segments:
        yield caps, node
        return
    seg, rest = segments[0], segments[1:]
    if isinstance(seg, Key):
        if not isinstance(node, dict):
            raise PathShape(f"{path.text}: expected an object before {seg.name!r}")
        if seg.name not in node:
            if skip:
                return
            raise PathMissing(f"{path.text}: no key {seg.name!r}")
        yield from _walk(path, rest, node[seg.name], caps, skip)
    elif isinstance(seg, Index):
        if not isinstance(node, list):
            raise PathShape(f"{path.text}: expected a list before [{seg.index}]")
        try:
            item = node[seg.index]
        except IndexError:
            if skip:
                return
            raise PathMissing(f"{path.text}: no item [{seg.index}]") from None
        yield from _walk(path, rest, item, caps, skip)
    else:
        if isinstance(node, dict):
            for key, item in node.items():
                yield from _walk(path, rest, item, (*caps, str(key)), skip)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from _walk(path, rest, item, (*caps, str(i)), skip)
        else:
            raise PathShape(f"{path.text}: expected an object or a list at '*'")


def parse(text: str) -> JsonPath:
    """Parse a path; raise :class:`PathSyntaxError` naming the offending column."""
    if not isinstance(text, str) or not text.strip():
        raise PathSyntaxError("a path must be a non-empty string such as '$.stats.size'")
    s = text.strip()
    segs: list[Segment] = []
    i = 0
    if s.startswith("$"):
        i = 1
    first = True
    n = len(s)
    while i < n:
        c = s[i]
        if c == ".":
            i += 1
            if i < n and s[i] == "*":
                segs.append(Wildcard())
                i += 1
            else:
                name, i = _bare(s, i, text)
                segs.append(Key(name))
        elif c == "[":
            i += 1
            if i < n and s[i] == "*":
                i += 1
                _expect(s, i, "]", text)
                segs.append(Wildcard())
                i += 1
            elif i < n and s[i] in "'\"":
                name, i = _quoted(s, i, text)
                _expect(s, i, "]", text)
                segs.append(Key(name))
                i += 1
            else:
                j = s.find("]", i)
                if j < 0:
                    raise PathSyntaxError(f"path {text!r}: '[' at column {i} is never closed")
                body = s[i:j]
                if not body.isdigit():
                    raise PathSyntaxError(
                        f"path {text!r}: [{body}] must be a list index, [*] or a quoted key"
                    )
                segs.append(Index(int(body)))
                i = j + 1
        elif first and c == "*":
            segs.append(Wildcard())
            i += 1
        elif first and s[0] != "$":
            name, i = _bare(s, i, text)
            segs.append(Key(name))
        else:
            raise PathSyntaxError(
                f"path {text!r}: unexpected {c!r} at column {i + 1}; "
                "separate keys with '.', e.g. '$.a.b[0]'"
            )
        first = False
    return JsonPath(text=s, segments=tuple(segs))


def _bare(s: str, i: int, text: str) -> tuple[str, int]:
    j = i
    while j < len(s) and s[j] not in _BARE_STOP:
        j += 1
    if j == i:
        raise PathSyntaxError(
            f"path {text!r}: expected a key name at column {i + 1} "
            '(quote keys holding punctuation: ["a.b"])'
        )
    return s[i:j], j


def _quoted(s: str, i: int, text: str) -> tuple[str, int]:
    quote = s[i]
    i += 1
    out: list[str] = []
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c == quote:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise PathSyntaxError(f"path {text!r}: quoted key is never closed")


def _expect(s: str, i: int, ch: str, text: str) -> None:
    if i >= len(s) or s[i] != ch:
        raise PathSyntaxError(f"path {text!r}: expected {ch!r} at column {i + 1}")
