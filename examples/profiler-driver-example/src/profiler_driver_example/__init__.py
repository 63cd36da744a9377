"""An example third-party xprofiler driver: each trace is a JSON-lines file in a directory.

Core finds it through the ``xprofiler.drivers`` entry point ``jsonl``; nothing imports this
package by name. See ``docs/writing-a-driver.md`` in the xprofiler repository.
"""

from __future__ import annotations

__all__ = ["JsonLinesDriver"]


def __getattr__(name: str) -> object:
    # Lazy, so that importing the package costs nothing until the driver is asked for.
    if name == "JsonLinesDriver":
        from .driver import JsonLinesDriver

        return JsonLinesDriver
    raise AttributeError(name)
