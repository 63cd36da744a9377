"""The call tree as Graphviz DOT: one box per span, one edge per call.

Render with ``dot -Tsvg trace.dot > trace.svg``. Boxes are coloured by service; failed spans
have a red border and their exception; unfinished spans are dashed; an orphan (its parent is
not in the trace) hangs from the trace node by a dotted edge. Every string from traced code is
quoted and escaped (a name cannot close the string or inject DOT escapes like ``\\N``).
"""

from __future__ import annotations

from ..tree import Report, Span
from .html import format_ns

__all__ = ["to_dot", "dot_quote"]

# Light fills that keep black text readable; cycled by service.
_FILLS = (
    "#dbe8fb",
    "#dff3e3",
    "#fdeccd",
    "#eadffa",
    "#d9f1f4",
    "#f9dde9",
    "#edf3cf",
    "#e5e5e5",
    "#f6e1d3",
    "#d8e3ec",
    "#efdcf1",
    "#e0efe9",
)

_MAX_TEXT = 120


def dot_quote(text: str) -> str:
    """``text`` as a double-quoted DOT string: backslashes, quotes and line breaks escaped."""
    text = str(text)
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 1] + "…"
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1].replace("\\", "\\\\"))
    return '"' + "".join(out) + '"'


def _label(report: Report, span: Span) -> str:
    lines = [span.name, f"{span.service}@{span.host}" if span.host else span.service]
    if span.start is not None and report.start is not None:
        offset = "+" + format_ns(span.start - report.start)
    else:
        offset = "start not recorded"
    duration = format_ns(span.duration) if span.duration is not None else "unfinished"
    lines.append(f"{offset}  {duration}")
    if span.error:
        exc = span.exception or {}
        lines.append(f"{exc.get('type')}: {exc.get('message')}")
    if span.orphan:
        lines.append("(orphan: parent not in trace)")
    return _multiline(lines)


def _multiline(lines: list[str]) -> str:
    # Escape each line, then join with DOT's line break (an escaped "\n" in the text stays text).
    return '"' + "\\n".join(dot_quote(line)[1:-1] for line in lines) + '"'


def to_dot(report: Report) -> str:
    """Graphviz DOT text for the report's call tree (iterative: deep traces are fine)."""
    fills = {svc: _FILLS[i % len(_FILLS)] for i, svc in enumerate(report.services)}
    total = format_ns(report.duration) if report.duration is not None else "?"
    title = _multiline(
        [
            f"trace {report.base_id}",
            f"{total}, {report.span_count} spans, {report.error_count} errors",
        ]
    )
    lines = [
        "digraph trace {",
        f"  graph [rankdir=LR, fontname=Helvetica, fontsize=11, labelloc=t, label={title}];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10];',
        "  edge [color=gray40, arrowsize=0.6];",
        f"  trace [shape=oval, style=filled, fillcolor=white, label={dot_quote(report.base_id)}];",
    ]
    ids: dict[int, str] = {}
    stack: list[tuple[Span, str | None]] = [(r, None) for r in reversed(report.roots)]
    while stack:
        span, parent = stack.pop()
        nid = f"s{len(ids)}"
        ids[id(span)] = nid
        style = "rounded,filled,dashed" if not span.finished else "rounded,filled"
        attrs = [
            f"label={_label(report, span)}",
            f'fillcolor="{fills.get(span.service, "#ffffff")}"',
            f'style="{style}"',
        ]
        if span.error:
            attrs += ['color="#c62828"', "penwidth=2", 'fontcolor="#8e0000"']
        lines.append(f"  {nid} [{', '.join(attrs)}];")
        if parent is None:
            edge = " [style=dotted]" if span.orphan else ""
            lines.append(f"  trace -> {nid}{edge};")
        else:
            lines.append(f"  {parent} -> {nid};")
        stack.extend((c, nid) for c in reversed(span.children))
    lines.append("}")
    return "\n".join(lines) + "\n"
