"""``profiler collect``: contributed to the ``profiler`` command through ``xprofiler.cli``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from xprofiler.core.cli import EXIT
from xprofiler.core.errors import (
    DriverError,
    DriverLibraryMissing,
    DriverNotFound,
    StoreUnavailable,
)
from xprofiler.core.uri import URLError, parse_duration

from .config import parse_bus_url

if TYPE_CHECKING:
    from .collector import Collector

__all__ = ["register", "cmd_collect", "Progress"]

DESCRIPTION = """\
Read trace points from a Redis stream (the bus the services publish to with a
redis:// connection string) and write them to a store. Run as many collectors
as the load needs: they share the stream through a consumer group. Points are
acknowledged only after the store accepted them; a collector that dies leaves
its entries pending and another takes them over after --claim-idle. Malformed
entries go to the dead-letter stream <stream>:dead. SIGTERM or Ctrl-C stops
after the batch in hand is stored and acknowledged.
"""

EPILOG = """\
examples:
  profiler collect --from redis://bus:6379/0 --to mongodb://db:27017/traces
  profiler collect --from 'redis://bus:6379/0?store=sqlite%3A%2F%2F%2Ftraces.db'
  profiler collect --from redis://bus:6379/0 --to sqlite:///traces.db --drain

The store URI inside ?store= must be percent-encoded (at least its '&', '?',
'#' and '%'; '+' may stay as it is).

exit codes: 0 stopped cleanly  2 bad usage or connection string  4 the bus is
unreachable at start, or the store still failed when stopping  5 no driver for
the store's scheme
"""


def _duration(text: str) -> float:
    try:
        value = parse_duration(text)
    except URLError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: Any) -> None:
    """Entry point of the ``xprofiler.cli`` group: add ``collect`` to ``profiler``."""
    p = subparsers.add_parser(
        "collect",
        help="drain the Redis bus of trace points into a store",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--from",
        dest="bus",
        metavar="URI",
        help="the bus, redis://[user:pw@]host:port/db[?stream=...] "
        "(default: $PROFILER_CONNECTION_STRING)",
    )
    p.add_argument(
        "--to",
        dest="store",
        metavar="URI",
        help="the store to write to, any driver's URI (default: the bus URI's ?store=)",
    )
    p.add_argument("--group", help="consumer group (default: the bus URI's group option)")
    p.add_argument("--name", help="this collector's consumer name (default: host-pid-random)")
    p.add_argument(
        "--count", type=_positive, default=20, help="stream entries per read (default 20)"
    )
    p.add_argument(
        "--claim-idle",
        type=_duration,
        default=30.0,
        metavar="DURATION",
        help="take over another collector's entries left pending this long (default 30s)",
    )
    p.add_argument(
        "--max-deliveries",
        type=_positive,
        default=10,
        help="dead-letter an entry delivered more often than this (default 10)",
    )
    p.add_argument(
        "--retry-max",
        type=_duration,
        default=5.0,
        metavar="DURATION",
        help="longest wait between retries while the store or Redis fails (default 5s)",
    )
    p.add_argument(
        "--stop-timeout",
        type=_duration,
        default=10.0,
        metavar="DURATION",
        help="on SIGTERM/Ctrl-C, how long to keep retrying a failing store (default 10s)",
    )
    p.add_argument(
        "--progress-interval",
        type=_duration,
        default=10.0,
        metavar="DURATION",
        help="when stderr is not a terminal, print a progress line this often (default 10s)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.add_argument(
        "--drain",
        action="store_true",
        help="exit once nothing is left to read and nothing is pending",
    )
    p.set_defaults(func=cmd_collect)


class Progress:
    """On a terminal one line rewritten in place; otherwise a line every ``interval``."""

    def __init__(self, out: TextIO, *, interval: float, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.interval = 0.5 if self.tty else interval
        self._last: float | None = None  # the first tick always shows

    @staticmethod
    def line(collector: Collector) -> str:
        s = collector.snapshot()
        lag = "?" if s["lag"] is None else f"{s['lag']:,}"
        pending = "?" if s["pending"] is None else f"{s['pending']:,}"
        dead = s["dead_entries"] + s["dead_points"] + s["poison"]
        return (
            f"collect: {s['points']:,} points stored, {s['rate']:,.0f} points/s, lag {lag} "
            f"entries, pending {pending}, dead-lettered {dead}, store errors "
            f"{s['store_errors']}, bus errors {s['bus_errors']} [{s['state']}]"
        )

    def tick(self, collector: Collector, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        text = self.line(collector)
        if self.tty:
            self.out.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            self.out.write(f"{stamp} {text}\n")
        self.out.flush()


class _Exit(Exception):
    """A clean failure: the message for stderr and the exit code. (Not core's CLIError: under
    ``python -m xprofiler.core.cli`` core's module runs as __main__ and catches its own copy.)"""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def cmd_collect(args: argparse.Namespace) -> int:
    try:
        return _collect(args)
    except _Exit as exc:
        print(f"profiler: error: {exc}", file=sys.stderr)
        return exc.code


def _collect(args: argparse.Namespace) -> int:
    bus = args.bus or os.environ.get("PROFILER_CONNECTION_STRING")
    if not bus:
        raise _Exit(
            "say which bus to read: --from redis://host:6379/0 (or set "
            "$PROFILER_CONNECTION_STRING)",
            EXIT["usage"],
        )
    try:
        config = parse_bus_url(bus)
    except (URLError, DriverError) as exc:
        raise _Exit(f"bad --from connection string: {exc}", EXIT["usage"]) from None
    from .collector import Collector, CollectorOptions  # imports redis: only when collecting

    options = CollectorOptions(
        group=args.group,
        name=args.name,
        count=args.count,
        claim_idle=args.claim_idle,
        max_deliveries=args.max_deliveries,
        retry_max=args.retry_max,
        stop_timeout=args.stop_timeout,
    )
    try:
        collector = Collector(config, args.store, options)
    except URLError as exc:
        raise _Exit(f"bad --to connection string: {exc}", EXIT["usage"]) from None
    except (DriverNotFound, DriverLibraryMissing) as exc:
        raise _Exit(str(exc), EXIT["driver"]) from None
    except DriverError as exc:
        raise _Exit(str(exc), EXIT["usage"]) from None
    try:
        try:
            collector.ensure_group()
        except StoreUnavailable as exc:
            raise _Exit(str(exc), EXIT["store"]) from None
        except DriverError as exc:
            raise _Exit(str(exc), EXIT["store"]) from None
        progress = None if args.quiet else Progress(sys.stderr, interval=args.progress_interval)
        if progress is not None:
            collector.on_tick = progress.tick
        signals = 0

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                raise KeyboardInterrupt  # a second signal: stop now (entries stay pending)
            collector.stop()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            print(
                f"profiler collect: {collector.name} reading {config.where} group "
                f"{collector.group!r} into {collector.store_where}",
                file=sys.stderr,
                flush=True,
            )
            collector.run(drain=args.drain)
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        if progress is not None:
            progress.tick(collector, final=True)
    finally:
        collector.close()
    if not collector.last_store_ok:
        print(
            "profiler collect: stopped while the store was failing; the batch in hand stays "
            "pending for another collector",
            file=sys.stderr,
        )
        return EXIT["store"]
    return EXIT["ok"]
