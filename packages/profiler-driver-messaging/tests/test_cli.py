"""``profiler collect`` as contributed through the ``xprofiler.cli`` entry point: exit codes."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from xp_messaging_helpers import bus_url, run_cli

from xprofiler.core.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_profiler_lists_collect() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    assert "collect" in out.stdout
    helped = run_cli("collect", "--help")
    assert helped.returncode == 0
    assert "--claim-idle" in helped.stdout and "percent-encoded" in helped.stdout


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        ([], 2, "--from"),
        (["--from", "sqlite:///x.db"], 2, "scheme must be redis"),
        (["--from", "redis://u:s3cret@h/0?strem=1"], 2, "unknown option"),
        (["--from", "redis://u:s3cret@127.0.0.1:1/0"], 2, "needs a store"),
        (["--from", "redis://u:s3cret@127.0.0.1:1/0", "--to", "nonsense"], 2, "bad --to"),
        (["--from", "redis://127.0.0.1:1/0", "--to", "nosuchscheme://x"], 5, "no driver"),
    ],
)
def test_usage_errors(
    args: list[str],
    code: int,
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROFILER_CONNECTION_STRING", raising=False)
    assert main(["collect", *args]) == code
    err = capsys.readouterr().err
    assert fragment in err
    assert "s3cret" not in err


def test_an_unreachable_bus_exits_4_without_the_password(tmp_path: Any) -> None:
    port = _free_port()
    out = run_cli(
        "collect",
        "--from",
        f"redis://u:s3cret@127.0.0.1:{port}/0?connect_timeout=1s",
        "--to",
        f"sqlite:///{tmp_path}/x.db",
    )
    assert out.returncode == 4, out.stderr
    assert "unreachable" in out.stderr
    assert "s3cret" not in out.stderr + out.stdout


def test_drain_collects_what_is_there_and_exits_0(
    redis_server: Any, stream: str, sqlite_store: str, tmp_path: Any
) -> None:
    from xp_messaging_helpers import sqlite_count

    from xprofiler.core.registry import load_driver
    from xprofiler.core.testing import make_trace

    producer = load_driver(bus_url(redis_server, stream))
    points = [p for _ in range(30) for p in make_trace(3)]
    producer.notify(points)
    producer.close()
    store_path = tmp_path / "other.db"
    out = run_cli(
        "collect",
        "--from",
        bus_url(redis_server, stream),
        "--to",
        f"sqlite:///{store_path}",
        "--drain",
    )
    assert out.returncode == 0, out.stderr
    assert sqlite_count(store_path) == len(points)
    # Not a terminal: progress lines, the last one with the total.
    assert f"{len(points)} points stored" in out.stderr.splitlines()[-1]
