"""A MongoDB-wire server: FerretDB 1.x with its SQLite backend, data in its work directory.

FerretDB stands in for MongoDB, which cannot be had from this machine's registries; it
speaks the MongoDB wire protocol (pymongo talks to it unchanged) but does not implement
every command or operator. Its debug HTTP listener and telemetry are turned off.
"""

from __future__ import annotations

import socket
import struct

from realservers import catalog
from realservers._base import HOST, Server, port_accepts


class MongoDBServer(Server):
    name = "mongodb"
    scheme = "mongodb"
    url_suffix = "/"
    start_timeout = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.version = f"FerretDB {catalog.FERRETDB_VERSION}"

    def missing_provisioning(self) -> str | None:
        if not catalog.ferretdb_binary().is_file():
            return (
                f"FerretDB {catalog.FERRETDB_VERSION} is not built at "
                f"{catalog.ferretdb_binary()}. {self._hint()}"
            )
        return None

    def _prepare(self) -> None:
        assert self.workdir is not None
        (self.workdir / "sqlite").mkdir(exist_ok=True)
        (self.workdir / "state").mkdir(exist_ok=True)

    def _command(self) -> list[str]:
        assert self.workdir is not None
        return [
            str(catalog.ferretdb_binary()),
            "--handler=sqlite",
            f"--sqlite-url=file:{self.workdir / 'sqlite'}/",
            f"--listen-addr={HOST}:{self.port}",
            f"--state-dir={self.workdir / 'state'}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=info",
        ]

    def _environment(self) -> dict[str, str]:
        env = super()._environment()
        return {k: v for k, v in env.items() if not k.startswith("FERRETDB_")}

    def _check_ready(self) -> None:
        # pymongo retries inside its selection timeout; ask it only once the port is open.
        if not port_accepts(HOST, self.port, timeout=0.5):
            raise ConnectionRefusedError(f"nothing listens on {HOST}:{self.port} yet")
        try:
            import pymongo
        except ImportError:
            _raw_ping(self.port)
            return
        client = pymongo.MongoClient(
            self.url, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000, directConnection=True
        )
        try:
            reply = client.admin.command("ping")
        finally:
            client.close()
        if reply.get("ok") != 1:
            raise ConnectionError(f"ping answered {reply}")


def _raw_ping(port: int) -> None:
    """``{ping: 1}`` on ``admin`` as an OP_MSG, without a client library."""
    body = b"\x10ping\x00" + struct.pack("<i", 1)
    body += b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
    document = struct.pack("<i", len(body) + 5) + body + b"\x00"
    payload = struct.pack("<I", 0) + b"\x00" + document  # flagBits, section kind 0
    header = struct.pack("<iiii", 16 + len(payload), 1, 0, 2013)
    with socket.create_connection((HOST, port), timeout=1.0) as conn:
        conn.sendall(header + payload)
        raw = b""
        while len(raw) < 4 or len(raw) < struct.unpack("<i", raw[:4])[0]:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed during ping")
            raw += chunk
    marker = raw.find(b"\x01ok\x00")
    if marker < 0 or struct.unpack("<d", raw[marker + 4 : marker + 12])[0] != 1.0:
        raise ConnectionError(f"ping answered {raw[:200]!r}")
