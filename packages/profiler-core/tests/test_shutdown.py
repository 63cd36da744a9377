"""After shutdown(), tracing is off until setup(): no store is set up behind the app's back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_tracing_after_shutdown_sets_up_no_default_store(tmp_path: Path) -> None:
    code = f"""
import os
os.environ["XDG_DATA_HOME"] = {str(tmp_path / "data")!r}
from xprofiler import core as profiler
profiler.setup("memory://a", service="svc")
profiler.shutdown()
profiler.init("k")
@profiler.trace("db")
def f(x):
    return x * 2
assert f(21) == 42          # the app keeps working
assert not profiler.is_setup()
profiler.setup("memory://b", service="svc")   # and setup() turns tracing back on
with profiler.Trace("after"):
    pass
assert profiler.flush(10)
assert profiler.dispatcher_stats()["delivered"] == 2
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
    assert not (tmp_path / "data").exists()  # no default sqlite store was created
