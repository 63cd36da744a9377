"""Redis from Debian's ``redis-server`` package, persisted to its work directory.

The server saves an RDB snapshot when it is stopped (SIGTERM), so ``stop()``/``start()``
and ``down()`` keep the data, as a real restart would.
"""

from __future__ import annotations

import socket
import subprocess

from realservers import catalog
from realservers._base import HOST, Server


class RedisServer(Server):
    name = "redis"
    scheme = "redis"
    url_suffix = "/0"
    start_timeout = 20.0

    def missing_provisioning(self) -> str | None:
        if catalog.which_redis() is None:
            return f"redis-server is not installed. {self._hint()}"
        return None

    def _prepare(self) -> None:
        if self.version is None:
            binary = catalog.which_redis()
            assert binary is not None
            out = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, check=False
            ).stdout
            self.version = next(
                (part[2:] for part in out.split() if part.startswith("v=")), out.strip()
            )

    def _command(self) -> list[str]:
        assert self.workdir is not None
        binary = catalog.which_redis()
        assert binary is not None
        return [
            binary,
            "--bind", HOST,
            "--port", str(self.port),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--supervised", "no",
            "--dir", str(self.workdir),
            "--dbfilename", "dump.rdb",
            "--save", "3600 1",
            "--appendonly", "no",
            "--logfile", "",
            "--unixsocket", "",
        ]  # fmt: skip

    def _check_ready(self) -> None:
        try:
            import redis
        except ImportError:
            with socket.create_connection((HOST, self.port), timeout=1.0) as conn:
                conn.sendall(b"*1\r\n$4\r\nPING\r\n")
                answer = conn.recv(64)
            if not answer.startswith(b"+PONG"):
                raise ConnectionError(f"PING answered {answer!r}") from None
            return
        client = redis.Redis(host=HOST, port=self.port, socket_timeout=1.0)
        try:
            if client.ping() is not True:
                raise ConnectionError("PING did not answer PONG")
        finally:
            client.close()
