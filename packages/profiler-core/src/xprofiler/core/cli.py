"""The ``profiler`` command.

Other distributions add subcommands through the ``xprofiler.cli`` entry point group: each entry
point is a callable ``register(subparsers)`` that adds its parser and sets ``func`` (a callable
taking the parsed args and returning an exit code). Core imports none of them by name.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from . import __version__
from .errors import (
    DriverError,
    DriverLibraryMissing,
    DriverNotFound,
    StoreUnavailable,
)
from .points import TraceFilter, TraceSummary, validate_trace_id
from .registry import CLI_GROUP, available, get_driver_class, load_driver
from .tree import Report, Span, build_report
from .uri import URL, URLError, parse_duration, parse_url, scrub_secrets

__all__ = ["main", "resolve_connection_string", "EXIT"]

log = logging.getLogger(__name__)

# Exit codes, documented in --help.
EXIT = {
    "ok": 0,
    "error": 1,
    "usage": 2,  # bad arguments, malformed connection string or trace id
    "not_found": 3,  # no such trace
    "store": 4,  # the store is unreachable or failed
    "driver": 5,  # no driver (or its client library) installed for the scheme
}

EPILOG = """\
connection string:
  Every command that reads traces takes --connection-string URI. Without it,
  $PROFILER_CONNECTION_STRING is used, then the embedded default store
  (sqlite in your data directory). Examples:
    sqlite:///traces.db   sqlite:////var/lib/xprofiler/traces.db
    mongodb://user:pw@db1:27017,db2:27017/traces?replicaSet=rs0
    elasticsearch://es:9200   influxdb://influx:8086/traces   redis://bus:6379/0

exit codes:
  0 success   2 bad usage, connection string or trace id   3 trace not found
  4 store unreachable or failing   5 no driver installed for the scheme   1 other

examples:
  profiler demo                         run a small traced workload and show it
  profiler trace list --errors          the newest traces with an error
  profiler trace show ID              one trace as a tree (ID: the whole trace id)
  profiler trace show ID --json       the same as JSON (schema: docs/report-schema.md)
  profiler trace show ID --html -o trace.html   a waterfall page to open in a browser
  profiler trace show ID --dot | dot -Tsvg > trace.svg
  profiler trace show ID --json --format osprofiler   OSProfiler's report shape
  profiler serve                        the web viewer on http://127.0.0.1:8765/
  profiler drivers                      which stores you can use
"""


def resolve_connection_string(value: str | None) -> str:
    from .builtin.sqlite import default_path

    return value or os.environ.get("PROFILER_CONNECTION_STRING") or f"sqlite:///{default_path()}"


class CLIError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _bad_uri_text(exc: Exception) -> str:
    text = str(exc)
    return (
        text if text.startswith("malformed connection string") else f"bad connection string: {text}"
    )


def _missing_sqlite_store(uri: str) -> str | None:
    """The path of a sqlite store that does not exist (a read would silently create it)."""
    try:
        url = parse_url(uri)
    except URLError:
        return None
    if url.scheme != "sqlite" or not url.database or url.hosts:
        return None
    path = os.path.expanduser(url.database)
    return None if os.path.exists(path) else path


def _open_driver(cs: str | None, *, must_exist: bool = True) -> Any:
    uri = resolve_connection_string(cs)
    missing = _missing_sqlite_store(uri) if must_exist else None
    if missing is not None:
        hint = (
            "nothing has been traced into the default store yet (try: profiler demo)"
            if not cs and not os.environ.get("PROFILER_CONNECTION_STRING")
            else "check the path: three slashes for a relative path, four for an absolute one"
        )
        raise CLIError(f"no sqlite store at {missing}: {hint}", EXIT["store"])
    try:
        return load_driver(uri)
    except URLError as exc:
        raise CLIError(_bad_uri_text(exc), EXIT["usage"]) from None
    except (DriverNotFound, DriverLibraryMissing) as exc:
        raise CLIError(str(exc), EXIT["driver"]) from None
    except DriverError as exc:
        raise CLIError(str(exc), EXIT["usage"]) from None


def _store_call(driver: Any, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (StoreUnavailable, DriverError) as exc:
        text = _scrub(str(exc), driver)
        raise CLIError(f"cannot {what} from {driver.url}: {text}", EXIT["store"]) from None
    except Exception as exc:  # noqa: BLE001 - client libraries raise their own types
        text = _scrub(f"{type(exc).__name__}: {exc}", driver)
        raise CLIError(f"cannot {what} from {driver.url}: {text}", EXIT["store"]) from None


def _scrub(text: str, driver: Any) -> str:
    """``text`` without the credentials of the driver's URL (password, api_key, nested ones)."""
    url = getattr(driver, "url", None)
    return scrub_secrets(text, url.secrets()) if isinstance(url, URL) else text


