"""Turning JSON values into numbers StatsD accepts."""

from __future__ import annotations

import math
from typing import Any

Number = int | float

# Reasons a value is rejected (counted in the values_rejected self-metric).
REJECT_NULL = "null"
REJECT_STRING = "string"
REJECT_NAN = "nan"
REJECT_INFINITE = "infinite"
REJECT_NOT_A_NUMBER = "not_a_number"
REJECT_BAD_NAME = "bad_name"
REJECT_DUPLICATE = "duplicate_name"

# Integral floats below this are written as ints ("1024", not "1024.0").
_EXACT_INT_LIMIT = 2.0**53


class ValueRejected(Exception):
    """A JSON value that cannot become a metric value; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def to_number(raw: Any, scale: float | int | None = None) -> Number:
    """Return ``raw`` as a finite number, scaled, or raise :class:`ValueRejected`.

    int and float pass; booleans become 1/0; None, strings, NaN, infinities,
    lists and objects are rejected. Numbers too large to be finite as a float
    are rejected as infinite (StatsD parses numbers as doubles).
    """
    value: Number
    if isinstance(raw, bool):
        value = 1 if raw else 0
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float):
        value = raw
    elif raw is None:
        raise ValueRejected(REJECT_NULL)
    elif isinstance(raw, str):
        raise ValueRejected(REJECT_STRING)
    else:
        raise ValueRejected(REJECT_NOT_A_NUMBER)

    if isinstance(value, float):
        if math.isnan(value):
            raise ValueRejected(REJECT_NAN)
        if math.isinf(value):
            raise ValueRejected(REJECT_INFINITE)
    else:
        try:
            if math.isinf(float(value)):
                raise ValueRejected(REJECT_INFINITE)
        except OverflowError:
            raise ValueRejected(REJECT_INFINITE) from None

    if scale is not None and scale != 1:
        try:
            value = value * scale
        except OverflowError:
            raise ValueRejected(REJECT_INFINITE) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueRejected(REJECT_INFINITE)
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INT_LIMIT:
        value = int(value)
    return value
