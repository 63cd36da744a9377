"""A Redis Streams bus between traced services and the store.

Services publish with a ``redis://`` connection string (:class:`MessagingDriver`); collectors
(``profiler collect``, :class:`Collector`) drain the stream into any store driver.
"""

from __future__ import annotations

from .collector import Collector, CollectorOptions
from .config import BusConfig, parse_bus_url
from .driver import MessagingDriver

__all__ = ["BusConfig", "Collector", "CollectorOptions", "MessagingDriver", "parse_bus_url"]
