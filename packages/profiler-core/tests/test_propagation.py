"""Cross-service trace headers: OSProfiler wire compatibility, key rotation, and refusal of
anything forged, truncated or malformed (None, no trace, nothing raised)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from xprofiler.core import profiler, propagation
from xprofiler.core.propagation import (
    X_TRACE_HMAC,
    X_TRACE_INFO,
    get_trace_id_headers,
    signed_pack,
    signed_unpack,
    trace_from_headers,
)

# A vector written from OSProfiler's documented format, not from our code:
# X-Trace-Info = urlsafe_b64encode(json.dumps({"base_id": ..., "parent_id": ...}))
# X-Trace-HMAC = hex(HMAC-SHA1(key, X-Trace-Info bytes))
VECTOR_KEY = "SECRET_KEY"
VECTOR_BASE = "6c2b7c53-0b1f-4b39-9d36-0f0d2c0b5e11"
VECTOR_PARENT = "0c9dd6b5-2b0b-4f6e-8f3c-5c2b8a9d7e42"
VECTOR_INFO = (
    "eyJiYXNlX2lkIjogIjZjMmI3YzUzLTBiMWYtNGIzOS05ZDM2LTBmMGQyYzBiNWUxMSIsICJwYXJlbnRfaWQiOiAi"
    "MGM5ZGQ2YjUtMmIwYi00ZjZlLThmM2MtNWMyYjhhOWQ3ZTQyIn0="
)
VECTOR_HMAC = "fa3c4cc1c206d64d31f03fbb8e8c4c58131de61e"


def sign(raw: bytes, key: str = VECTOR_KEY) -> str:
    """Sign any bytes the way an OSProfiler peer does (stdlib only)."""
    return hmac.new(key.encode(), raw, hashlib.sha1).hexdigest()


def encode(obj: Any) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(obj).encode())


@pytest.fixture(autouse=True)
def no_trace() -> Iterator[None]:
    profiler.clean()
    yield
    profiler.clean()


def test_the_vector_is_what_the_format_says() -> None:
    raw = encode({"base_id": VECTOR_BASE, "parent_id": VECTOR_PARENT})
    assert raw.decode() == VECTOR_INFO
    assert sign(raw) == VECTOR_HMAC


def test_pack_produces_the_osprofiler_bytes() -> None:
    info, sig = signed_pack({"base_id": VECTOR_BASE, "parent_id": VECTOR_PARENT}, VECTOR_KEY)
    assert (info, sig) == (VECTOR_INFO, VECTOR_HMAC)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_unpack_accepts_an_osprofiler_header(as_bytes: bool) -> None:
    info: Any = VECTOR_INFO.encode() if as_bytes else VECTOR_INFO
    sig: Any = VECTOR_HMAC.encode() if as_bytes else VECTOR_HMAC
    assert signed_unpack(info, sig, [VECTOR_KEY]) == {
        "base_id": VECTOR_BASE,
        "parent_id": VECTOR_PARENT,
        "hmac_key": VECTOR_KEY,
    }


def test_headers_are_found_case_insensitively() -> None:
    headers = {"x-trace-info": VECTOR_INFO, "X-TRACE-HMAC": VECTOR_HMAC}
    got = trace_from_headers(headers, [VECTOR_KEY])
    assert got is not None and got["base_id"] == VECTOR_BASE


def test_uppercase_hex_signature_is_accepted() -> None:
    assert signed_unpack(VECTOR_INFO, VECTOR_HMAC.upper(), [VECTOR_KEY]) is not None


def test_parent_id_may_be_absent() -> None:
    raw = encode({"base_id": VECTOR_BASE})
    assert signed_unpack(raw, sign(raw), [VECTOR_KEY]) == {
        "base_id": VECTOR_BASE,
        "hmac_key": VECTOR_KEY,
    }


# -- key rotation -------------------------------------------------------------------------------


def test_key_rotation_accepts_each_configured_key_and_reports_which() -> None:
    keys = ["new-key", VECTOR_KEY, "older-key"]
    assert signed_unpack(VECTOR_INFO, VECTOR_HMAC, keys)["hmac_key"] == VECTOR_KEY
    raw = encode({"base_id": "b1", "parent_id": "p1"})
    assert signed_unpack(raw, sign(raw, "older-key"), keys)["hmac_key"] == "older-key"
    assert signed_unpack(raw, sign(raw, "retired"), keys) is None
    assert signed_unpack(VECTOR_INFO, VECTOR_HMAC, []) is None
    assert signed_unpack(VECTOR_INFO, VECTOR_HMAC, [""]) is None


def test_configured_keys_are_used_when_none_are_given() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    profiler.setup(url, hmac_keys=["a", VECTOR_KEY], flush_interval=0.05)
    try:
        got = trace_from_headers({X_TRACE_INFO: VECTOR_INFO, X_TRACE_HMAC: VECTOR_HMAC})
        assert got is not None and got["hmac_key"] == VECTOR_KEY
    finally:
        profiler.shutdown()
    assert trace_from_headers({X_TRACE_INFO: VECTOR_INFO, X_TRACE_HMAC: VECTOR_HMAC}) is None


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(
        propagation, "hmac", types.SimpleNamespace(new=hmac.new, compare_digest=spy)
    )
    assert signed_unpack(VECTOR_INFO, VECTOR_HMAC, ["k1", "k2", VECTOR_KEY]) is not None
    assert len(calls) == 3  # one constant-time compare per key tried, no other comparison
    assert calls[-1] == (VECTOR_HMAC.encode(), VECTOR_HMAC.encode())
    calls.clear()
    assert signed_unpack(VECTOR_INFO, "0" * 40, ["k1", VECTOR_KEY]) is None
    assert len(calls) == 2


# -- get_trace_id_headers -------------------------------------------------------------------------


def test_outgoing_headers_continue_the_current_span() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    profiler.setup(url, hmac_keys=[VECTOR_KEY], flush_interval=0.05)
    try:
        assert get_trace_id_headers() == {}  # not tracing
        profiler.init(None)
        assert get_trace_id_headers() == {}  # tracing, but no key to sign with
        p = profiler.init("rotated-in")
        profiler.start("call")
        headers = get_trace_id_headers()
        span = profiler.get().get_id()
        profiler.stop()
    finally:
        profiler.clean()
        profiler.shutdown()
    raw = headers[X_TRACE_INFO].encode()
    assert headers[X_TRACE_HMAC] == sign(raw, "rotated-in")  # signed with the trace's key
    assert json.loads(base64.urlsafe_b64decode(raw)) == {
        "base_id": p.get_base_id(),
        "parent_id": span,
    }


# -- refusals ---------------------------------------------------------------------------------

GOOD_RAW = VECTOR_INFO.encode()


def signed(raw: bytes) -> tuple[bytes, str]:
    """A header pair correctly signed with the shared key around a bad payload (a buggy or
    hostile peer that has the key: the payload itself must still be checked)."""
    return raw, sign(raw)


REFUSED: dict[str, tuple[Any, Any]] = {
    "forged signature": (VECTOR_INFO, sign(GOOD_RAW, "guessed-key")),
    "signature of other data": (VECTOR_INFO, sign(encode({"base_id": "x"}))),
    "tampered info": (VECTOR_INFO.replace("eyJi", "eyJj", 1), VECTOR_HMAC),
    "info truncated": (VECTOR_INFO[:-10], VECTOR_HMAC),
    "signature truncated": (VECTOR_INFO, VECTOR_HMAC[:-1]),
    "signature empty": (VECTOR_INFO, ""),
    "info empty": ("", VECTOR_HMAC),
    "both missing": (None, None),
    "signature not hex": (VECTOR_INFO, "z" * 40),
    "signature non-ascii": (VECTOR_INFO, "é" * 40),
    "info non-ascii": ("é" + VECTOR_INFO, VECTOR_HMAC),
    "signature huge": (VECTOR_INFO, "a" * 100_000),
    "wrong types": (12345, ["not", "a", "signature"]),
    "bad base64, signed": signed(b"!!!not base64###"),
    "truncated base64, signed": signed(GOOD_RAW[:-3]),
    "not json, signed": signed(base64.urlsafe_b64encode(b"base_id=x;parent_id=y")),
    "not utf-8, signed": signed(base64.urlsafe_b64encode(b"\xff\xfe{}")),
    "json list, signed": signed(encode([VECTOR_BASE, VECTOR_PARENT])),
    "json string, signed": signed(encode(VECTOR_BASE)),
    "json null, signed": signed(encode(None)),
    "extra keys, signed": signed(
        encode({"base_id": VECTOR_BASE, "parent_id": VECTOR_PARENT, "admin": True})
    ),
    "hmac_key smuggled in, signed": signed(
        encode({"base_id": VECTOR_BASE, "hmac_key": "attacker"})
    ),
    "no base_id, signed": signed(encode({"parent_id": VECTOR_PARENT})),
    "base_id a number, signed": signed(encode({"base_id": 42})),
    "base_id empty, signed": signed(encode({"base_id": ""})),
    "parent_id a list, signed": signed(encode({"base_id": "b", "parent_id": ["p"]})),
    "base_id too long, signed": signed(encode({"base_id": "b" * 129})),
    "base_id with markup, signed": signed(encode({"base_id": "<script>alert(1)</script>"})),
    "parent_id with newline, signed": signed(encode({"base_id": "b", "parent_id": "p\nq"})),
    "huge header, signed": signed(encode({"base_id": "b", "parent_id": "p" * 10_000})),
    # Valid JSON and ids, only padded with whitespace: refused for its size alone.
    "huge but well-formed, signed": signed(
        base64.urlsafe_b64encode(b'{"base_id": "b"' + b" " * 5000 + b"}")
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_headers_yield_none_and_start_no_trace(case: str) -> None:
    info, sig = REFUSED[case]
    assert signed_unpack(info, sig, ["other", VECTOR_KEY]) is None
    assert trace_from_headers({X_TRACE_INFO: info, X_TRACE_HMAC: sig}, [VECTOR_KEY]) is None
    assert profiler.get() is None


def test_the_refusal_cases_would_be_accepted_if_the_payload_were_fine() -> None:
    # Guards the table above: the "signed" cases are refused for their payload, not their
    # signature.
    raw, sig = signed(encode({"base_id": "b", "parent_id": "p"}))
    assert signed_unpack(raw, sig, [VECTOR_KEY]) == {
        "base_id": "b",
        "parent_id": "p",
        "hmac_key": VECTOR_KEY,
    }


def test_hostile_header_mappings_never_raise() -> None:
    class Exploding(dict):  # type: ignore[type-arg]
        def get(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("boom")

    assert trace_from_headers(Exploding(), [VECTOR_KEY]) is None
    assert trace_from_headers({}, [VECTOR_KEY]) is None
    assert trace_from_headers({1: 2, None: b"x"}, [VECTOR_KEY]) is None  # type: ignore[dict-item]
