"""Helpers for the messaging tests, importable by the tests and by their subprocesses.

``python -c "import xp_messaging_helpers as h; h.collect_main()" collect ...`` runs the real
``profiler`` command with one extra store scheme registered: ``slowsqlite://``, the real
sqlite driver that, after each committed write, touches a marker file and sleeps (env
``XP_SLOW_MARKER``, ``XP_SLOW_SECONDS``), so that a test can kill or stop a collector at the
exact moment a batch is stored but not yet acknowledged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from xprofiler.core.builtin.sqlite import SQLiteDriver
from xprofiler.core.points import Point

HERE = Path(__file__).resolve().parent


class SlowSQLiteDriver(SQLiteDriver):
    def notify(self, points: Sequence[Point]) -> None:
        super().notify(points)
        marker = os.environ.get("XP_SLOW_MARKER")
        if marker:
            with open(marker, "a") as fh:
                fh.write(f"{len(points)}\n")
        time.sleep(float(os.environ.get("XP_SLOW_SECONDS", "0")))


def collect_main() -> None:
    from xprofiler.core import registry
    from xprofiler.core.cli import main

    registry.register("slowsqlite", SlowSQLiteDriver)
    raise SystemExit(main(sys.argv[1:]))


def bus_url(server: Any, stream: str, store: str | None = None, **options: Any) -> str:
    opts = {"stream": stream, **options}
    if store is not None:
        opts["store"] = store
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in opts.items())
    return f"redis://{server.host}:{server.port}/0?{query}"


def sqlite_count(path: str | Path) -> int:
    import sqlite3

    if not Path(path).exists():
        return 0
    conn = sqlite3.connect(str(path), timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM points").fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        conn.close()


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROFILER_CONNECTION_STRING", None)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


def start_collector(
    *args: str, slow: bool = False, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``profiler collect ARGS`` as a real process (stderr to ``log``)."""
    if slow:
        cmd = [sys.executable, "-c", "import xp_messaging_helpers as h; h.collect_main()"]
    else:
        cmd = [sys.executable, "-m", "xprofiler.core.cli"]
    err = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [*cmd, "collect", *args], stdout=subprocess.DEVNULL, stderr=err, env=_env(env)
        )
    finally:
        if log is not None:
            err.close()  # type: ignore[union-attr]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xprofiler.core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


SERVICE = r"""
import json, sys
from xprofiler import core as profiler

bus, count = sys.argv[1], int(sys.argv[2])
profiler.setup(bus, service="api", project="shop", batch_size=200, flush_interval=0.05)

@profiler.trace("db")
def query(i):
    return i * 2

@profiler.trace("rpc")
def call_worker(i):
    with profiler.Trace("cache", info={"key": f"k{i}"}):
        pass
    return query(i)

ids = []
for i in range(count):
    profiler.init("secret")
    with profiler.Trace("wsgi", info={"path": f"/orders/{i}"}):
        call_worker(i)
        if i % 10 == 0:
            try:
                with profiler.Trace("charge"):
                    raise ValueError("card declined")
            except ValueError:
                pass
    ids.append(profiler.get().get_base_id())
    profiler.clean()
assert profiler.flush(30), profiler.dispatcher_stats()
print(json.dumps({"ids": ids, "stats": profiler.dispatcher_stats()}))
"""


def run_service(bus: str, requests: int) -> dict[str, Any]:
    """A traced 'api' service in its own process, publishing to ``bus``."""
    out = subprocess.run(
        [sys.executable, "-c", SERVICE, bus, str(requests)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise AssertionError("the collector did not stop within 20s of SIGTERM") from None