def load_report(driver: Any, trace_id: str) -> Report:
    """Fetch and build one trace's report; CLIError when absent."""
    try:
        validate_trace_id(trace_id)
    except ValueError as exc:
        raise CLIError(f"bad trace id: {exc}", EXIT["usage"]) from None
    points = _store_call(driver, "read the trace", lambda: driver.get_report(trace_id))
    if not points:
        raise CLIError(
            f"no trace {trace_id} in {driver.url} (try: profiler trace list)", EXIT["not_found"]
        )
    return build_report(trace_id, points)


# -- rendering ----------------------------------------------------------------------------------
def _ms(ns: int | None) -> str:
    if ns is None:
        return "?"
    return f"{ns / 1e6:.3f} ms"


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _can_encode(stream: TextIO | _EncodingProxy, text: str) -> bool:
    try:
        text.encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _clean(text: str) -> str:
    # Names come from traced code: keep them on one line and free of terminal escapes.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def render_tree(report: Report, out: TextIO | _EncodingProxy) -> None:
    fancy = _can_encode(out, "├─│└…✗")
    tee, last, pipe, blank = ("├─ ", "└─ ", "│  ", "   ") if fancy else ("|- ", "`- ", "|  ", "   ")
    start = report.start or 0
    dur = _ms(report.duration)
    out.write(
        f"trace {report.base_id}\n"
        f"  started {_when(start)} UTC, took {dur}, {report.span_count} spans, "
        f"services: {', '.join(_clean(s) for s in report.services)}\n"
    )
    if report.error_count or report.unfinished_count or report.orphan_count:
        out.write(
            f"  {report.error_count} errors, {report.unfinished_count} unfinished, "
            f"{report.orphan_count} orphaned spans\n"
        )
    out.write("\n")
    stack: list[tuple[Span, str, bool]] = [
        (r, "", i == len(report.roots) - 1) for i, r in reversed(list(enumerate(report.roots)))
    ]
    while stack:
        span, prefix, is_last = stack.pop()
        offset = _ms((span.start - start) if span.start is not None else None)
        parts = [
            prefix + (last if is_last else tee) + _clean(span.name),
            f"[{_clean(span.service)}@{_clean(span.host)}]",
            f"+{offset}",
            _ms(span.duration) if span.finished else "unfinished",
        ]
        func = span.start_info.get("function") if isinstance(span.start_info, dict) else None
        if isinstance(func, dict) and func.get("name"):
            parts.append(_clean(str(func["name"])))
        if span.error:
            exc = span.exception or {}
            parts.append(f"ERROR {_clean(str(exc.get('type')))}: {_clean(str(exc.get('message')))}")
        if span.orphan:
            parts.append("(orphan: parent not in trace)")
        out.write("  ".join(parts) + "\n")
        child_prefix = prefix + (blank if is_last else pipe)
        n = len(span.children)
        for i in range(n - 1, -1, -1):
            stack.append((span.children[i], child_prefix, i == n - 1))
    out.write(
        "\nper category (share: total time over the trace's; nested spans count in their own\n"
        "category and in their parents', so shares can add up to more than 100%):\n"
    )
    width = max((len(_clean(n)) for n in report.stats), default=4)
    total = report.duration or 0
    for name, st in report.stats.items():
        share = f"{100 * st['duration'] / total:5.1f}%" if total else "    -"
        out.write(
            f"  {_clean(name):<{width}}  count {st['count']:>6}  total {_ms(st['duration']):>14}"
            f"  {share}\n"
        )


