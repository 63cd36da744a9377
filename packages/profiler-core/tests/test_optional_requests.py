"""requests is optional for core: without it the integration says what to install."""

from __future__ import annotations

import subprocess
import sys


def test_requests_integration_without_requests_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['requests'] = None\n"
        "import xprofiler.core, xprofiler.core.middleware  # fine without requests\n"
        "import xprofiler.core.requests_integration\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "ModuleNotFoundError" in res.stderr
    assert "pip install 'profiler-core[requests]'" in res.stderr
