"""The Etsy StatsD daemon (npm ``statsd``) run with node, read back through its admin port.

Metrics arrive over UDP on ``port`` (== ``udp_port``). The admin TCP interface on
``admin_port`` answers ``stats``, ``counters``, ``timers``, ``gauges``, ``delcounters``,
``deltimers``, ``delgauges``, ``health``, ``help``, ``config``.

The daemon runs with no backend and a one-hour flush interval: a flush zeroes counters and
clears timers, so with a long interval what a test sent stays readable.

Keys of ``stats()``: ``uptime``, ``messages.last_msg_seen`` (seconds since the last
packet), ``messages.bad_lines_seen`` (malformed lines since start; cumulative: compare a
before and after value).

The daemon also keeps three internal counters, ``statsd.bad_lines_seen``,
``statsd.packets_received`` and ``statsd.metrics_received``. ``reset()`` leaves those
three alone: once deleted, the daemon would count them up from ``undefined`` and show
``NaN`` until the next flush.
"""

from __future__ import annotations

import json
import math
import re
import socket
import time
from pathlib import Path
from typing import Any

from realservers import catalog
from realservers._base import HOST, Server, free_port, udp_port_bound

INTERNAL_COUNTERS = frozenset(
    {"statsd.bad_lines_seen", "statsd.packets_received", "statsd.metrics_received"}
)
PRELOAD = Path(__file__).with_name("statsd_preload.js")
FLUSH_INTERVAL_MS = 3_600_000

_END_COMMANDS = frozenset(
    {"stats", "counters", "timers", "gauges", "delcounters", "deltimers", "delgauges"}
)


class StatsdAdminError(RuntimeError):
    """The admin interface answered something unexpected."""


