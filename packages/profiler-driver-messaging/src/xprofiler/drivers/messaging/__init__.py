"""A Redis Streams bus between traced services and the store.

Services publish with a ``redis://`` connection string (:class:`MessagingDriver`); collectors
(``profiler collect``, :class:`Collector`) drain the stream into any store driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import BusConfig, parse_bus_url

if TYPE_CHECKING:
    from .collector import Collector, CollectorOptions
    from .driver import MessagingDriver

# The redis client is imported only when the bus is used, so that `profiler` (which loads the
# `collect` command from this package) works, and says what is missing, without redis.
_LAZY = {"Collector": "collector", "CollectorOptions": "collector", "MessagingDriver": "driver"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


__all__ = ["BusConfig", "Collector", "CollectorOptions", "MessagingDriver", "parse_bus_url"]
