"""Reports a person reads: HTML waterfall, Graphviz DOT, native and OSProfiler-shaped JSON.

Every renderer takes a :class:`~xprofiler.core.tree.Report` from the one tree builder
(:func:`~xprofiler.core.tree.build_report`); none of them rebuilds the tree.

* :func:`to_html` - one self-contained page (inline CSS/JS, no network fetches).
* :func:`to_dot` - the call tree as Graphviz DOT.
* :func:`to_native` - ``Report.to_dict()``, the stable schema (docs/report-schema.md).
* :func:`to_osprofiler` - OSProfiler's report shape (times in milliseconds).
* :func:`dumps_json` - JSON text for either dict, safe for any string traced code produced.
"""

from __future__ import annotations

import json
from typing import Any

from ..tree import Report
from .dot import to_dot
from .html import to_html
from .osprofiler import to_osprofiler

__all__ = [
    "to_html",
    "to_dot",
    "to_native",
    "to_osprofiler",
    "to_json",
    "dumps_json",
    "JSON_FORMATS",
]

JSON_FORMATS = ("native", "osprofiler")


def to_native(report: Report) -> dict[str, Any]:
    """The report in this project's own schema (version ``report["schema"]``)."""
    return report.to_dict()


def dumps_json(data: Any, *, indent: int | None = 2) -> str:
    """JSON text that always encodes: non-finite floats become strings, lone surrogates escapes.

    Points are JSON-safe when the tracing API writes them, but a third-party driver may return
    anything; a report must still render.
    """
    try:
        text = json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        from ..points import jsonable

        text = json.dumps(jsonable(data), indent=indent, ensure_ascii=False, allow_nan=False)
    return _escape_surrogates(text)


def _escape_surrogates(text: str) -> str:
    # A lone surrogate (e.g. from a surrogateescape-decoded file name) cannot be written as
    # UTF-8; inside a JSON string its \\udcxx escape is valid and means the same.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def to_json(report: Report, fmt: str = "native", *, indent: int | None = 2) -> str:
    """The report as JSON text in ``fmt`` (``native`` or ``osprofiler``)."""
    if fmt == "native":
        return dumps_json(to_native(report), indent=indent)
    if fmt == "osprofiler":
        return dumps_json(to_osprofiler(report), indent=indent)
    raise ValueError(f"unknown JSON format {fmt!r}: use one of {', '.join(JSON_FORMATS)}")
