"""xprofiler.core: trace requests across Python services.

Quick start::

    from xprofiler import core as profiler

    profiler.setup("sqlite:///traces.db", service="api", hmac_keys=["secret"])
    profiler.init("secret")                 # begin a trace in this request's context

    @profiler.trace("db")
    def query(sql): ...

    with profiler.Trace("render"):
        ...
"""

from __future__ import annotations

from .errors import (
    DriverConflict,
    DriverError,
    DriverLibraryMissing,
    DriverNotFound,
    ProfilerError,
    StoreUnavailable,
    TraceNotFound,
)
from .points import Point, TraceFilter, TraceSummary
from .profiler import (
    Profiler,
    clean,
    dispatcher_stats,
    flush,
    get,
    init,
    is_setup,
    setup,
    shutdown,
    start,
    stop,
)
from .propagation import X_TRACE_HMAC, X_TRACE_INFO, get_trace_id_headers
from .registry import load_driver
from .tracing import Trace, TracedMeta, trace, trace_cls
from .tree import Report, Span, build_report
from .uri import URL, URLError, parse_url

__version__ = "0.1.0"

__all__ = [
    "URL",
    "X_TRACE_HMAC",
    "X_TRACE_INFO",
    "DriverConflict",
    "DriverError",
    "DriverLibraryMissing",
    "DriverNotFound",
    "Point",
    "Profiler",
    "ProfilerError",
    "Report",
    "Span",
    "StoreUnavailable",
    "Trace",
    "TraceFilter",
    "TraceNotFound",
    "TraceSummary",
    "TracedMeta",
    "URLError",
    "build_report",
    "clean",
    "dispatcher_stats",
    "flush",
    "get",
    "get_trace_id_headers",
    "init",
    "is_setup",
    "load_driver",
    "parse_url",
    "setup",
    "shutdown",
    "start",
    "stop",
    "trace",
    "trace_cls",
]
