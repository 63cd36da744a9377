"""MongoDB storage for xprofiler traces: ``mongodb://`` and ``mongodb+srv://`` connection strings.

The driver class is :class:`~xprofiler.drivers.mongodb.driver.MongoDBDriver`; core finds it
through the ``xprofiler.drivers`` entry points, so importing this package is never needed.
"""

from __future__ import annotations

__all__ = ["MongoDBDriver", "MongoSettings", "parse_settings"]


def __getattr__(name: str) -> object:
    # Lazy, so that reading the package does not import pymongo.
    if name == "MongoDBDriver":
        from .driver import MongoDBDriver

        return MongoDBDriver
    if name in ("MongoSettings", "parse_settings"):
        from . import settings

        return getattr(settings, name)
    raise AttributeError(name)
