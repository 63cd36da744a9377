"""InfluxDB 1.x from Debian's ``influxdb`` package, data in its work directory."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request

from realservers import catalog
from realservers._base import HOST, Server, free_port


class InfluxDBServer(Server):
    name = "influxdb"
    scheme = "influxdb"
    url_suffix = "/"
    start_timeout = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.rpc_port = 0

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def missing_provisioning(self) -> str | None:
        if catalog.which_influxd() is None:
            return f"influxd is not installed. {self._hint()}"
        return None

    def _allocate_ports(self) -> None:
        self.port = free_port()
        self.rpc_port = free_port()
        while self.rpc_port == self.port:
            self.rpc_port = free_port()

    def _prepare(self) -> None:
        assert self.workdir is not None
        data = self.workdir / "data"
        # Every listener is pinned to 127.0.0.1; the optional ones stay off.
        config = f"""\
reporting-disabled = true
bind-address = "{HOST}:{self.rpc_port}"

[meta]
  dir = "{data / "meta"}"
  logging-enabled = false

[data]
  dir = "{data / "data"}"
  wal-dir = "{data / "wal"}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{HOST}:{self.port}"
  auth-enabled = false
  log-enabled = false

[ifql]
  enabled = false

[continuous_queries]
  log-enabled = false
"""
        (self.workdir / "influxdb.conf").write_text(config)
        if self.version is None:
            binary = catalog.which_influxd()
            assert binary is not None
            out = subprocess.run(
                [binary, "version"], capture_output=True, text=True, check=False
            ).stdout
            self.version = out.split()[1].lstrip("v") if len(out.split()) > 1 else out.strip()

    def _command(self) -> list[str]:
        assert self.workdir is not None
        binary = catalog.which_influxd()
        assert binary is not None
        return [binary, "run", "-config", str(self.workdir / "influxdb.conf")]

    def _environment(self) -> dict[str, str]:
        env = super()._environment()
        # influxd reads INFLUXDB_* variables as config overrides: do not inherit any.
        return {k: v for k, v in env.items() if not k.startswith("INFLUXDB_")}

    def _check_ready(self) -> None:
        query = urllib.parse.urlencode({"q": "SHOW DATABASES"})
        request = urllib.request.Request(f"{self.http_url}/query?{query}", method="GET")
        with urllib.request.urlopen(request, timeout=2.0) as response:
            body = json.loads(response.read())
        if "results" not in body:
            raise ConnectionError(f"unexpected answer to SHOW DATABASES: {body}")
