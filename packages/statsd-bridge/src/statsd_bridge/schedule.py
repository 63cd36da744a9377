"""Fixed-deadline scheduling of one source's polls.

Poll ``k`` is due at ``anchor + k * interval`` (plus an optional jitter drawn
afresh for each tick and never carried over), computed by multiplication from
one monotonic anchor, so no error accumulates however long the bridge runs.
A poll that overruns makes the ticks it covered be skipped, not run in a
burst; while a source keeps failing the next poll is pushed back by a doubling
number of ticks, capped at ``backoff_max``. Each source runs its loop on its
own thread, so one poll of a source never overlaps another of the same source
and one slow source never delays another.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Tick:
    index: int
    skipped: int  # ticks passed over because the previous poll ran late


class Schedule:
    def __init__(
        self,
        interval: float,
        jitter: float = 0.0,
        backoff_max: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.jitter = jitter
        self.backoff_max = interval if backoff_max is None else max(backoff_max, interval)
        self.rng = rng or random.Random()
        self.anchor = 0.0

    def start(self, now: float) -> None:
        self.anchor = now

    def due(self, index: int) -> float:
        """When tick ``index`` should start: on the grid, plus this tick's jitter."""
        base = self.anchor + index * self.interval
        if self.jitter > 0:
            base += self.rng.uniform(0.0, self.jitter)
        return base

    def backoff_ticks(self, failures: int) -> int:
        """How many ticks after the last poll the next one may be, given the failure streak."""
        if failures <= 1:
            return 1
        cap = max(1, math.ceil(self.backoff_max / self.interval - 1e-9))
        # 2 ** (failures - 1), without computing huge powers for long outages.
        exponent = min(failures - 1, 62)
        return min(2**exponent, cap)

    def next(self, index: int, now: float, failures: int = 0) -> Tick:
        """The tick after ``index``, given the time now and the failure streak."""
        earliest = index + self.backoff_ticks(failures)
        # First tick that is not already in the past.
        on_time = math.ceil((now - self.anchor) / self.interval - 1e-9)
        nxt = max(earliest, on_time)
        return Tick(index=nxt, skipped=nxt - earliest)


class Clock:
    """Real time: ``monotonic()`` and an interruptible ``wait``."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def now(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when asked to stop."""
        return self.stop.wait(seconds)


def run_loop(
    poll: Callable[[int], bool],
    schedule: Schedule,
    now: Callable[[], float],
    wait: Callable[[float], bool],
    stopped: Callable[[], bool],
    max_polls: int | None = None,
) -> int:
    """Poll on the schedule until stopped; return how many polls ran.

    ``poll(skipped)`` runs one poll and returns True on success. ``wait(d)``
    sleeps ``d`` seconds or until stopped, returning True when stopped. The
    clock is injected so tests can drive thousands of ticks instantly.
    """
    schedule.start(now())
    index = 0
    skipped = 0
    failures = 0
    polls = 0
    while not stopped():
        delay = schedule.due(index) - now()
        if delay > 0 and wait(delay):
            break
        if stopped():
            break
        ok = poll(skipped)
        polls += 1
        failures = 0 if ok else failures + 1
        if max_polls is not None and polls >= max_polls:
            break
        tick = schedule.next(index, now(), failures)
        index, skipped = tick.index, tick.skipped
    return polls
