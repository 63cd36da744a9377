"""The Redis connection, error wrapping and stream-id helpers shared by producer and collector."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from xprofiler.core.errors import DriverError, StoreUnavailable

from .config import BusConfig

__all__ = ["connect", "bus_error", "clean_text", "parse_id", "next_id", "id_text"]


def connect(cfg: BusConfig, *, socket_timeout: float | None = None) -> redis.Redis:
    """A client; no connection is made until the first command. No hidden retries: the callers
    (dispatcher, collector) retry with their own backoff and count it."""
    return redis.Redis(
        **cfg.client_kwargs(socket_timeout=socket_timeout), retry=Retry(NoBackoff(), 0)
    )


def clean_text(text: str, cfg: BusConfig) -> str:
    """``text`` without the bus's password (client messages do not quote it; belt and braces)."""
    for secret in (cfg.password, cfg.url.get("store")):
        if secret:
            text = text.replace(secret, "***")
    return text[:500]


def bus_error(cfg: BusConfig, what: str, exc: BaseException) -> DriverError:
    """A DriverError for a failed Redis call: StoreUnavailable when Redis cannot be reached."""
    detail = clean_text(f"{type(exc).__name__}: {exc}", cfg)
    if isinstance(exc, redis.AuthenticationError):
        return DriverError(
            f"cannot {what} on the bus {cfg.where}: authentication failed; check the user name "
            "and password in the connection string"
        )
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return StoreUnavailable(
            f"cannot {what} on the bus {cfg.where}: Redis is unreachable ({detail}); check that "
            "it runs and that host and port are right"
        )
    return DriverError(f"cannot {what} on the bus {cfg.where}: {detail}")


def parse_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def id_text(value: tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}"


def next_id(value: bytes | str) -> tuple[int, int]:
    """The smallest id after ``value``."""
    ms, seq = parse_id(value)
    return (ms + 1, 0) if seq >= 2**64 - 1 else (ms, seq + 1)


def _text(value: object) -> object:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def bus_status(client: redis.Redis, cfg: BusConfig, *, now: float) -> dict[str, object]:
    """What the bus holds and what its collectors report: stream length, the group's lag and
    pending count, the dead-letter length, bus-wide counters, each collector's counters."""
    import json

    pipe = client.pipeline(transaction=False)
    pipe.xlen(cfg.stream)
    pipe.xinfo_groups(cfg.stream)
    pipe.xlen(cfg.dead_key)
    pipe.hgetall(cfg.collectors_key)
    pipe.hgetall(cfg.stats_key)
    length, groups, dead, collectors_raw, counters_raw = pipe.execute(raise_on_error=False)
    for value in (length, dead, collectors_raw, counters_raw):
        if isinstance(value, Exception):
            raise value
    group: dict[str, object] | None = None
    if not isinstance(groups, Exception):  # no stream yet: "no such key"
        for g in groups:
            if _text(g.get("name")) == cfg.group:
                group = {
                    "name": cfg.group,
                    "consumers": g.get("consumers"),
                    "pending": g.get("pending"),
                    "lag": g.get("lag"),
                    "last_delivered_id": _text(g.get("last-delivered-id")),
                }
    collectors = []
    for name, raw in sorted(collectors_raw.items()):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        beat = record.get("heartbeat")
        interval = record.get("interval") or 1.0
        record["name"] = _text(name)
        record["alive"] = (
            isinstance(beat, (int, float))
            and isinstance(interval, (int, float))
            and now - beat <= 3 * interval + 2
            and record.get("state") != "stopped"
        )
        collectors.append(record)
    alive = [c for c in collectors if c["alive"]]
    return {
        "stream": cfg.stream,
        "length": length,
        "maxlen": cfg.maxlen or None,
        "group": group,
        "dead_letter": {"stream": cfg.dead_key, "length": dead},
        "counters": {_text(k): int(v) for k, v in counters_raw.items() if v.isdigit()},
        "collectors": collectors,
        "collectors_alive": len(alive),
        "points_per_second": round(sum(float(c.get("rate") or 0) for c in alive), 1),
        "points_stored": sum(int(c.get("points") or 0) for c in collectors),
    }
