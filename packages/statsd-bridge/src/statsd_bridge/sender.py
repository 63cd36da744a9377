"""Sending samples to StatsD with the ``statsd`` client library, batched.

A batch goes through the library's pipeline, which packs lines into datagrams
no larger than ``max_datagram`` bytes (UDP) or writes them in one go (TCP).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from statsd import StatsClient, TCPStatsClient
from statsd.client.base import PipelineBase, StatsClientBase
from statsd.client.stream import StreamPipeline
from statsd.client.udp import Pipeline

from .config import StatsdTarget
from .errors import REASON_SEND, BridgeError, PollError
from .sources import Sample

log = logging.getLogger(__name__)


class StatsdTargetError(BridgeError):
    """The StatsD target cannot be used at all (e.g. its host does not resolve)."""


class Sender(Protocol):
    def send(self, samples: Sequence[Sample]) -> int: ...

    def close(self) -> None: ...


def _add(pipe: PipelineBase, sample: Sample) -> None:
    if sample.type == "gauge":
        pipe.gauge(sample.name, sample.value)
    elif sample.type == "counter":
        pipe.incr(sample.name, sample.value)
    elif sample.type == "timer":
        pipe.timing(sample.name, sample.value)
    else:  # pragma: no cover - config validation allows only the three
        raise ValueError(f"unknown metric type {sample.type!r}")


class Pacer:
    """Token bucket over metric lines: at most ``rate`` lines per second, bursts of ``burst``.

    A StatsD daemon parses one datagram at a time; thousands sent at once overflow
    its socket's receive buffer and the kernel drops them without a word (the bench
    measured a quarter delivered for 10,000 tables pushed unpaced). The cost on the
    daemon's side is per line, so lines are what is paced.

    Thread-safe: each caller reserves its lines under a lock, then sleeps until
    they are due without holding it, so datagrams of several sources interleave
    and a big batch does not hold a small one back until it is all out.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 500,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self.tokens = float(burst)
        self.last = clock()
        self.waited = 0.0
        self._lock = threading.Lock()

    def take(self, lines: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = self.clock()
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= lines
            pause = -self.tokens / self.rate if self.tokens < 0 else 0.0
            self.waited += pause
        if pause > 0:
            self.sleep(pause)


class _UDPClient(StatsClient):  # type: ignore[misc]
    """The library's UDP client, paced, counting datagrams and send errors."""

    def __init__(self, *args: Any, max_rate: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacer = Pacer(max_rate)
        self.datagrams = 0
        self.bytes = 0
        self.errors = 0

    def _send(self, data: str) -> None:
        payload = data.encode("ascii")
        self.pacer.take(data.count("\n") + 1)
        try:
            self._sock.sendto(payload, self._addr)
        except OSError as exc:
            # UDP is fire and forget, but a local error (no route, message too
            # long) is worth a log line and a count.
            self.errors += 1
            log.warning("statsd: UDP send failed: %s", exc)
            return
        self.datagrams += 1
        self.bytes += len(payload)


class _TCPClient(TCPStatsClient):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.datagrams = 0
        self.bytes = 0
        self.errors = 0

    def _send(self, data: str) -> None:
        try:
            super()._send(data)
        except OSError:
            self.errors += 1
            self.close()  # reconnect on the next send
            raise
        self.datagrams += 1
        self.bytes += len(data) + 1


class StatsdSender:
    """Thread-safe sender to a real StatsD; one per bridge process."""

    def __init__(self, target: StatsdTarget) -> None:
        self.target = target
        prefix = target.prefix or None
        self.client: _UDPClient | _TCPClient
        if target.protocol == "tcp":
            self.client = _TCPClient(
                target.host, target.port, prefix=prefix, timeout=target.timeout, ipv6=target.ipv6
            )
        else:
            try:
                self.client = _UDPClient(
                    target.host,
                    target.port,
                    prefix=prefix,
                    maxudpsize=target.max_datagram,
                    ipv6=target.ipv6,
                    max_rate=target.max_rate,
                )
            except OSError as exc:  # the library resolves the host when it is created
                raise StatsdTargetError(
                    f"cannot use StatsD at {target.host}:{target.port} over UDP: {exc}; "
                    "check [statsd] host (and ipv6)"
                ) from None
        # Sources are polled on their own threads. A TCP stream must not
        # interleave two batches, so a batch is written under a lock; UDP
        # datagrams stand alone, so sources' datagrams may interleave (and a
        # paced big batch does not hold the others back).
        self._lock = threading.Lock() if target.protocol == "tcp" else None

    def send(self, samples: Sequence[Sample]) -> int:
        if not samples:
            return 0
        pipe = self.client.pipeline()
        for sample in samples:
            _add(pipe, sample)
        try:
            if self._lock is not None:
                with self._lock:
                    pipe.send()
            else:
                pipe.send()
        except (OSError, socket.gaierror) as exc:
            raise PollError(
                REASON_SEND,
                f"cannot send to StatsD at {self.target.host}:{self.target.port} "
                f"over {self.target.protocol}: {exc}",
            ) from None
        return len(samples)

    @property
    def datagrams(self) -> int:
        return self.client.datagrams

    def close(self) -> None:
        if self._lock is not None:
            with self._lock:
                self.client.close()
        else:
            self.client.close()


class _RecordingClient(StatsClientBase):  # type: ignore[misc]
    def __init__(self, prefix: str | None, max_datagram: int, stream: bool) -> None:
        self._prefix = prefix
        self._maxudpsize = max_datagram
        self._stream = stream
        self.sent: list[str] = []

    def _send(self, data: str) -> None:
        self.sent.append(data)

    def pipeline(self) -> PipelineBase:
        return StreamPipeline(self) if self._stream else Pipeline(self)

    def close(self) -> None:
        pass


class RecordingSender:
    """Formats and batches exactly like :class:`StatsdSender`, but keeps the
    datagrams (or TCP writes) instead of sending them: for ``--dry-run``."""

    def __init__(self, target: StatsdTarget) -> None:
        self.target = target
        self.client = _RecordingClient(
            target.prefix or None, target.max_datagram, target.protocol == "tcp"
        )
        self._lock = threading.Lock()

    def send(self, samples: Sequence[Sample]) -> int:
        if not samples:
            return 0
        with self._lock:
            pipe = self.client.pipeline()
            for sample in samples:
                _add(pipe, sample)
            pipe.send()
        return len(samples)

    @property
    def datagrams(self) -> list[str]:
        return list(self.client.sent)

    def lines(self) -> list[str]:
        return [line for datagram in self.client.sent for line in datagram.split("\n")]

    def close(self) -> None:
        pass
