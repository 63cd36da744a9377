"""Drivers that ship with core: ``memory://`` and ``sqlite://`` (the embedded default)."""
