"""The viewer: a read-only WSGI application over any driver.

Routes (GET and HEAD only; anything else is 405):

* ``/`` - the trace list, newest first, filtered by service, span name and errors, paged.
* ``/traces/ID`` - the waterfall page of one trace (the same page as ``trace show --html``).
* ``/api`` - the list of endpoints.
* ``/api/traces`` - trace summaries as JSON (same filters, ``limit``/``offset`` paging).
* ``/api/traces/ID`` - one report as JSON (``?format=native`` (default) or ``osprofiler``).
* ``/api/stats`` - counts per service over ``?window=`` (default 1h) for monitoring tools.

Bad input is a 4xx with a message that says what to send instead (400 malformed id or query,
404 unknown trace or path, 405 method); a failing store is a 503 whose message never contains
the password; an unexpected fault is a 500 with no stack trace (it goes to the log). Every
response carries a Content-Security-Policy, ``X-Content-Type-Options: nosniff`` and no CORS
headers. With ``allowed_hosts`` set (the CLI sets it when bound to loopback), requests whose
``Host`` names another host are refused, which defeats DNS-rebinding pages.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from ..errors import DriverError
from ..points import TraceFilter, TraceSummary, validate_trace_id
from ..reports import dumps_json, to_native, to_osprofiler
from ..reports.html import asset, content_security_policy, format_ns, to_html
from ..tree import Report, build_report
from ..uri import URL, scrub_secrets
from .params import BadRequest, Query, parse_query
from .stats import DEFAULT_WINDOW_SECONDS, trace_stats

__all__ = ["ViewerApp", "HTTPError", "PAGE_LIMIT_MAX"]

log = logging.getLogger(__name__)

PAGE_LIMIT_DEFAULT = 50
PAGE_LIMIT_MAX = 500
OFFSET_MAX = 1_000_000
LIST_PARAMS = ("service", "name", "errors", "since", "until", "min_duration", "limit", "offset")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

StartResponse = Callable[..., Any]


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


@functools.cache
def _viewer_css() -> str:
    return resources.files(__package__).joinpath("assets").joinpath("viewer.css").read_text("utf-8")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


class _Response:
    __slots__ = ("status", "content_type", "body", "headers")

    def __init__(
        self,
        status: int,
        content_type: str,
        body: bytes,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        self.headers = list(headers)


_API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class ViewerApp:
    """WSGI callable. Build it with :func:`xprofiler.core.web.make_app`."""

    def __init__(
        self,
        driver: Any,
        *,
        allowed_hosts: Iterable[str] | None = None,
        stats_max_traces: int | None = None,
    ) -> None:
        self.driver = driver
        self.allowed_hosts = (
            None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        )
        self.stats_max_traces = stats_max_traces
        self._routes: list[tuple[str, Callable[[dict[str, Any], str], _Response]]] = [
            ("/", self._page_list),
            ("/traces/", self._page_trace),
            ("/api", self._api_index),
            ("/api/traces", self._api_traces),
            ("/api/traces/", self._api_trace),
            ("/api/stats", self._api_stats),
        ]

    def close(self) -> None:
        """Release the driver's connections."""
        self.driver.close()

    # -- WSGI ---------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        base = self._prefix(environ)
        try:
            resp = self._dispatch(environ, path, method)
        except HTTPError as exc:
            resp = self._error(base, path, exc.status, exc.message, exc.headers)
        except BadRequest as exc:
            resp = self._error(base, path, 400, str(exc))
        except Exception:  # noqa: BLE001 - never a stack trace to the client
            log.exception("viewer: internal error answering %s %s", method, path[:200])
            resp = self._error(base, path, 500, "internal error; the server's log has the details")
        headers = [
            ("Content-Type", resp.content_type),
            ("Content-Length", str(len(resp.body))),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
            ("Cache-Control", "no-store"),
        ]
        if not any(k.lower() == "content-security-policy" for k, _ in resp.headers):
            headers.append(("Content-Security-Policy", _API_CSP))
        headers.extend(resp.headers)
        status = f"{resp.status} {_REASONS.get(resp.status, 'Error')}"
        start_response(status, headers)
        return [b"" if method == "HEAD" else resp.body]

    def _dispatch(self, environ: dict[str, Any], path: str, method: str) -> _Response:
        self._check_host(environ)
        handler, arg = self._route(path)
        if method not in ("GET", "HEAD"):
            raise HTTPError(
                405,
                f"{method} is not allowed: the viewer is read-only (use GET)",
                [("Allow", "GET, HEAD")],
            )
        return handler(environ, arg)

    def _route(self, path: str) -> tuple[Callable[[dict[str, Any], str], _Response], str]:
        for prefix, handler in self._routes:
            if prefix.endswith("/") and prefix != "/":
                if path.startswith(prefix) and len(path) > len(prefix):
                    return handler, path[len(prefix) :]
            elif path == prefix:
                return handler, ""
        raise HTTPError(404, "no such page; start at / (the trace list) or /api")

    def _check_host(self, environ: dict[str, Any]) -> None:
        if self.allowed_hosts is None:
            return
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or ""
        name = host.lower()
        if name.startswith("["):  # [::1]:8080
            name = name[1:].split("]", 1)[0]
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        if name not in self.allowed_hosts:
            raise HTTPError(
                400,
                "this viewer answers only to the host names "
                + ", ".join(sorted(self.allowed_hosts))
                + "; open it by one of them",
            )

    # -- helpers ------------------------------------------------------------------------------
    def _store(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except DriverError as exc:
            raise HTTPError(503, f"cannot {what}: {self._masked(str(exc))}") from None
        except Exception as exc:  # noqa: BLE001 - client libraries raise their own types
            text = f"{type(exc).__name__}: {self._masked(str(exc))}"
            # No traceback: its frames and messages may quote the connection string.
            log.warning("viewer: store error while trying to %s: %s", what, text)
            raise HTTPError(503, f"cannot {what}: {text}") from None

    def _masked(self, text: str) -> str:
        url = getattr(self.driver, "url", None)
        if isinstance(url, URL):
            text = scrub_secrets(text, url.secrets())
        return text[:500]

    def _trace_id(self, raw: str) -> str:
        try:
            return validate_trace_id(raw)
        except ValueError as exc:
            raise HTTPError(400, f"malformed trace id: {exc}") from None

    def _report(self, trace_id: str) -> Report:
        points = self._store("read the trace", lambda: self.driver.get_report(trace_id))
        if not points:
            raise HTTPError(404, f"no trace {trace_id} in this store; see /api/traces")
        return build_report(trace_id, points)

    def _filters(self, q: Query) -> TraceFilter:
        min_ms = q.number("min_duration", 0, 1e12)
        return TraceFilter(
            service=q.text("service"),
            name=q.text("name"),
            errors=q.flag("errors"),
            since=q.time_ns("since"),
            until=q.time_ns("until"),
            min_duration=None if min_ms is None else int(min_ms * 1e6),
            limit=q.integer("limit", PAGE_LIMIT_DEFAULT, 1, PAGE_LIMIT_MAX),
            offset=q.integer("offset", 0, 0, OFFSET_MAX),
        )

    def _list(self, f: TraceFilter) -> tuple[list[TraceSummary], bool]:
        rows = self._store(
            "list traces", lambda: self.driver.list_traces(replace(f, limit=f.limit + 1))
        )
        return rows[: f.limit], len(rows) > f.limit

    def _json(self, data: Any, status: int = 200) -> _Response:
        body = dumps_json(data).encode("utf-8") + b"\n"
        return _Response(status, "application/json; charset=utf-8", body)

    def _html(self, text: str, csp: str, status: int = 200) -> _Response:
        return _Response(
            status,
            "text/html; charset=utf-8",
            text.encode("utf-8", "backslashreplace"),
            [("Content-Security-Policy", csp + "; frame-ancestors 'none'")],
        )

    def _error(
        self,
        base: str,
        path: str,
        status: int,
        message: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> _Response:
        if path == "/api" or path.startswith("/api/"):
            resp = self._json({"error": {"status": status, "message": message}}, status)
            resp.headers.extend(headers)
            return resp
        css = _viewer_css()
        page = (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<link rel="icon" href="data:,">'
            f"<title>{status} - xprofiler</title><style>{css}</style></head><body>"
            f"<h1>{status} {_e(_REASONS.get(status, 'Error'))}</h1>"
            f'<p class="xp-error">{_e(message)}</p>'
            f'<p><a href="{_e(base)}/">all traces</a></p></body></html>\n'
        )
        resp = self._html(page, content_security_policy(styles=(css,)), status)
        resp.headers.extend(headers)
        return resp

    def _prefix(self, environ: dict[str, Any]) -> str:
        return str(environ.get("SCRIPT_NAME", "")).rstrip("/")

    # -- API ----------------------------------------------------------------------------------
    def _api_index(self, environ: dict[str, Any], _: str) -> _Response:
        parse_query(environ.get("QUERY_STRING", ""), ())
        base = self._prefix(environ)
        return self._json(
            {
                "endpoints": {
                    f"{base}/api/traces": "trace summaries, newest first; params: "
                    + ", ".join(LIST_PARAMS),
                    f"{base}/api/traces/ID": "one report; param: format=native|osprofiler",
                    f"{base}/api/stats": "counts per service; param: window (e.g. 15m, 1h)",
                },
                "schema": "docs/report-schema.md",
            }
        )

    def _api_traces(self, environ: dict[str, Any], _: str) -> _Response:
        f = self._filters(parse_query(environ.get("QUERY_STRING", ""), LIST_PARAMS))
        rows, more = self._list(f)
        return self._json(
            {
                "traces": [r.to_dict() for r in rows],
                "limit": f.limit,
                "offset": f.offset,
                "next_offset": f.offset + len(rows) if more else None,
            }
        )

    def _api_trace(self, environ: dict[str, Any], raw_id: str) -> _Response:
        trace_id = self._trace_id(raw_id)
        q = parse_query(environ.get("QUERY_STRING", ""), ("format",))
        fmt = q.choice("format", ("native", "osprofiler"), "native")
        report = self._report(trace_id)
        return self._json(to_native(report) if fmt == "native" else to_osprofiler(report))

    def _api_stats(self, environ: dict[str, Any], _: str) -> _Response:
        q = parse_query(environ.get("QUERY_STRING", ""), ("window",))
        window = q.duration_seconds("window", DEFAULT_WINDOW_SECONDS)
        kwargs = {} if self.stats_max_traces is None else {"max_traces": self.stats_max_traces}
        data = self._store("count traces", lambda: trace_stats(self.driver, window, **kwargs))
        return self._json(data)

    # -- pages --------------------------------------------------------------------------------
    def _page_trace(self, environ: dict[str, Any], raw_id: str) -> _Response:
        trace_id = self._trace_id(raw_id)
        parse_query(environ.get("QUERY_STRING", ""), ())
        report = self._report(trace_id)
        base = self._prefix(environ)
        api = f"{base}/api/traces/{quote(trace_id, safe='')}"
        nav = (
            f'<nav class="xp-nav"><a href="{_e(base)}/">&larr; all traces</a> &middot; '
            f'<a href="{_e(api)}">JSON</a> &middot; '
            f'<a href="{_e(api)}?format=osprofiler">OSProfiler JSON</a></nav>'
        )
        page = to_html(report, nav=nav, csp_meta=False)
        csp = content_security_policy(scripts=(asset("report.js"),), styles=(asset("report.css"),))
        return self._html(page, csp)

    def _page_list(self, environ: dict[str, Any], _: str) -> _Response:
        q = parse_query(environ.get("QUERY_STRING", ""), LIST_PARAMS)
        f = self._filters(q)
        base = self._prefix(environ)
        rows, more = self._list(f)
        css = _viewer_css()
        kept = {k: v for k, v in q.values.items() if k != "offset" and v.strip()}

        def page_link(offset: int) -> str:
            params = dict(kept)
            if offset:
                params["offset"] = str(offset)
            qs = urlencode(params)
            return f"{base}/" + (f"?{qs}" if qs else "")

        body_rows = []
        for r in rows:
            href = f"{base}/traces/{quote(r.base_id, safe='')}"
            body_rows.append(
                f'<tr class="{"xp-err" if r.error else ""}">'
                f"<td>{_e(_utc(r.start))}</td>"
                f'<td class="xp-num">{_e(format_ns(r.duration))}</td>'
                f'<td class="xp-num">{r.span_count}</td>'
                f'<td class="xp-flag">{"error" if r.error else ""}</td>'
                f'<td class="xp-name"><a href="{_e(href)}">{_e(r.name or "(unnamed)")}</a></td>'
                f"<td>{_e(', '.join(r.services))}</td>"
                f'<td class="xp-mono"><a href="{_e(href)}">{_e(r.base_id)}</a></td></tr>'
            )
        if not body_rows:
            table = '<p class="xp-empty" id="xp-empty">No traces match.</p>'
        else:
            table = (
                '<table class="xp-list" id="xp-traces"><thead><tr><th>started (UTC)</th>'
                '<th class="xp-num">duration</th><th class="xp-num">spans</th><th></th>'
                "<th>name</th><th>services</th><th>trace id</th></tr></thead><tbody>"
                + "".join(body_rows)
                + "</tbody></table>"
            )
        pager = []
        if f.offset > 0:
            pager.append(
                f'<a id="xp-newer" href="{_e(page_link(max(0, f.offset - f.limit)))}">'
                "&larr; newer</a>"
            )
        if more:
            pager.append(
                f'<a id="xp-older" href="{_e(page_link(f.offset + f.limit))}">older &rarr;</a>'
            )
        shown = f"traces {f.offset + 1}-{f.offset + len(rows)}" if rows else f"offset {f.offset}"
        checked = " checked" if f.errors else ""
        hidden = "".join(
            f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">'
            for k, v in kept.items()
            if k in ("since", "until", "min_duration", "limit")
        )
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            '<link rel="icon" href="data:,">'
            f"<title>traces - xprofiler</title><style>{css}</style></head><body>"
            "<h1>Traces</h1>"
            f'<form class="xp-filters" method="get" action="{_e(base)}/" role="search">'
            f'<label>service <input type="text" name="service" value="{_e(f.service or "")}">'
            f'</label><label>span name <input type="text" name="name" '
            f'value="{_e(f.name or "")}"></label>'
            f'<label><input type="checkbox" name="errors" value="1"{checked}> errors only'
            f"</label>{hidden}<button type=submit>Filter</button>"
            f'<a href="{_e(base)}/">clear</a></form>'
            f"{table}"
            f'<div class="xp-pager"><span>{_e(shown)}</span>{"".join(pager)}</div>'
            f'<footer>JSON: <a href="{_e(base)}/api/traces">/api/traces</a>, '
            f'<a href="{_e(base)}/api/stats">/api/stats</a>. Newest first.</footer>'
            "</body></html>\n"
        )
        return self._html(page, content_security_policy(styles=(css,)))


def _utc(ns: int) -> str:
    from datetime import datetime, timezone

    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + f".{(ns // 1_000_000) % 1000:03d}"
