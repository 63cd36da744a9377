"""Scheduling: fixed monotonic deadlines, late ticks skipped, capped backoff.

A fake clock is injected into ``run_loop``: ``wait`` advances it, a poll
advances it by its duration. Thousands of ticks take milliseconds.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from statsd_bridge.schedule import Schedule, run_loop


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        assert seconds > 0
        self.t += seconds
        return False


def drive(
    schedule: Schedule,
    durations: list[float],
    results: list[bool] | None = None,
    clock: FakeClock | None = None,
) -> tuple[list[float], list[int]]:
    """Run len(durations) polls; return their start times and the skipped counts."""
    clock = clock or FakeClock()
    starts: list[float] = []
    skips: list[int] = []

    def poll(skipped: int) -> bool:
        n = len(starts)
        starts.append(clock.now())
        skips.append(skipped)
        clock.t += durations[n]
        return results[n] if results else True

    run_loop(poll, schedule, clock.now, clock.wait, lambda: False, max_polls=len(durations))
    return starts, skips


def test_no_drift_over_many_ticks_with_varying_poll_durations() -> None:
    rng = random.Random(7)
    interval = 10.0
    durations = [rng.uniform(0.0, 9.9) for _ in range(100_000)]
    starts, skips = drive(Schedule(interval), durations)
    anchor = starts[0]
    # Every poll starts on the grid anchor + k * interval; nothing accumulates.
    for k, t in enumerate(starts):
        assert t == anchor + k * interval
    assert sum(skips) == 0
    # After 100 000 ticks (11.5 days of schedule) the last start is still exact.
    assert starts[-1] - anchor == pytest.approx(99_999 * interval, abs=1e-6)


def test_sub_second_interval_does_not_drift() -> None:
    interval = 0.1
    starts, _ = drive(Schedule(interval), [0.03] * 50_000)
    assert starts[-1] - starts[0] == pytest.approx(49_999 * interval, abs=1e-6)


def test_late_ticks_are_skipped_not_bursted() -> None:
    interval = 10.0
    # Poll 2 runs 35 s: ticks 3, 4 and 5 are covered by it and skipped.
    durations = [1.0, 1.0, 35.0, 1.0, 1.0]
    starts, skips = drive(Schedule(interval), durations)
    anchor = starts[0]
    assert [round(t - anchor, 6) for t in starts] == [0.0, 10.0, 20.0, 60.0, 70.0]
    assert skips == [0, 0, 0, 3, 0]
    # Never two starts closer than the interval: no catch-up burst.
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= interval


def test_poll_ending_exactly_on_the_next_tick_does_not_skip_it() -> None:
    starts, skips = drive(Schedule(5.0), [5.0, 5.0, 5.0])
    assert [t - starts[0] for t in starts] == [0.0, 5.0, 10.0]
    assert skips == [0, 0, 0]


def test_polls_of_one_source_never_overlap() -> None:
    durations = [random.Random(3).uniform(0, 30) for _ in range(2000)]
    starts, _ = drive(Schedule(10.0), durations)
    for (a, d), b in zip(zip(starts, durations, strict=True), starts[1:], strict=False):
        assert b >= a + d


def test_backoff_doubles_while_failing_is_capped_and_resets() -> None:
    interval = 10.0
    n = 10
    results = [False] * n + [True, True]
    starts, _ = drive(Schedule(interval, backoff_max=60.0), [0.5] * (n + 2), results)
    gaps = [round((b - a) / interval) for a, b in zip(starts, starts[1:], strict=False)]
    # After failure k the next poll waits min(2**(k-1), 6) ticks; success resets it.
    assert gaps == [1, 2, 4, 6, 6, 6, 6, 6, 6, 6, 1]
    anchor = starts[0]
    for t in starts:  # still on the grid
        assert (t - anchor) / interval == pytest.approx(round((t - anchor) / interval))


def test_jitter_delays_each_tick_without_accumulating() -> None:
    interval, jitter = 10.0, 2.0
    schedule = Schedule(interval, jitter=jitter, rng=random.Random(11))
    clock = FakeClock(start=0.0)
    starts, _ = drive(schedule, [0.1] * 5000, clock=clock)
    anchor = schedule.anchor
    offsets = [t - (anchor + k * interval) for k, t in enumerate(starts)]
    assert all(0.0 <= o < jitter for o in offsets)
    assert max(offsets) > 1.5 and min(offsets) < 0.5  # it does spread the polls


def test_stop_interrupts_the_wait() -> None:
    stop = threading.Event()
    polls: list[float] = []

    def poll(_skipped: int) -> bool:
        polls.append(time.monotonic())
        stop.set()  # ask to stop during the first poll
        return True

    t0 = time.monotonic()
    n = run_loop(poll, Schedule(3600.0), time.monotonic, stop.wait, stop.is_set)
    assert n == 1
    assert time.monotonic() - t0 < 5  # did not wait for the one-hour tick


def test_short_real_run_keeps_to_the_grid() -> None:
    """Real clock, 50 ms interval, 40 polls of 0-30 ms: starts stay near the grid."""
    stop = threading.Event()
    starts: list[float] = []
    rng = random.Random(5)

    def poll(_skipped: int) -> bool:
        starts.append(time.monotonic())
        time.sleep(rng.uniform(0, 0.03))
        if len(starts) >= 40:
            stop.set()
        return True

    schedule = Schedule(0.05)
    run_loop(poll, schedule, time.monotonic, stop.wait, stop.is_set)
    anchor = schedule.anchor
    ticks = [round((t - anchor) / 0.05) for t in starts]
    # On a noisy machine a tick can be missed, never doubled: indexes increase.
    assert ticks == sorted(set(ticks))
    lateness = sorted(t - (anchor + k * 0.05) for k, t in zip(ticks, starts, strict=True))
    # The median start is within 10 ms of its deadline; error does not grow with k.
    assert lateness[len(lateness) // 2] < 0.01
    assert ticks[-1] <= 40 + 20
