"""The bridge: poll each source on its schedule, send its samples, report on itself."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import names
from .config import BridgeSettings, Config, Source
from .errors import REASON_INTERNAL, REASON_SEND, PollError
from .fetch import Fetcher
from .schedule import Clock, Schedule, run_loop
from .sender import Sender, StatsdSender
from .sources import Collector, PollResult, Sample, make_collector

log = logging.getLogger(__name__)


@dataclass
class PollOutcome:
    source: str
    ok: bool
    reason: str | None = None
    message: str = ""
    sent: int = 0
    rejected: int = 0
    units: int = 0
    duration: float = 0.0


@dataclass
class SourceStats:
    """Counters kept in the process (the self-metrics send the same numbers)."""

    polls: int = 0
    successes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    units: int = 0
    skipped_ticks: int = 0
    consecutive_failures: int = 0
    last_success: float | None = None


class SourcePoller:
    """Polls one source: fetch, map, send all or nothing, then the self-metrics."""

    def __init__(
        self,
        source: Source,
        settings: BridgeSettings,
        sender: Sender,
        clock: Callable[[], float] = time.monotonic,
        collector: Collector | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.sender = sender
        self.clock = clock
        self.collector = collector or make_collector(source, settings.max_name_part)
        self.fetcher = fetcher or Fetcher(source, clock=clock)
        self.stats = SourceStats()
        self.started = clock()
        self._logged_rejections: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # one poll of this source at a time, whoever calls

    def poll(self, skipped: int = 0) -> PollOutcome:
        with self._lock:
            return self._poll(skipped)

    def _poll(self, skipped: int) -> PollOutcome:
        src = self.source
        t0 = self.clock()
        deadline = t0 + src.timeout
        outcome = PollOutcome(source=src.name, ok=False)
        result: PollResult | None = None
        try:
            result = self.collector.collect(self.fetcher, deadline)
            outcome.sent = self.sender.send(result.samples)
            outcome.ok = True
        except PollError as exc:
            outcome.reason, outcome.message = exc.reason, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not end the source's loop
            outcome.reason = REASON_INTERNAL
            outcome.message = f"unexpected {type(exc).__name__}; please report it"
            log.debug("source %s: unexpected error", src.name, exc_info=True)
        now = self.clock()
        outcome.duration = now - t0

        st = self.stats
        st.polls += 1
        st.skipped_ticks += skipped
        if result is not None:
            outcome.rejected = sum(result.rejected.values())
            outcome.units = result.units
            st.rejected.update(result.rejected)
            self._log_rejections(result)
        if outcome.ok:
            if st.consecutive_failures:
                log.info(
                    "source %s: recovered after %d failed poll(s)",
                    src.name,
                    st.consecutive_failures,
                )
            st.successes += 1
            st.sent += outcome.sent
            st.units += outcome.units
            st.consecutive_failures = 0
            st.last_success = now
        else:
            assert outcome.reason is not None
            st.errors[outcome.reason] += 1
            st.consecutive_failures += 1
            log.warning(
                "source %s: poll failed (%s): %s; nothing sent for this poll%s",
                src.name,
                outcome.reason,
                outcome.message,
                f" ({st.consecutive_failures} in a row)" if st.consecutive_failures > 1 else "",
            )
        self._send_self_metrics(outcome, skipped, now)
        return outcome

    def _log_rejections(self, result: PollResult) -> None:
        for reason, where in result.rejections:
            key = (reason, where)
            if key in self._logged_rejections:
                continue
            if len(self._logged_rejections) < 1000:
                self._logged_rejections.add(key)
            log.warning(
                "source %s: value rejected (%s) at %s; later ones like it are counted, not logged",
                self.source.name,
                reason,
                where,
            )

    def self_samples(self, outcome: PollOutcome, skipped: int, now: float) -> list[Sample]:
        if not self.settings.self_prefix:
            return []
        base = names.join(self.settings.self_prefix, self.source.name)
        st = self.stats
        samples = [Sample(f"{base}.polls", "counter", 1)]
        if not outcome.ok and outcome.reason:
            samples.append(Sample(f"{base}.poll_errors.{outcome.reason}", "counter", 1))
        if outcome.rejected:
            samples.append(Sample(f"{base}.values_rejected", "counter", outcome.rejected))
        if outcome.sent:
            samples.append(Sample(f"{base}.metrics_sent", "counter", outcome.sent))
        if skipped:
            samples.append(Sample(f"{base}.ticks_skipped", "counter", skipped))
        samples.append(Sample(f"{base}.poll_duration", "timer", round(outcome.duration * 1000, 3)))
        since = st.last_success if st.last_success is not None else self.started
        samples.append(Sample(f"{base}.last_success_age", "gauge", _seconds(now - since)))
        samples.append(Sample(f"{base}.consecutive_failures", "gauge", st.consecutive_failures))
        return samples

    def _send_self_metrics(self, outcome: PollOutcome, skipped: int, now: float) -> None:
        samples = self.self_samples(outcome, skipped, now)
        try:
            self.sender.send(samples)
        except PollError as exc:
            if outcome.reason != REASON_SEND:
                log.warning("source %s: self-metrics not sent: %s", self.source.name, exc)

    def close(self) -> None:
        self.fetcher.close()


def _seconds(value: float) -> float | int:
    """Seconds to the millisecond, as an int when whole ("0", not "0.0")."""
    rounded = round(max(0.0, value), 3)
    return int(rounded) if rounded.is_integer() else rounded


class Bridge:
    """All sources of one config, sharing one StatsD sender."""

    def __init__(
        self,
        config: Config,
        sender: Sender | None = None,
        sender_for: Callable[[Source], Sender] | None = None,
    ) -> None:
        """``sender_for(source)``, when given, picks a sender per source (dry runs
        use it to print each source's lines together); otherwise all sources
        share ``sender`` or one :class:`StatsdSender`."""
        self.config = config
        self.sender: Sender = sender or StatsdSender(config.statsd)
        pick = sender_for or (lambda _source: self.sender)
        self.pollers = [SourcePoller(s, config.bridge, pick(s)) for s in config.sources]

    def once(self) -> list[PollOutcome]:
        """Poll every source once, concurrently; return the outcomes in config order."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.pollers))) as pool:
            return list(pool.map(lambda p: p.poll(), self.pollers))

    def run(self, stop: threading.Event) -> None:
        """Poll every source on its schedule until ``stop`` is set.

        Each source has its own thread; when ``stop`` is set, a poll in flight
        finishes (its timeout bounds it) and is sent, then the threads end.
        """
        clock = Clock(stop)
        threads = []
        for poller in self.pollers:
            src = poller.source
            schedule = Schedule(src.interval, src.jitter, src.backoff_max)

            def target(poller: SourcePoller = poller, schedule: Schedule = schedule) -> None:
                run_loop(
                    lambda skipped: poller.poll(skipped).ok,
                    schedule,
                    clock.now,
                    clock.wait,
                    stop.is_set,
                )

            t = threading.Thread(target=target, name=f"statsd-bridge:{src.name}")
            t.start()
            threads.append(t)
        log.info("statsd-bridge: polling %d source(s)", len(threads))
        for t in threads:
            # join with a timeout keeps the main thread responsive to signals
            while t.is_alive():
                t.join(0.2)

    def close(self) -> None:
        for poller in self.pollers:
            poller.close()
        self.sender.close()
