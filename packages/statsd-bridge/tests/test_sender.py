"""Sending: pacing (fake clock) and the dry-run sender's batching."""

from __future__ import annotations

import threading
import time

import pytest

from statsd_bridge import config as cfg
from statsd_bridge.sender import Pacer, RecordingSender
from statsd_bridge.sources import Sample


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.lock = threading.Lock()

    def now(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.t += seconds


def test_pacer_allows_a_burst_then_holds_to_the_rate() -> None:
    clock = Clock()
    pacer = Pacer(1000, burst=100, clock=clock.now, sleep=clock.sleep)
    for _ in range(10):
        pacer.take(10)  # the first 100 lines: the burst, no wait
    assert clock.t == 0.0
    for _ in range(100):
        pacer.take(10)  # 1000 more lines at 1000 lines/s
    assert clock.t == pytest.approx(1.0)


def test_pacer_refills_while_idle_up_to_the_burst() -> None:
    clock = Clock()
    pacer = Pacer(100, burst=50, clock=clock.now, sleep=clock.sleep)
    pacer.take(50)
    clock.t += 100.0  # a long pause refills the bucket, but only to the burst
    start = clock.t
    pacer.take(50)
    assert clock.t == start
    pacer.take(50)
    assert clock.t == pytest.approx(start + 0.5)


def test_pacer_zero_rate_never_waits() -> None:
    clock = Clock()
    pacer = Pacer(0, clock=clock.now, sleep=clock.sleep)
    for _ in range(1000):
        pacer.take(100)
    assert clock.t == 0.0


def test_pacer_shared_by_threads_keeps_the_total_rate() -> None:
    pacer = Pacer(20_000, burst=100)
    t0 = time.monotonic()

    def push() -> None:
        for _ in range(100):
            pacer.take(10)  # 1,000 lines per thread

    threads = [threading.Thread(target=push) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 4,000 lines at 20,000/s after a 100-line burst: at least 0.195 s.
    assert time.monotonic() - t0 >= 0.19


def test_recording_sender_batches_like_the_library_pipeline() -> None:
    c = cfg.loads(
        '[statsd]\nprefix = "p"\nmax_datagram = 100\n[[sources]]\nname = "x"\n'
        'kind = "profiler"\nurl = "http://127.0.0.1:1"\n'
    )
    rec = RecordingSender(c.statsd)
    samples = [Sample(f"m{i:03d}", "gauge", i) for i in range(50)]
    assert rec.send(samples) == 50
    assert all(len(d) < 100 for d in rec.datagrams)
    assert rec.lines() == [f"p.m{i:03d}:{i}|g" for i in range(50)]
    # Packed: each datagram but the last had no room for the next line.
    for d, nxt in zip(rec.datagrams, rec.datagrams[1:], strict=False):
        assert len(d) + 1 + len(nxt.split("\n")[0]) >= 100
