"""Wire compatibility with the real OSProfiler: a service traced by OSProfiler and one traced
by xprofiler join one trace. Both directions, with OSProfiler's own code on the other side."""

from __future__ import annotations

# The real OSProfiler is part of the [test] extra: without it these tests must not pass quietly.
import osprofiler._utils as osp_utils
import osprofiler.profiler as osp_profiler
import osprofiler.web as osp_web

from xprofiler import core as profiler
from xprofiler.core.propagation import signed_pack, signed_unpack, trace_from_headers


def test_headers_made_by_osprofiler_continue_a_trace_here() -> None:
    osp_profiler.init("shared-key", base_id="b-123", parent_id="p-456")
    try:
        osp_profiler.start("osp-span")
        headers = osp_web.get_trace_id_headers()
        osp_id = osp_profiler.get().get_id()
        osp_profiler.stop()
    finally:
        osp_profiler.clean()
    info = trace_from_headers(headers, ["old-key", "shared-key"])
    assert info == {"base_id": "b-123", "parent_id": osp_id, "hmac_key": "shared-key"}
    assert trace_from_headers(headers, ["another-key"]) is None


def test_headers_made_here_are_accepted_by_osprofiler() -> None:
    profiler.init("shared-key", base_id="base-1", parent_id="parent-2")
    try:
        headers = profiler.get_trace_id_headers()
    finally:
        profiler.clean()
    data = osp_utils.signed_unpack(
        headers[profiler.X_TRACE_INFO], headers[profiler.X_TRACE_HMAC], ["shared-key"]
    )
    assert data["base_id"] == "base-1"
    assert data["parent_id"] == "parent-2"
    assert (
        osp_utils.signed_unpack(
            headers[profiler.X_TRACE_INFO], headers[profiler.X_TRACE_HMAC], ["wrong"]
        )
        is None
    )


def test_pack_matches_osprofiler_byte_for_byte() -> None:
    payload = {"base_id": "x", "parent_id": "y"}
    ours = signed_pack(payload, "k")
    theirs = osp_utils.signed_pack(payload, "k")
    assert ours[0].encode() == theirs[0]
    assert ours[1] == theirs[1]
    assert signed_unpack(theirs[0], theirs[1], ["k"]) == {**payload, "hmac_key": "k"}
