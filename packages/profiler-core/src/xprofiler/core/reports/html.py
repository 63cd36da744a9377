"""The trace as one self-contained HTML page: a waterfall with a details panel.

The page fetches nothing: its CSS and JS are inline and its own Content-Security-Policy
(``default-src 'none'`` plus the hashes of exactly that CSS and JS) forbids any other script,
style or network access. The spans travel as compact JSON rows in a
``<script type="application/json">`` element (never executed, ``<``/``>``/``&`` escaped) and
the script builds the DOM with ``textContent``, so a span named ``<script>...`` stays text.
Rows are rendered lazily (only those in view) and deep subtrees start collapsed, so a trace of
100,000 spans opens without freezing the page. Server-rendered parts (the header and the
per-category table) are HTML-escaped here.

The page data (``page_data``) is documented in docs/web-viewer.md; it is an internal format of
the page, not a stable API (use ``--json`` for that).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from ..tree import Report, Span

__all__ = [
    "to_html",
    "page_data",
    "format_ns",
    "embed_json",
    "content_security_policy",
    "asset",
    "PALETTE_SIZE",
]

PAGE_DATA_VERSION = 1
PALETTE_SIZE = 12  # service colour classes xp-s0 .. xp-s11 in report.css

# Flags of a span row (see docs/web-viewer.md).
F_ERROR, F_NO_STOP, F_NO_START, F_ORPHAN = 1, 2, 4, 8


def format_ns(ns: int | None) -> str:
    """A human duration: ``850 ns``, ``12.4 µs``, ``3.21 ms``, ``1.50 s``, ``2 min 3.0 s``."""
    if ns is None:
        return "?"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns} ns"
    if ns < 1_000_000:
        return f"{sign}{ns / 1e3:.3g} µs"
    if ns < 1_000_000_000:
        return f"{sign}{ns / 1e6:.3g} ms"
    if ns < 60_000_000_000:
        return f"{sign}{ns / 1e9:.3g} s"
    minutes, rest = divmod(ns, 60_000_000_000)
    return f"{sign}{minutes} min {rest / 1e9:.1f} s"


def _utc(ns: int | None) -> str:
    if ns is None:
        return "?"
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + f".{(ns // 1_000_000) % 1000:03d} UTC"


@functools.cache
def asset(name: str) -> str:
    """The text of a bundled asset (``report.css``, ``report.js``, ``viewer.css``)."""
    return (
        resources.files(__package__).joinpath("assets").joinpath(name).read_text(encoding="utf-8")
    )


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy(*, scripts: tuple[str, ...] = (), styles: tuple[str, ...] = ()) -> str:
    """A policy allowing only the given inline scripts/styles (by hash) and nothing remote."""
    script_src = " ".join(_sha256(s) for s in scripts) or "'none'"
    style_src = " ".join(_sha256(s) for s in styles) or "'none'"
    return (
        f"default-src 'none'; script-src {script_src}; style-src {style_src}; "
        "img-src data:; base-uri 'none'; form-action 'self'"
    )


def embed_json(data: Any) -> str:
    """JSON text safe inside a ``<script type="application/json">`` element.

    ``<``, ``>`` and ``&`` only occur inside JSON strings, where their ``\\u`` escapes mean the
    same; so no ``</script>`` or ``<!--`` can appear. U+2028/9 are escaped for old parsers.
    ``ensure_ascii`` also turns lone surrogates into escapes, so the page always encodes.
    """
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        from ..points import jsonable

        text = json.dumps(jsonable(data), separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def page_data(report: Report) -> dict[str, Any]:
    """The compact form the page script reads: string table + one array per span.

    Spans are in depth-first order (a subtree is a contiguous run), each
    ``[parent_row, name, service, host, project, start, stop, flags, span_id, start_info,
    stop_info]`` where name/service/host/project index ``strings``, start/stop are ns since the
    trace's first point (null when not recorded), infos are dicts (0 when empty) and an orphan
    row has its missing parent's id as a 12th element.
    """
    strings: list[str] = []
    index: dict[str, int] = {}

    def s(value: str) -> int:
        i = index.get(value)
        if i is None:
            i = index[value] = len(strings)
            strings.append(value)
        return i

    t0 = report.start or 0
    rows: list[list[Any]] = []
    stack: list[tuple[Span, int]] = [(r, -1) for r in reversed(report.roots)]
    while stack:
        span, parent = stack.pop()
        flags = (
            (F_ERROR if span.error else 0)
            | (F_NO_STOP if span.stop is None else 0)
            | (F_NO_START if span.start is None else 0)
            | (F_ORPHAN if span.orphan else 0)
        )
        row = [
            parent,
            s(span.name),
            s(span.service),
            s(span.host),
            s(span.project),
            None if span.start is None else span.start - t0,
            None if span.stop is None else span.stop - t0,
            flags,
            span.trace_id,
            span.start_info or 0,
            span.stop_info or 0,
        ]
        if span.orphan:
            row.append(span.parent_id)
        i = len(rows)
        rows.append(row)
        stack.extend((c, i) for c in reversed(span.children))
    return {
        "v": PAGE_DATA_VERSION,
        "base_id": report.base_id,
        "start": report.start,
        "duration": report.duration or 0,
        "services": [s(x) for x in report.services],
        "strings": strings,
        "spans": rows,
    }


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _header(report: Report, nav: str) -> str:
    total = report.duration or 0
    chips = "".join(
        f'<li class="xp-chip xp-s{i % PALETTE_SIZE}">{_e(svc)}</li>'
        for i, svc in enumerate(report.services)
    )
    hosts = ", ".join(_e(h) for h in report.hosts) or "-"
    facts = [
        f"<li>started <b>{_e(_utc(report.start))}</b></li>",
        f'<li>duration <b id="xp-total">{_e(format_ns(report.duration))}</b></li>',
        f'<li><b id="xp-count">{report.span_count}</b> spans</li>',
        f'<li class="{"xp-bad" if report.error_count else ""}">'
        f"<b>{report.error_count}</b> errors</li>",
    ]
    if report.unfinished_count:
        facts.append(f"<li><b>{report.unfinished_count}</b> unfinished</li>")
    if report.orphan_count:
        facts.append(f"<li><b>{report.orphan_count}</b> orphaned</li>")
    rows = []
    for name, st in report.stats.items():
        share = 100.0 * st["duration"] / total if total else 0.0
        mean = st["duration"] // st["count"] if st["count"] else 0
        rows.append(
            f"<tr><th scope=row>{_e(name)}</th><td>{st['count']}</td>"
            f"<td>{_e(format_ns(st['duration']))}</td><td>{_e(format_ns(mean))}</td>"
            f'<td class="xp-share"><progress max="100" value="{min(share, 100.0):.1f}">'
            f"</progress> {share:.1f}%</td></tr>"
        )
    return (
        f'<header class="xp-head">{nav}'
        f"<h1>Trace <code>{_e(report.base_id)}</code></h1>"
        f'<ul class="xp-facts">{"".join(facts)}</ul>'
        f'<div class="xp-who"><span>services</span><ul class="xp-chips" id="xp-services">'
        f"{chips}</ul><span>hosts</span> <span>{hosts}</span></div>"
        '<details class="xp-statbox" open><summary>Per category</summary>'
        '<table class="xp-stats" id="xp-stats"><thead><tr><th scope=col>category</th>'
        "<th scope=col>count</th><th scope=col>total time</th><th scope=col>mean</th>"
        "<th scope=col>share of trace</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<p class="xp-note">Share: total time of the category over the trace\'s duration; '
        "nested or parallel spans of one category can add up to more than 100%.</p>"
        "</details></header>"
    )


def _axis(report: Report) -> str:
    total = report.duration or 0
    ticks = "".join(f"<span>{_e(format_ns(total * k // 4))}</span>" for k in range(5))
    return f'<div class="xp-axis">{ticks}</div>'


def to_html(report: Report, *, nav: str = "", csp_meta: bool = True) -> str:
    """The page for one trace. ``nav`` is trusted markup put above the title (the viewer's
    back link); ``csp_meta`` puts the policy in a ``<meta>`` (a server sends the header)."""
    css, js = asset("report.css"), asset("report.js")
    meta = ""
    if csp_meta:
        meta = (
            '<meta http-equiv="Content-Security-Policy" content="'
            + _e(content_security_policy(scripts=(js,), styles=(css,)))
            + '">'
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"{meta}"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        '<link rel="icon" href="data:,">'
        f"<title>trace {_e(report.base_id)} - xprofiler</title>"
        f"<style>{css}</style></head>\n<body>"
        f"{_header(report, nav)}\n"
        '<main class="xp-main"><section class="xp-wf" aria-label="waterfall">'
        '<div class="xp-toolbar">'
        '<button type="button" id="xp-expand">Expand all</button>'
        '<button type="button" id="xp-collapse">Collapse all</button>'
        '<button type="button" id="xp-next-error">Next error</button>'
        '<form id="xp-find-form" role="search"><input id="xp-find" type="search" '
        'placeholder="find a span by name, service, host" aria-label="find a span">'
        '<button type="submit">Find</button></form>'
        '<span id="xp-status" aria-live="polite"></span></div>'
        '<div class="xp-cols" aria-hidden="true"><div>span</div><div>service@host</div>'
        f'<div class="xp-r">duration</div>{_axis(report)}</div>'
        '<div id="xp-viewport" tabindex="0" role="tree" aria-label="spans">'
        '<div id="xp-canvas"></div></div></section>'
        '<aside id="xp-details" aria-label="span details"><p class="xp-hint">'
        "Click a span to see its details.</p></aside></main>"
        "<noscript><p>This page needs JavaScript for the waterfall. "
        "Use <code>profiler trace show ID</code> or <code>--json</code> instead.</p></noscript>\n"
        f'<script type="application/json" id="xp-data">{embed_json(page_data(report))}</script>\n'
        f"<script>{js}</script>\n</body></html>\n"
    )