def render_list(rows: Sequence[TraceSummary], out: TextIO) -> None:
    if not rows:
        out.write("no traces found\n")
        return
    out.write(
        f"{'started (UTC)':<23}  {'duration':>13}  {'spans':>5}  err  {'trace id':<36}  name"
        "  [services]\n"
    )
    for r in rows:
        out.write(
            f"{_when(r.start):<23}  {_ms(r.duration):>13}  {r.span_count:>5}  "
            f"{'yes' if r.error else '   '}  {_clean(r.base_id):<36}  {_clean(r.name)}  "
            f"[{', '.join(_clean(s) for s in r.services)}]\n"
        )


# -- commands -----------------------------------------------------------------------------------
def cmd_trace_show(args: argparse.Namespace) -> int:
    if getattr(args, "format", None) and (args.output or "tree") != "json":
        raise CLIError(
            "--format applies to --json (e.g. --json --format osprofiler)", EXIT["usage"]
        )
    try:
        validate_trace_id(args.trace_id)  # bad input is reported before any store is opened
    except ValueError as exc:
        raise CLIError(f"bad trace id: {exc}", EXIT["usage"]) from None
    driver = _open_driver(args.connection_string)
    try:
        report = load_report(driver, args.trace_id)
        renderer = _SHOW_RENDERERS.get(args.output or "tree")
        if renderer is None:  # pragma: no cover - argparse restricts choices
            raise CLIError(f"unknown output {args.output}", EXIT["usage"])
        text = renderer(report, args)
        _write_output(text, getattr(args, "out", None))
    finally:
        driver.close()
    return EXIT["ok"]


def _write_output(text: str, path: str | None) -> None:
    from .reports import _escape_surrogates

    text = _escape_surrogates(text)  # a lone surrogate from traced code must not abort output
    if path:
        try:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise CLIError(f"cannot write {path}: {exc.strerror or exc}", EXIT["error"]) from None
        print(f"wrote {path}", file=sys.stderr)
    else:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:
            enc = getattr(sys.stdout, "encoding", None) or "ascii"
            sys.stdout.write(text.encode(enc, "backslashreplace").decode(enc))


def _render_tree_text(report: Report, args: argparse.Namespace) -> str:
    import io

    buf = io.StringIO()
    like = sys.stdout if not getattr(args, "out", None) else None
    render_tree(report, _EncodingProxy(buf, like))
    return buf.getvalue()


class _EncodingProxy:
    """Write to a buffer but answer ``encoding`` like the real stdout."""

    def __init__(self, buf: Any, like: TextIO | None) -> None:
        self._buf = buf
        self.encoding = (getattr(like, "encoding", None) if like else None) or "utf-8"

    def write(self, text: str) -> int:
        return int(self._buf.write(text))


def _render_json(report: Report, args: argparse.Namespace) -> str:
    from .reports import to_json

    return to_json(report, getattr(args, "format", None) or "native") + "\n"


def _render_html(report: Report, args: argparse.Namespace) -> str:
    from .reports import to_html

    return to_html(report)


def _render_dot(report: Report, args: argparse.Namespace) -> str:
    from .reports import to_dot

    return to_dot(report)


# Output formats for "trace show" (renderers live in xprofiler.core.reports).
_SHOW_RENDERERS: dict[str, Callable[[Report, argparse.Namespace], str]] = {
    "tree": _render_tree_text,
    "json": _render_json,
    "html": _render_html,
    "dot": _render_dot,
}


def _parse_time(value: str | None) -> int | None:
    """``2026-11-22T10:00:00`` (UTC unless an offset is given) or ``15m``/``2h`` ago."""
    if value is None:
        return None
    bad = CLIError(
        f"bad time {value!r}: use an ISO time like 2026-11-22T10:00 or an age like 15m, 2h",
        EXIT["usage"],
    )
    try:
        seconds = parse_duration(value)
    except URLError:
        pass
    else:
        import time

        if not math.isfinite(seconds):
            raise bad
        return _clamp_ns(time.time_ns() - int(seconds * 1e9))
    try:
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        stamp = dt.timestamp()
    except (ValueError, OverflowError):
        raise bad from None
    return _clamp_ns(int(stamp * 1e9))


