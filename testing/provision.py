#!/usr/bin/env python3
"""Provision the real servers the tests use: ``python3 testing/provision.py [--only a,b]``.

Idempotent; downloads and builds are cached under ~/.cache/xprofiler-testing (or
$XPROFILER_TESTING_CACHE). See testing/README.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realservers.provisioning import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
