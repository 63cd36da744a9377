"""Trace context across services: HMAC-signed headers, wire-compatible with OSProfiler.

``X-Trace-Info`` is the URL-safe base64 of a JSON object ``{"base_id": ..., "parent_id": ...}``;
``X-Trace-HMAC`` is the hex HMAC-SHA1 of that base64 text under a shared key. A receiver tries
each of its keys (rotation) with a constant-time compare. Anything missing, malformed, unsigned
or badly signed yields None: no trace is started and nothing is raised.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from . import profiler as _p
from .points import validate_trace_id

__all__ = [
    "X_TRACE_INFO",
    "X_TRACE_HMAC",
    "signed_pack",
    "signed_unpack",
    "get_trace_id_headers",
    "trace_from_headers",
]

log = logging.getLogger(__name__)

X_TRACE_INFO = "X-Trace-Info"
X_TRACE_HMAC = "X-Trace-HMAC"
_MAX_HEADER = 4096  # a real header is ~150 bytes; refuse to decode anything huge
_ALLOWED_KEYS = {"base_id", "parent_id"}


def _is_id(value: Any) -> bool:
    try:
        validate_trace_id(value)
    except ValueError:
        return False
    return True


def _hmac_hex(data: bytes, key: str | bytes) -> str:
    k = key if isinstance(key, bytes) else key.encode("utf-8")
    return hmac.new(k, data, hashlib.sha1).hexdigest()


def signed_pack(data: Mapping[str, Any], hmac_key: str | bytes) -> tuple[str, str]:
    """Encode and sign ``data``; returns (info header value, hmac header value)."""
    raw = base64.urlsafe_b64encode(json.dumps(dict(data)).encode("utf-8"))
    return raw.decode("ascii"), _hmac_hex(raw, hmac_key)


def signed_unpack(
    data: str | bytes | None, signature: str | bytes | None, hmac_keys: Iterable[str | bytes]
) -> dict[str, Any] | None:
    """Verify and decode; returns the payload plus ``hmac_key`` (the key that matched)."""
    if not data or not signature:
        return None
    try:
        if len(data) > _MAX_HEADER or len(signature) > 256:
            return None
        raw = data.encode("ascii") if isinstance(data, str) else bytes(data)
        sig = signature.encode("ascii") if isinstance(signature, str) else bytes(signature)
    except (UnicodeError, TypeError, ValueError):
        return None
    sig = sig.strip().lower()
    matched = None
    for key in hmac_keys:
        # Bytes on both sides: compare_digest refuses non-ASCII str, and is constant-time.
        if key and hmac.compare_digest(_hmac_hex(raw, key).encode("ascii"), sig):
            matched = key
            break
    if matched is None:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(raw).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeError):
        return None
    if not isinstance(payload, dict) or not set(payload) <= _ALLOWED_KEYS:
        return None
    base_id, parent_id = payload.get("base_id"), payload.get("parent_id")
    # Ids end up in stores, queries and HTML: only what an id can look like is accepted.
    if not _is_id(base_id) or (parent_id is not None and not _is_id(parent_id)):
        return None
    payload["hmac_key"] = matched
    return payload


def get_trace_id_headers() -> dict[str, str]:
    """Headers that continue the current trace in the service being called (or {})."""
    prof = _p.get()
    if prof is None or not prof.hmac_key:
        return {}
    try:
        info, sig = signed_pack(
            {"base_id": prof.get_base_id(), "parent_id": prof.get_id()}, prof.hmac_key
        )
    except Exception:  # noqa: BLE001 - an odd key or id must not break the outgoing call
        log.debug("xprofiler: cannot sign the trace headers", exc_info=True)
        return {}
    return {X_TRACE_INFO: info, X_TRACE_HMAC: sig}


def _lookup(headers: Mapping[str, Any], name: str) -> Any:
    value = headers.get(name)
    if value is None:
        low = name.lower()
        for k, v in headers.items():
            if isinstance(k, str) and k.lower() == low:
                return v
    return value


def trace_from_headers(
    headers: Mapping[str, Any], hmac_keys: Iterable[str] | None = None
) -> dict[str, Any] | None:
    """Verified trace info (``base_id``, ``parent_id``, ``hmac_key``) from request headers."""
    keys = tuple(hmac_keys) if hmac_keys is not None else _p.configured_hmac_keys()
    try:
        return signed_unpack(_lookup(headers, X_TRACE_INFO), _lookup(headers, X_TRACE_HMAC), keys)
    except Exception:  # noqa: BLE001 - a hostile header never raises into the service
        return None
