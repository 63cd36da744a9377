"""Exception types. Each message says what to do next."""

from __future__ import annotations

from .uri import URLError

__all__ = [
    "ProfilerError",
    "URLError",
    "DriverError",
    "DriverNotFound",
    "DriverLibraryMissing",
    "DriverConflict",
    "StoreUnavailable",
    "TraceNotFound",
]


class ProfilerError(Exception):
    """Base class for this project's errors (URLError is a ValueError and stands apart)."""


class DriverError(ProfilerError):
    """A driver failed to do what was asked."""


class DriverNotFound(DriverError):
    """No driver is installed for a connection string's scheme."""


class DriverLibraryMissing(DriverError):
    """A driver is installed, but the client library it needs is not."""


class DriverConflict(DriverError):
    """Two installed distributions register the same scheme."""


class StoreUnavailable(DriverError):
    """The store could not be reached (down, refused, timed out)."""


class TraceNotFound(ProfilerError):
    """No points are stored for a trace id."""
