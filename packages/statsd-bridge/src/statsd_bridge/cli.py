"""Command line: ``statsd-bridge run|once|check -c bridge.toml``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from . import __version__
from .bridge import Bridge
from .config import Config, load
from .errors import BridgeError, ConfigError
from .sender import RecordingSender

EXIT_OK = 0
EXIT_POLL_FAILED = 1
EXIT_CONFIG = 2

log = logging.getLogger("statsd_bridge")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="statsd-bridge",
        description="Poll HTTP monitoring APIs on a schedule and push the numbers to StatsD.",
    )
    p.add_argument("--version", action="version", version=f"statsd-bridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("-c", "--config", required=True, help="path of bridge.toml")
        sp.add_argument(
            "--log-level",
            default="INFO",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="log level (logs go to stderr; default INFO)",
        )
        return sp

    add("run", "Poll every source on its interval until SIGTERM or SIGINT.")
    once = add("once", "Poll every source once and send the metrics.")
    once.add_argument(
        "--dry-run",
        action="store_true",
        help="print the StatsD lines that would be sent, one per line, and send nothing",
    )
    add("check", "Validate the config and report every problem with its location.")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{args.config}: {problem}", file=sys.stderr)
        print(
            f"{args.config}: {len(exc.problems)} problem(s); nothing was polled",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.command == "check":
        return _check(config)
    try:
        if args.command == "once":
            return _once(config, args.dry_run)
        return _run(config)
    except BridgeError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _check(config: Config) -> int:
    print(f"{config.path}: OK, {len(config.sources)} source(s)")
    t = config.statsd
    print(
        f"  statsd: {t.protocol}://{t.host}:{t.port} prefix={t.prefix or '(none)'} "
        f"max_datagram={t.max_datagram}"
    )
    for s in config.sources:
        print(
            f"  {s.name}: {s.kind} {s.safe_url} every {s.interval:g}s, "
            f"timeout {s.timeout:g}s, prefix {s.prefix or '(none)'}"
        )
    return EXIT_OK


def _once(config: Config, dry_run: bool) -> int:
    if dry_run:
        # One recorder per source, so each source's lines print together, in
        # config order, although the sources are polled concurrently.
        recorders = {s.name: RecordingSender(config.statsd) for s in config.sources}
        bridge = Bridge(
            config,
            sender=RecordingSender(config.statsd),
            sender_for=lambda source: recorders[source.name],
        )
    else:
        recorders = {}
        bridge = Bridge(config)
    try:
        outcomes = bridge.once()
    finally:
        bridge.close()
    for recorder in recorders.values():
        for line in recorder.lines():
            print(line)
    failed = 0
    for o in outcomes:
        if o.ok:
            verb = "would send" if dry_run else "sent"
            print(
                f"{o.source}: ok, {verb} {o.sent} metric(s), {o.rejected} value(s) rejected, "
                f"{o.duration * 1000:.0f} ms",
                file=sys.stderr,
            )
        else:
            failed += 1
            print(f"{o.source}: FAILED ({o.reason}): {o.message}", file=sys.stderr)
    return EXIT_POLL_FAILED if failed else EXIT_OK


def _run(config: Config) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info(
                "statsd-bridge: %s received; finishing polls in flight",
                signal.Signals(signum).name,
            )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bridge = Bridge(config)
    try:
        bridge.run(stop)
    finally:
        bridge.close()
    log.info("statsd-bridge: stopped")
    return EXIT_OK
