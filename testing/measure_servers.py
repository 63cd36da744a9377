#!/usr/bin/env python3
"""Print each server's start time, restart time and resident memory, as measured here.

    python3 testing/measure_servers.py [redis influxdb ...] [--rounds N]

Starts a fresh instance per server and round (start = spawn until the first successful
client round-trip), waits 2 s, reads the RSS of its whole process group, restarts it once
on the same port, then closes it. Figures go into testing/README.md; they are not tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realservers  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(realservers.NAMES))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores)", flush=True)
    for name in args.names:
        starts, restarts, rss = [], [], []
        version = "?"
        for _ in range(args.rounds):
            try:
                server = realservers.start(name)
            except realservers.ServerError as exc:
                print(f"{name:<14} unavailable: {exc}", flush=True)
                break
            version = str(server.version)
            starts.append(server.start_seconds or 0.0)
            time.sleep(2)
            rss.append(server.rss_bytes() / 2**20)
            server.stop()
            server.start()
            restarts.append(server.start_seconds or 0.0)
            server.close()
        if starts:
            print(
                f"{name:<14} {version:<20} start median {statistics.median(starts):6.2f}s "
                f"(min {min(starts):.2f}, max {max(starts):.2f})  restart median "
                f"{statistics.median(restarts):6.2f}s  RSS median "
                f"{statistics.median(rss):7.1f} MiB  [{len(starts)} rounds]",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