def _clamp_ns(ns: int) -> int:
    # Stores keep timestamps as signed 64-bit integers: stay inside, from the epoch on.
    return max(0, min(ns, 2**63 - 1))


def cmd_trace_list(args: argparse.Namespace) -> int:
    if args.limit < 1 or args.offset < 0:
        raise CLIError("--limit must be at least 1 and --offset not negative", EXIT["usage"])
    if args.limit > 1_000_000 or args.offset > 2**62:
        raise CLIError("--limit is at most 1000000 (page with --offset)", EXIT["usage"])
    if args.min_duration is not None and not 0 <= args.min_duration <= 1e12:
        raise CLIError("--min-duration must be between 0 and 1e12 milliseconds", EXIT["usage"])
    filters = TraceFilter(
        service=args.service,
        name=args.name,
        since=_parse_time(args.since),
        until=_parse_time(args.until),
        min_duration=int(args.min_duration * 1e6) if args.min_duration is not None else None,
        errors=args.errors,
        limit=args.limit,
        offset=args.offset,
    )
    driver = _open_driver(args.connection_string)
    try:
        rows = _store_call(driver, "list traces", lambda: driver.list_traces(filters))
    finally:
        driver.close()
    if args.json:
        json.dump([r.to_dict() for r in rows], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        render_list(rows, sys.stdout)
    return EXIT["ok"]


def cmd_maintenance(args: argparse.Namespace) -> int:
    """Run the store's housekeeping (retention) when its driver has any."""
    if args.retention_days is not None and args.retention_days < 1:
        raise CLIError("--retention-days must be at least 1", EXIT["usage"])
    driver = _open_driver(args.connection_string)
    try:
        if args.retention_days is not None:
            apply = getattr(driver, "apply_retention", None)
            if not callable(apply):
                raise CLIError(
                    f"the {driver.url.scheme!r} driver has no retention by age; see its README "
                    "(MongoDB uses ?ttl=, InfluxDB ?retention=)",
                    EXIT["usage"],
                )
            deleted = _store_call(driver, "apply retention", lambda: apply(args.retention_days))
            result: dict[str, Any] = {
                "retention_days": args.retention_days,
                "deleted_indices": list(deleted),
            }
        else:
            run = getattr(driver, "maintenance", None)
            if not callable(run):
                if args.json:
                    print(json.dumps({"maintenance": None}))
                else:
                    print(f"the {driver.url.scheme!r} driver needs no maintenance")
                return EXIT["ok"]
            result = _store_call(driver, "run maintenance", run)
    finally:
        driver.close()
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for key, value in result.items():
            shown = ", ".join(map(str, value)) or "none" if isinstance(value, list) else value
            print(f"{key}: {shown}")
    return EXIT["ok"]


def cmd_drivers(args: argparse.Namespace) -> int:
    rows = []
    for scheme, info in available().items():
        try:
            get_driver_class(scheme)
            status = "ok"
        except DriverError as exc:
            status = f"broken: {exc}"
        rows.append((scheme, info.distribution or "(registered)", info.version or "", status))
    if args.json:
        json.dump(
            [
                dict(zip(("scheme", "distribution", "version", "status"), r, strict=True))
                for r in rows
            ],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return EXIT["ok"]
    w = max((len(r[0]) for r in rows), default=6)
    d = max((len(r[1]) for r in rows), default=12)
    print(f"{'scheme':<{w}}  {'distribution':<{d}}  version  status")
    for scheme, dist, version, status in rows:
        print(f"{scheme:<{w}}  {dist:<{d}}  {version:<7}  {status}")
    return EXIT["ok"]


def cmd_serve(args: argparse.Namespace) -> int:
    from .errors import DriverError as _DriverError
    from .web import make_app
    from .web.server import LOOPBACK_NAMES, is_loopback, make_server

    if not 0 <= args.port <= 65535:
        raise CLIError("--port must be between 0 and 65535 (0: any free port)", EXIT["usage"])
    loopback = is_loopback(args.host)
    cs = resolve_connection_string(args.connection_string)
    try:
        app = make_app(cs, allowed_hosts=LOOPBACK_NAMES if loopback else None)
    except URLError as exc:
        raise CLIError(_bad_uri_text(exc), EXIT["usage"]) from None
    except (DriverNotFound, DriverLibraryMissing) as exc:
        raise CLIError(str(exc), EXIT["driver"]) from None
    except _DriverError as exc:
        raise CLIError(str(exc), EXIT["usage"]) from None
    try:
        server = make_server(app, args.host, args.port)
    except OSError as exc:
        app.close()
        raise CLIError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc} "
            "(choose another --port, or --port 0 for any free one)",
            EXIT["error"],
        ) from None
    if not loopback:
        print(
            f"profiler: warning: listening on {args.host}, not loopback: anyone who can reach "
            "this port can read every stored trace (arguments and results included)",
            file=sys.stderr,
        )
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    print(
        f"profiler: serving traces from {app.driver.url} on http://{shown}:{port}/ "
        "(Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    import signal

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM (systemd, docker stop, kill) stops like Ctrl-C

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("profiler: stopped", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        app.close()
    return EXIT["ok"]


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(resolve_connection_string(args.connection_string), args)


# -- parser -------------------------------------------------------------------------------------
def _add_cs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--connection-string",
        "-c",
        metavar="URI",
        default=argparse.SUPPRESS,
        help="where traces are stored (default: $PROFILER_CONNECTION_STRING, then the "
        "embedded sqlite store)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="profiler",
        description="Look at requests traced across your Python services.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"profiler {__version__}")
    parser.add_argument(
        "--connection-string",
        "-c",
        metavar="URI",
        default=None,
        help="where traces are stored (see below)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    trace = sub.add_parser(
        "trace", help="show or list stored traces", description="Show or list stored traces."
    )
    tsub = trace.add_subparsers(dest="trace_command", metavar="ACTION")
    show = tsub.add_parser(
        "show",
        help="show one trace",
        description="Show one trace as a tree (default) or in another format.",
    )
    show.add_argument("trace_id", metavar="ID", help="the trace (base) id")
    fmt = show.add_mutually_exclusive_group()
    fmt.add_argument(
        "--tree",
        dest="output",
        action="store_const",
        const="tree",
        help="an indented tree with timings (default)",
    )
    fmt.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        help="the report as JSON (schema: docs/report-schema.md; see --format)",
    )
    fmt.add_argument(
        "--html",
        dest="output",
        action="store_const",
        const="html",
        help="a self-contained HTML page: waterfall, details, per-category stats",
    )
    fmt.add_argument(
        "--dot",
        dest="output",
        action="store_const",
        const="dot",
        help="the call tree as Graphviz DOT (render with: dot -Tsvg)",
    )
    show.add_argument(
        "--format",
        choices=("native", "osprofiler"),
        default=None,
        help="with --json: native (default; this project's schema) or osprofiler "
        "(OSProfiler's report shape, times in ms)",
    )
    show.add_argument("--out", "-o", metavar="FILE", help="write to FILE instead of stdout")
    _add_cs(show)
    show.set_defaults(func=cmd_trace_show, output=None)

    lst = tsub.add_parser(
        "list",
        help="list traces, newest first",
        description="List traces, newest first, with optional filters.",
    )
    lst.add_argument("--errors", action="store_true", help="only traces with an error")
    lst.add_argument("--service", metavar="NAME", help="only traces touching this service")
    lst.add_argument("--name", metavar="NAME", help="only traces with a span of this name")
    lst.add_argument(
        "--since",
        metavar="TIME",
        help="started at/after: an ISO time (2026-11-22T10:00) or an age (15m, 2h, 7d)",
    )
    lst.add_argument("--until", metavar="TIME", help="started at/before (ISO time, or an age)")
    lst.add_argument("--min-duration", type=float, metavar="MS", help="at least MS milliseconds")
    lst.add_argument("--limit", "-n", type=int, default=20, help="rows to show (default 20)")
    lst.add_argument("--offset", type=int, default=0, help="rows to skip (paging)")
    lst.add_argument("--json", action="store_true", help="print JSON rows")
    _add_cs(lst)
    lst.set_defaults(func=cmd_trace_list)
    trace.set_defaults(func=lambda a: _usage(trace))

    drv = sub.add_parser(
        "drivers",
        help="list installed storage drivers",
        description="List the storage drivers installed, by URI scheme.",
    )
    drv.add_argument("--json", action="store_true", help="print JSON")
    drv.set_defaults(func=cmd_drivers)

    mnt = sub.add_parser(
        "maintenance",
        help="run the store's housekeeping (e.g. delete old Elasticsearch indices)",
        description="Run the store's housekeeping: with Elasticsearch, delete the indices "
        "older than the connection string's ?retention_days= (or --retention-days). Run it "
        "from cron or a systemd timer. Stores that expire data themselves (MongoDB ?ttl=, "
        "InfluxDB ?retention=) need nothing.",
    )
    mnt.add_argument(
        "--retention-days",
        type=int,
        metavar="N",
        help="delete data older than N days now (overrides the URI's option)",
    )
    mnt.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_cs(mnt)
    mnt.set_defaults(func=cmd_maintenance)

    srv = sub.add_parser(
        "serve",
        help="run the web viewer (trace list, waterfall pages, JSON API)",
        description="Serve a read-only web viewer of the stored traces: a trace list, a "
        "waterfall page per trace and a JSON API (/api/traces, /api/traces/ID, /api/stats). "
        "It binds to loopback unless told otherwise; traces hold arguments and results, so "
        "think before exposing it. Under a WSGI server use xprofiler.core.web:make_app.",
    )
    srv.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)"
    )
    srv.add_argument(
        "--port", "-p", type=int, default=8765, help="port (default 8765; 0: any free port)"
    )
    _add_cs(srv)
    srv.set_defaults(func=cmd_serve)

    demo = sub.add_parser(
        "demo",
        help="run a small traced multi-service workload and show its trace",
        description="Start an 'inventory' service in a subprocess, send it traced requests from "
        "an 'api' service, store the trace and print it as a tree.",
    )
    demo.add_argument("--requests", type=int, default=3, help="requests to send (default 3)")
    _add_cs(demo)
    demo.set_defaults(func=cmd_demo)

    _load_plugins(sub)
    if "collect" not in sub.choices:
        hint = sub.add_parser(
            "collect",
            help="drain a Redis bus into a store (needs profiler-driver-messaging)",
            add_help=False,
        )
        hint.set_defaults(func=_collect_missing)
        parser.set_defaults(_collect_missing=True)
    return parser


