"""The collector: drains the bus into a store, at least once, acknowledging only stored points.

One collector is one consumer of the group; run as many as the load needs, on any hosts. Each
loop:

1. Read new entries (``XREADGROUP ... >``, blocking up to ``block`` seconds).
2. Decode them. A whole entry that cannot be read, and single invalid points of an otherwise good
   entry, are set aside for the dead-letter stream; they never block the rest.
3. Write the good points to the store in one ``notify`` (store drivers are idempotent, so a
   re-delivered entry never duplicates points). While the store fails, retry with capped backoff
   and acknowledge nothing; the entries stay in this consumer's pending list, and the collector
   renews its claim on them (``XCLAIM ... JUSTID``) so that other collectors leave them alone.
4. In one MULTI/EXEC: add the dead letters to ``<stream>:dead``, count them, ``XACK`` the
   entries. An entry is acknowledged only after its points are stored.

Every ``claim_interval`` the collector takes over entries that another collector left pending
for longer than ``claim_idle`` (it died: ``XAUTOCLAIM``); an entry delivered more than
``max_deliveries`` times is dead-lettered instead (it killed collectors before). Every
``heartbeat`` seconds it publishes its counters to the hash ``<stream>:collectors`` and trims
the entries that every group acknowledged (``XTRIM MINID``), so that the stream holds only the
backlog and the producers' ``maxlen`` bound cuts only unstored entries (counted as such).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.points import Point
from xprofiler.core.registry import load_driver
from xprofiler.core.uri import URL

from .bus import bus_error, bus_status, clean_text, connect, id_text, next_id, parse_id
from .codec import MalformedEntry, decode
from .config import BusConfig, parse_bus_url

__all__ = ["Collector", "CollectorOptions", "Counters"]

log = logging.getLogger(__name__)

Entry = tuple[bytes, "dict[bytes, bytes] | None"]

_DEAD_MAXLEN = 100_000  # the dead-letter stream is bounded too (approximately)
_FORGET_AFTER = 3600.0  # a silent collector's counters are dropped from the hash after this
_ISOLATE_AFTER = 3  # failures (not StoreUnavailable) of one batch before looking for bad points


@dataclass
class CollectorOptions:
    group: str | None = None  # default: the bus URL's group option
    name: str | None = None  # default: host-pid-random
    count: int = 20  # entries per read
    block: float = 1.0  # seconds a read waits for new entries
    claim_idle: float = 30.0  # a pending entry idle this long belongs to a dead collector
    claim_interval: float | None = None  # default: claim_idle / 2, at most 10s
    max_deliveries: int = 10
    retry_max: float = 5.0  # backoff cap while the store or Redis fails
    heartbeat: float = 1.0  # counters published / acked entries trimmed this often
    stop_timeout: float = 10.0  # how long a stop waits for a failing store before giving up


@dataclass
class Counters:
    entries: int = 0  # entries read (new, own history or claimed)
    points: int = 0  # points written to the store and acknowledged
    batches: int = 0  # successful store writes
    acked: int = 0  # entries acknowledged
    claimed: int = 0  # entries taken over from dead collectors
    redelivered: int = 0  # entries read a second time (claimed or own history)
    dead_entries: int = 0  # whole entries moved to the dead-letter stream
    dead_points: int = 0  # single invalid points moved to the dead-letter stream
    poison: int = 0  # entries dead-lettered for too many deliveries
    lost_trimmed: int = 0  # pending entries cut by maxlen before they were stored
    store_errors: int = 0
    bus_errors: int = 0
    last_error: str | None = None


class Collector:
    """Consumer of the bus; writes to ``store``. Use :meth:`run` (until stopped) or
    :meth:`drain` (until nothing is left)."""

    def __init__(
        self,
        bus: str | URL | BusConfig,
        store: str | URL | Any | None = None,
        options: CollectorOptions | None = None,
    ) -> None:
        self.config = bus if isinstance(bus, BusConfig) else parse_bus_url(bus)
        self.options = opts = options or CollectorOptions()
        if opts.count < 1 or opts.block <= 0 or opts.claim_idle <= 0 or opts.heartbeat <= 0:
            raise ValueError("count >= 1 and block, claim_idle, heartbeat > 0 are required")
        if opts.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.group = opts.group or self.config.group
        self.name = opts.name or (f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}")
        if store is None:
            store = self.config.store
            if store is None:
                raise DriverError(
                    "the collector needs a store: pass --to <store URI> or put "
                    "?store=<percent-encoded store URI> in the bus connection string"
                )
        if isinstance(store, (str, URL)):
            self.store: Any = load_driver(store)
            self._own_store = True
        else:
            self.store = store
            self._own_store = False
        self.store_where = str(getattr(self.store, "url", type(self.store).__name__))
        # A read blocks up to `block` seconds: the socket must wait longer than that.
        self.redis = connect(self.config, socket_timeout=self.config.timeout + opts.block)
        self.counters = Counters()
        self.state = "starting"
        self.started = time.time()
        self.group_info: dict[str, Any] = {}
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._rates: deque[tuple[float, int]] = deque(maxlen=32)
        self._next_claim = 0.0
        self._next_beat = 0.0
        self._own_history_done = False
        self.on_tick: Callable[[Collector], None] | None = None
        self.last_store_ok = True

    # -- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop after the batch in hand is stored and acknowledged (or ``stop_timeout`` passed
        while the store fails: the batch then stays pending for another collector)."""
        if not self._stop.is_set():
            self._stop_deadline = time.monotonic() + self.options.stop_timeout
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def ensure_group(self) -> None:
        """Create the consumer group (reading from the stream's start) if it does not exist."""
        try:
            self.redis.xgroup_create(self.config.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise bus_error(self.config, "create the consumer group", exc) from None
        except redis.RedisError as exc:
            raise bus_error(self.config, "create the consumer group", exc) from None

    def run(self, *, drain: bool = False) -> None:
        """Collect until :meth:`stop` (or, with ``drain``, until the group has nothing left to
        read and nothing pending). Redis outages are waited out; the caller checks Redis is
        reachable first (``ensure_group``) if it wants to fail fast."""
        backoff = 0.0
        self.state = "running"
        try:
            while not self._stop.is_set():
                try:
                    if not self._own_history_done:
                        self._read_own_history()
                    self._periodic()
                    got = self._read_new()
                    backoff = 0.0
                    if not got and drain and self._drained():
                        break
                except (redis.RedisError, DriverError) as exc:
                    self.counters.bus_errors += 1
                    if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
                        # Redis came back without its data (no persistence): start over.
                        self._error(
                            "the consumer group is gone (Redis lost its data?); recreating it"
                        )
                        self._retry(self.ensure_group)
                        continue
                    if isinstance(exc, redis.RedisError):
                        exc = bus_error(self.config, "read the stream", exc)
                    if self.state != "bus failing":
                        self._error(str(exc))
                    self.state = "bus failing"
                    backoff = min(self.options.retry_max, max(0.1, backoff * 2))
                    self._stop.wait(backoff)
                    continue
                if self.state == "bus failing":
                    log.warning("collector %s: the bus %s is back", self.name, self.config.where)
                    self.state = "running"
        finally:
            self.state = "stopped"
            try:
                self._group_info()
                self._trim_acked()
            except redis.RedisError:
                pass
            self._publish(final=True)

    def _retry(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except DriverError as exc:
            self.counters.bus_errors += 1
            self._error(str(exc))
            self._stop.wait(self.options.retry_max)

    def drain(self, timeout: float = 60.0) -> None:
        """Process everything on the bus now (tests, benchmarks, one-shot jobs)."""
        deadline = time.monotonic() + timeout
        self.ensure_group()
        timer = threading.Timer(timeout, self.stop)
        timer.daemon = True
        timer.start()
        try:
            self.run(drain=True)
        finally:
            timer.cancel()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bus was not drained within {timeout}s")

    def close(self) -> None:
        try:
            self.redis.close()
        except redis.RedisError:
            pass
        if self._own_store:
            self.store.close()

    # -- reading ------------------------------------------------------------------------------
    def _read_own_history(self) -> None:
        # Entries this consumer name read before a restart and never acknowledged.
        start = "0"
        while not self._stop.is_set():
            reply = self.redis.xreadgroup(
                self.group, self.name, {self.config.stream: start}, count=self.options.count
            )
            entries = reply[0][1] if reply else []
            if not entries:
                break
            self.counters.redelivered += len(entries)
            self._process(entries)
            if self._stop.is_set() and not self.last_store_ok:
                return
            start = id_text(next_id(entries[-1][0]))
        self._own_history_done = True

    def _read_new(self) -> int:
        reply = self.redis.xreadgroup(
            self.group,
            self.name,
            {self.config.stream: ">"},
            count=self.options.count,
            block=max(1, int(self.options.block * 1000)),
        )
        entries = reply[0][1] if reply else []
        if entries:
            self._process(entries)
        return len(entries)

    def _claim_dead(self) -> None:
        opts = self.options
        start: bytes | str = "0-0"
        while not self._stop.is_set():
            reply = self.redis.xautoclaim(
                self.config.stream,
                self.group,
                self.name,
                int(opts.claim_idle * 1000),
                start_id=start,
                count=opts.count,
            )
            start, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                # Redis drops pending entries that were trimmed away: they were never stored.
                self.counters.lost_trimmed += len(deleted)
                self._error(
                    f"{len(deleted)} pending entries were trimmed from the stream before they "
                    "were stored (maxlen too small for the backlog)"
                )
            if entries:
                self.counters.claimed += len(entries)
                self.counters.redelivered += len(entries)
                log.info(
                    "collector %s: took over %d entries of a dead collector",
                    self.name,
                    len(entries),
                )
                self._process(entries, check_deliveries=True)
            if start in (b"0-0", "0-0"):
                break

    def _drained(self) -> bool:
        # Called after a read found nothing new: drained once nothing is pending either
        # (entries of a dead collector are claimed after claim_idle, then stored).
        return not self._group_info().get("pending")

    # -- processing -----------------------------------------------------------------------------
    def _deliveries(self, entries: Sequence[Entry]) -> dict[bytes, int]:
        ids = [e[0] for e in entries]
        lo = min(ids, key=parse_id)
        hi = max(ids, key=parse_id)
        rows = self.redis.xpending_range(
            self.config.stream, self.group, lo, hi, len(ids) * 2 + 10, consumername=self.name
        )
        return {r["message_id"]: int(r["times_delivered"]) for r in rows}

    def _process(self, entries: Sequence[Entry], *, check_deliveries: bool = False) -> None:
        self.counters.entries += len(entries)
        points: list[Point] = []
        owners: list[bytes] = []  # the entry each point came from
        dead: list[dict[bytes, bytes]] = []
        dead_entries = dead_points = poison = 0
        ids: list[bytes] = []
        deliveries = self._deliveries(entries) if check_deliveries else {}
        for entry_id, fields in entries:
            ids.append(entry_id)
            if fields is None:  # trimmed while pending
                self.counters.lost_trimmed += 1
                continue
            times = deliveries.get(entry_id, 0)
            if times > self.options.max_deliveries:
                dead.append(
                    self._dead(entry_id, fields, f"delivered {times} times without being stored")
                )
                poison += 1
                continue
            try:
                decoded = decode(fields)
            except MalformedEntry as exc:
                dead.append(self._dead(entry_id, fields, f"malformed entry: {exc}"))
                dead_entries += 1
                continue
            points.extend(decoded.points)
            owners.extend([entry_id] * len(decoded.points))
            for reason, raw in decoded.bad:
                dead.append(
                    self._dead(entry_id, {b"point": raw.encode()}, f"invalid point: {reason}")
                )
                dead_points += 1
        refused: list[tuple[int, str]] = []
        if points:
            outcome = self._store_points(points, ids)
            if outcome is None:
                return  # stopping with the store down: left pending, claimed later by a live one
            refused = outcome
        for index, reason in refused:
            raw = json.dumps(points[index], separators=(",", ":")).encode()
            dead.append(
                self._dead(owners[index], {b"point": raw}, f"refused by the store: {reason}")
            )
            dead_points += 1
        self._ack(ids, dead)
        c = self.counters
        c.points += len(points) - len(refused)
        c.batches += 1 if points else 0
        c.acked += len(ids)
        c.dead_entries += dead_entries
        c.dead_points += dead_points
        c.poison += poison
        self._rates.append((time.monotonic(), c.points))
        if dead:
            log.warning(
                "collector %s: moved %d entries/points to %s (malformed or undeliverable)",
                self.name,
                len(dead),
                self.config.dead_key,
            )

    def _dead(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> dict[bytes, bytes]:
        out = {k: v for k, v in fields.items() if not k.startswith(b"xp-dead-")}
        out[b"xp-dead-id"] = entry_id
        out[b"xp-dead-reason"] = reason.encode("utf-8", "replace")
        out[b"xp-dead-consumer"] = self.name.encode()
        out[b"xp-dead-at"] = str(time.time_ns()).encode()
        return out

    def _ack(self, ids: list[bytes], dead: list[dict[bytes, bytes]]) -> None:
        # Atomic: a collector killed here re-delivers the entries and dead-letters them again
        # only if none of this happened.
        pipe = self.redis.pipeline(transaction=True)
        for fields in dead:
            pipe.xadd(self.config.dead_key, fields, maxlen=_DEAD_MAXLEN, approximate=True)  # type: ignore[arg-type]
        if dead:
            pipe.hincrby(self.config.stats_key, "dead_lettered", len(dead))
        pipe.xack(self.config.stream, self.group, *ids)
        pipe.execute()

    def _store_points(self, points: list[Point], ids: list[bytes]) -> list[tuple[int, str]] | None:
        """Write ``points``, retrying while the store fails. Returns the points the store refused
        one by one (index, reason): empty when all were stored; None when stopping gave up.

        After ``_ISOLATE_AFTER`` failures that are not StoreUnavailable, the batch is bisected to
        find points the store refuses (a type conflict, a value it cannot hold). They are set
        aside only if the store accepted the rest: when it refuses every point, the fault is
        taken to be the store's, and the batch waits."""
        backoff = 0.0
        last_touch = time.monotonic()
        failures = 0
        while True:
            refused: list[tuple[int, str]] | None
            try:
                self.store.notify(points)
                refused = []
            except Exception as exc:  # noqa: BLE001 - any store failure: retry, acknowledge nothing
                refused = None
                error = clean_text(f"{type(exc).__name__}: {exc}", self.config)
                if not isinstance(exc, StoreUnavailable):
                    failures += 1
                    if failures >= _ISOLATE_AFTER and len(points) > 1:
                        refused = self._isolate(points)
                        if refused is not None and len(refused) == len(points):
                            refused = None
            if refused is not None:
                if not self.last_store_ok:
                    log.warning("collector %s: the store %s is back", self.name, self.store_where)
                self.last_store_ok = True
                self.state = "stopping" if self._stop.is_set() else "running"
                return refused
            # The store failed: count, wait, retry; the entries stay pending, held by us.
            self.counters.store_errors += 1
            self.counters.last_error = error
            if self.last_store_ok:
                log.warning(
                    "collector %s: the store %s failed (%s); holding %d entries unacknowledged "
                    "and retrying",
                    self.name,
                    self.store_where,
                    error,
                    len(ids),
                )
            self.last_store_ok = False
            self.state = "store failing"
            if self._stop.is_set() and time.monotonic() >= (self._stop_deadline or 0):
                log.warning(
                    "collector %s: stopping with the store down; %d entries stay pending "
                    "for another collector",
                    self.name,
                    len(ids),
                )
                return None
            backoff = min(self.options.retry_max, max(0.1, backoff * 2))
            end = time.monotonic() + backoff
            while time.monotonic() < end:
                time.sleep(min(0.1, max(0.0, end - time.monotonic())))
                if self._stop.is_set() and time.monotonic() >= (self._stop_deadline or 0):
                    break
            if time.monotonic() - last_touch >= self.options.claim_idle / 3:
                self._touch(ids)
                last_touch = time.monotonic()
            self._periodic(claim=False)

    def _isolate(self, points: list[Point], offset: int = 0) -> list[tuple[int, str]] | None:
        """Bisect ``points``: those the store refuses alone, or None if it became unavailable."""
        try:
            self.store.notify(points)
            return []
        except StoreUnavailable:
            return None
        except Exception as exc:  # noqa: BLE001 - the store's reason, kept for the dead letter
            if len(points) == 1:
                return [(offset, clean_text(f"{type(exc).__name__}: {exc}", self.config))]
        mid = len(points) // 2
        left = self._isolate(points[:mid], offset)
        right = self._isolate(points[mid:], offset + mid) if left is not None else None
        return None if left is None or right is None else left + right

    def _touch(self, ids: list[bytes]) -> None:
        """Renew this collector's claim on entries it holds (resets their idle time)."""
        try:
            self.redis.xclaim(self.config.stream, self.group, self.name, 0, ids, justid=True)
        except redis.RedisError as exc:
            self.counters.bus_errors += 1
            self._error(str(bus_error(self.config, "renew the claim on pending entries", exc)))

    # -- periodic work --------------------------------------------------------------------------
    def _periodic(self, *, claim: bool = True) -> None:
        now = time.monotonic()
        if claim and now >= self._next_claim:
            interval = self.options.claim_interval or min(10.0, self.options.claim_idle / 2)
            self._next_claim = now + interval
            self._claim_dead()
        if now >= self._next_beat:
            self._next_beat = now + self.options.heartbeat
            try:
                self._group_info()
                self._trim_acked()
                self._housekeeping()
            except redis.RedisError as exc:
                self.counters.bus_errors += 1
                self._error(str(bus_error(self.config, "update the bus's state", exc)))
            self._publish()
            if self.on_tick is not None:
                self.on_tick(self)

    def _group_info(self) -> dict[str, Any]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xinfo_groups(self.config.stream)
        pipe.xlen(self.config.stream)
        groups, length = pipe.execute()
        info: dict[str, Any] = {"length": length, "groups": groups}
        for g in groups:
            name = g.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                lag = g.get("lag")
                info.update(pending=g.get("pending") or 0, lag=lag)
                if lag is None:  # Redis could not tell (entries were deleted): estimate
                    info["lag"] = max(0, int(length) - int(g.get("pending") or 0))
        self.group_info = info
        return info

    def _trim_acked(self) -> None:
        """Cut the entries every group acknowledged: the stream then holds only the backlog."""
        groups = self.group_info.get("groups") or []
        if not groups:
            return
        floor: tuple[int, int] | None = None
        for g in groups:
            if g.get("pending"):
                summary = self.redis.xpending(self.config.stream, g["name"])
                oldest = parse_id(summary["min"]) if summary.get("min") else None
            else:
                oldest = None
            after = next_id(g.get("last-delivered-id") or b"0-0")
            low = min(oldest, after) if oldest is not None else after
            floor = low if floor is None else min(floor, low)
        if floor is not None and floor > (0, 1):
            self.redis.xtrim(self.config.stream, minid=id_text(floor), approximate=False)

    def _housekeeping(self) -> None:
        """Forget consumers that hold nothing and have been silent for a long time."""
        stale_ms = max(600_000, int(self.options.claim_idle * 20_000))
        try:
            consumers = self.redis.xinfo_consumers(self.config.stream, self.group)
        except redis.ResponseError:
            return
        for cons in consumers:
            name = cons.get("name")
            name = name.decode() if isinstance(name, bytes) else str(name)
            if (
                name != self.name
                and not cons.get("pending")
                and int(cons.get("idle") or 0) > stale_ms
            ):
                self.redis.xgroup_delconsumer(self.config.stream, self.group, name)

    def rate(self) -> float:
        """Points stored per second over the last few seconds."""
        now = time.monotonic()
        window = [(t, n) for t, n in self._rates if now - t <= 10.0]
        if len(window) < 2:
            return 0.0
        (t0, n0), (t1, n1) = window[0], window[-1]
        if now - t1 > 2 * self.options.heartbeat + self.options.block:
            return 0.0
        return (n1 - n0) / max(t1 - t0, 1e-3)

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "store": self.store_where,
            "state": self.state,
            "started": self.started,
            "heartbeat": time.time(),
            "interval": self.options.heartbeat,
            "rate": round(self.rate(), 1),
            "entries": c.entries,
            "points": c.points,
            "batches": c.batches,
            "acked": c.acked,
            "claimed": c.claimed,
            "redelivered": c.redelivered,
            "dead_entries": c.dead_entries,
            "dead_points": c.dead_points,
            "poison": c.poison,
            "lost_trimmed": c.lost_trimmed,
            "store_errors": c.store_errors,
            "bus_errors": c.bus_errors,
            "last_error": c.last_error,
            "pending": self.group_info.get("pending"),
            "lag": self.group_info.get("lag"),
        }

    def _publish(self, *, final: bool = False) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(self.config.collectors_key, self.name, json.dumps(self.snapshot()))
            if final:
                pipe.hgetall(self.config.collectors_key)
            replies = pipe.execute()
            if final:
                self._forget_silent(replies[-1])
        except redis.RedisError as exc:
            self.counters.bus_errors += 1
            log.debug("collector %s: cannot publish counters: %s", self.name, type(exc).__name__)

    def _forget_silent(self, records: dict[bytes, bytes]) -> None:
        now = time.time()
        for name, raw in records.items():
            try:
                beat = float(json.loads(raw).get("heartbeat"))
            except (ValueError, TypeError, AttributeError):
                continue
            if now - beat > _FORGET_AFTER:
                self.redis.hdel(self.config.collectors_key, name)

    def status(self) -> dict[str, Any]:
        """The bus as every collector sees it (for monitoring)."""
        try:
            return bus_status(self.redis, self.config, now=time.time())
        except redis.RedisError as exc:
            raise bus_error(self.config, "read the bus's counters", exc) from None

    def _error(self, text: str) -> None:
        self.counters.last_error = text
        log.warning("collector %s: %s", self.name, text)
