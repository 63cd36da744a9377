"""Exception types of the bridge. Each message says what to do next."""

from __future__ import annotations

from dataclasses import dataclass


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, with where it is."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class ConfigError(BridgeError):
    """The config file cannot be used; ``problems`` lists every reason found."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"{path}: {len(self.problems)} problem(s) in the config; fix them and run "
            f"'statsd-bridge check -c {path}' again:\n{lines}"
        )


# Reasons a poll fails. They become metric name parts of the self-metrics
# (poll_errors.<reason>), so they stay short and made of [a-z_].
REASON_TIMEOUT = "timeout"
REASON_CONNECTION = "connection"
REASON_HTTP_STATUS = "http_status"
REASON_TOO_LARGE = "too_large"
REASON_BAD_JSON = "bad_json"
REASON_BAD_SHAPE = "bad_shape"
REASON_MISSING_PATH = "missing_path"
REASON_SEND = "send"
REASON_INTERNAL = "internal"

POLL_ERROR_REASONS = (
    REASON_TIMEOUT,
    REASON_CONNECTION,
    REASON_HTTP_STATUS,
    REASON_TOO_LARGE,
    REASON_BAD_JSON,
    REASON_BAD_SHAPE,
    REASON_MISSING_PATH,
    REASON_SEND,
    REASON_INTERNAL,
)


class PollError(BridgeError):
    """One poll of one source failed; nothing of it is sent.

    ``reason`` is one of :data:`POLL_ERROR_REASONS`; the message is safe to log
    (no header value, password or response body in it).
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)