class StatsdServer(Server):
    name = "statsd"
    scheme = "statsd"
    start_timeout = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.admin_port = 0
        self.version = catalog.STATSD_VERSION

    @property
    def udp_port(self) -> int:
        return self.port

    def missing_provisioning(self) -> str | None:
        if catalog.which_node() is None:
            return f"node is not installed (needed for the StatsD daemon). {self._hint()}"
        if not catalog.is_complete(catalog.statsd_prefix()):
            return (
                f"StatsD {catalog.STATSD_VERSION} is not provisioned under "
                f"{catalog.statsd_prefix()}. {self._hint()}"
            )
        return None

    def _allocate_ports(self) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()

    def _prepare(self) -> None:
        assert self.workdir is not None
        config = {
            "address": HOST,
            "port": self.port,
            "address_ipv6": False,
            "mgmt_address": HOST,
            "mgmt_port": self.admin_port,
            "flushInterval": FLUSH_INTERVAL_MS,
            "backends": [],
            "automaticConfigReload": False,
            "deleteIdleStats": False,
        }
        # The daemon eval()s its config file as a JavaScript object: JSON is one.
        (self.workdir / "config.js").write_text(json.dumps(config, indent=2) + "\n")

    def _command(self) -> list[str]:
        assert self.workdir is not None
        node = catalog.which_node()
        assert node is not None
        return [
            node,
            "--require",
            str(PRELOAD),
            str(catalog.statsd_package_dir() / "stats.js"),
            str(self.workdir / "config.js"),
        ]

    def _check_ready(self) -> None:
        answer = self.admin("health", timeout=1.0)
        if "health: up" not in answer:
            raise StatsdAdminError(f"health answered {answer!r}")
        if not udp_port_bound(HOST, self.port):
            raise StatsdAdminError(f"UDP {HOST}:{self.port} not bound yet")

    # -- admin interface --------------------------------------------------------------

    def admin(self, command: str, timeout: float = 5.0) -> str:
        """Send one admin command; return the response text before its ``END`` line.

        Commands without an ``END`` line (``health``, ``help``, ``config``, unknown ones)
        return what arrived until the daemon stayed quiet for a moment.
        """
        verb = command.strip().split(" ", 1)[0]
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        with socket.create_connection((HOST, self.admin_port), timeout=timeout) as conn:
            conn.sendall(command.strip().encode("ascii") + b"\n")
            while True:
                data = b"".join(chunks)
                if verb in _END_COMMANDS:
                    if data.endswith(b"END\n\n") or data == b"END\n\n":
                        return data[: -len(b"END\n\n")].decode("utf-8", errors="replace")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise StatsdAdminError(
                            f"no END after {command!r} within {timeout}s; got {data[-300:]!r}"
                        )
                    conn.settimeout(remaining)
                else:
                    conn.settimeout(0.3 if data else max(0.01, deadline - time.monotonic()))
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    if verb in _END_COMMANDS:
                        continue
                    return data.decode("utf-8", errors="replace")
                if not chunk:
                    if verb in _END_COMMANDS:
                        raise StatsdAdminError(f"connection closed before END after {command!r}")
                    return data.decode("utf-8", errors="replace")
                chunks.append(chunk)

    def gauges(self) -> dict[str, float]:
        return _as_dict(parse_inspect(self.admin("gauges")))

    def counters(self) -> dict[str, float]:
        return _as_dict(parse_inspect(self.admin("counters")))

    def timers(self) -> dict[str, list[float]]:
        return _as_dict(parse_inspect(self.admin("timers")))

    def stats(self) -> dict[str, Any]:
        """``key: value`` lines of the ``stats`` command; numbers converted."""
        result: dict[str, Any] = {}
        for line in self.admin("stats").splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                result[key.strip()] = _number_or_text(value.strip())
        return result

    def reset(self) -> None:
        """Delete every gauge, timer and counter (but the daemon's three internal counters)."""
        for verb, keys in (
            ("delgauges", list(self.gauges())),
            ("deltimers", list(self.timers())),
            ("delcounters", [k for k in self.counters() if k not in INTERNAL_COUNTERS]),
        ):
            for start in range(0, len(keys), 50):
                self.admin(f"{verb} {' '.join(keys[start : start + 50])}")

    def wait_for(
        self, predicate: Any, timeout: float = 5.0, interval: float = 0.02
    ) -> dict[str, Any]:
        """Poll until ``predicate(snapshot)`` is true; snapshot has gauges/counters/timers.

        UDP is asynchronous: a test that sent metrics waits for them with this.
        Returns the last snapshot; raises TimeoutError with it when time runs out.
        """
        deadline = time.monotonic() + timeout
        while True:
            snapshot = {
                "gauges": self.gauges(),
                "counters": self.counters(),
                "timers": self.timers(),
            }
            if predicate(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                raise TimeoutError(f"statsd state never matched within {timeout}s: {snapshot}")
            time.sleep(interval)


def _as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StatsdAdminError(f"expected an object from the admin interface, got {value!r}")
    return value


def _number_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


# -- a reader for util.inspect() output (JavaScript object literals) --------------------

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<punct>[{}\[\],:])
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`(?:[^`\\]|\\.)*`)
      | (?P<number>-?(?:Infinity|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
      | (?P<ident>[A-Za-z_$][\w$]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}
_IDENTS: dict[str, Any] = {"true": True, "false": False, "null": None, "undefined": None}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        code = body[i + 1]
        if code == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif code == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            out.append(_ESCAPES.get(code, code))
            i += 2
    return "".join(out)


def parse_inspect(text: str) -> Any:
    """Parse what Node's ``util.inspect`` prints for plain objects, arrays and numbers.

    Raises ValueError on anything else (e.g. a truncated ``... more items`` dump).
    """
    tokens: list[tuple[str, str]] = []
    position = 0
    stripped = text.strip()
    while position < len(stripped):
        match = _TOKEN_RE.match(stripped, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot read util.inspect output at {stripped[position:][:40]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
        while position < len(stripped) and stripped[position].isspace():
            position += 1
    value, index = _parse_value(tokens, 0)
    if index != len(tokens):
        raise ValueError(f"trailing data in util.inspect output: {tokens[index:][:5]}")
    return value


def _parse_value(tokens: list[tuple[str, str]], index: int) -> tuple[Any, int]:
    if index >= len(tokens):
        raise ValueError("util.inspect output ended early")
    kind, text = tokens[index]
    if kind == "number":
        if text.lstrip("-") == "Infinity":
            return (-math.inf if text.startswith("-") else math.inf), index + 1
        if text == "NaN":
            return math.nan, index + 1
        number = float(text)
        return (
            int(number)
            if number.is_integer() and "." not in text and "e" not in text.lower()
            else number
        ), index + 1
    if kind == "string":
        return _unescape(text[1:-1]), index + 1
    if kind == "ident":
        if text not in _IDENTS:
            raise ValueError(f"unexpected word {text!r} in util.inspect output")
        return _IDENTS[text], index + 1
    if text == "[":
        items: list[Any] = []
        index += 1
        while tokens[index][1] != "]":
            item, index = _parse_value(tokens, index)
            items.append(item)
            if tokens[index][1] == ",":
                index += 1
        return items, index + 1
    if text == "{":
        obj: dict[str, Any] = {}
        index += 1
        while tokens[index][1] != "}":
            key_kind, key_text = tokens[index]
            if key_kind == "string":
                key = _unescape(key_text[1:-1])
            elif key_kind in ("ident", "number"):
                key = key_text
            else:
                raise ValueError(f"unexpected {key_text!r} where a key belongs")
            if tokens[index + 1][1] != ":":
                raise ValueError(f"expected ':' after key {key!r}")
            obj[key], index = _parse_value(tokens, index + 2)
            if tokens[index][1] == ",":
                index += 1
        return obj, index + 1
    raise ValueError(f"unexpected {text!r} in util.inspect output")