def _collect_missing(args: argparse.Namespace) -> int:
    raise CLIError(
        "profiler collect comes with the messaging driver: pip install --find-links "
        "<this project's wheelhouse> 'profiler-core[messaging]'",
        EXIT["driver"],
    )


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return EXIT["usage"]


def _load_plugins(sub: Any) -> None:
    from importlib import metadata as md

    seen: set[tuple[str, str]] = set()
    for ep in md.entry_points(group=CLI_GROUP):
        if (ep.name, ep.value) in seen:
            continue
        seen.add((ep.name, ep.value))
        try:
            ep.load()(sub)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            dist = getattr(getattr(ep, "dist", None), "name", "?")
            print(
                f"profiler: warning: command plugin {ep.name!r} from {dist} failed to "
                f"load: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if parser.get_default("_collect_missing") and "collect" in words[:1]:
        # Its options are the plugin's, unknown here: say what to install, not "bad option".
        try:
            return _collect_missing(argparse.Namespace())
        except CLIError as exc:
            print(f"profiler: error: {exc}", file=sys.stderr)
            return exc.code
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="profiler: %(levelname)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT["usage"]
    if not hasattr(args, "connection_string"):
        args.connection_string = None
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"profiler: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("profiler: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT["ok"]


if __name__ == "__main__":  # pragma: no cover
    # Run the importable module, not this __main__ copy: plugins raise
    # xprofiler.core.cli.CLIError, which must be the class main() catches.
    from xprofiler.core.cli import main as _main

    sys.exit(_main())
