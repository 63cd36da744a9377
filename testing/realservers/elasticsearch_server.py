"""Elasticsearch 8.x (integ-test-zip from Maven Central) on the machine's JDK 17.

Single node, security off, HTTP and transport on 127.0.0.1 only, a small heap
(``$XPROFILER_ES_HEAP``, default 512m), its own config/data/logs in the work directory.

Elasticsearch refuses to run as root. When we are root, the JVMs run in a new user
namespace (``unshare(CLONE_NEWUSER)`` in the child, no uid mapped): there Elasticsearch
sees itself as ``nobody`` while the kernel still checks files against the real owner,
so it reads the cache and writes its work directory with no new user account.

The integ-test-zip carries only the x-pack-core, x-pack-security, transport-netty4 and
apm modules: document APIs, search, aggregations, index templates and mappings of the
core field types work; ``_delete_by_query``/``_update_by_query``/``_reindex`` (module
``reindex``), scripts (``lang-painless``), ingest processors (``ingest-common``) and
analyzers from ``analysis-common`` do not exist in it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from realservers import catalog
from realservers._base import HOST, Server, free_port


class ElasticsearchServer(Server):
    name = "elasticsearch"
    scheme = "elasticsearch"
    start_timeout = 180.0
    stop_timeout = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.transport_port = 0
        self.version = catalog.ELASTICSEARCH_VERSION
        self.heap = os.environ.get("XPROFILER_ES_HEAP", "512m")

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def missing_provisioning(self) -> str | None:
        if not catalog.is_complete(catalog.elasticsearch_home()):
            return (
                f"Elasticsearch {catalog.ELASTICSEARCH_VERSION} is not unpacked at "
                f"{catalog.elasticsearch_home()}. {self._hint()}"
            )
        if self._java_home() is None:
            return f"no JDK 17 found for Elasticsearch (set ES_JAVA_HOME). {self._hint()}"
        if self._user_namespace():
            problem = _user_namespace_problem()
            if problem:
                return (
                    "Elasticsearch refuses to run as root, and this machine does not allow the "
                    f"user namespace used to run it as 'nobody' ({problem}); run the tests as "
                    "a non-root user"
                )
        return None

    def _java_home(self) -> Path | None:
        marker = catalog.elasticsearch_home() / catalog.COMPLETE_MARKER
        try:
            recorded = Path(json.loads(marker.read_text())["java_home"])
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if recorded is not None and catalog.java_major(recorded) is not None:
            if "ES_JAVA_HOME" not in os.environ:
                return recorded
        return catalog.find_java_for_elasticsearch()

    def _allocate_ports(self) -> None:
        self.port = free_port()
        self.transport_port = free_port()
        while self.transport_port == self.port:
            self.transport_port = free_port()

    def _user_namespace(self) -> bool:
        return os.geteuid() == 0

    def _prepare(self) -> None:
        assert self.workdir is not None
        conf = self.workdir / "config"
        if not conf.exists():
            shutil.copytree(catalog.elasticsearch_home() / "config", conf)
        for sub in ("data", "logs", "tmp"):
            (self.workdir / sub).mkdir(exist_ok=True)
        settings = {
            "cluster.name": "xprofiler-test",
            "node.name": "node-1",
            "path.data": str(self.workdir / "data"),
            "path.logs": str(self.workdir / "logs"),
            "network.host": HOST,
            "http.port": self.port,
            "transport.port": self.transport_port,
            "discovery.type": "single-node",
            "xpack.security.enabled": False,
            # Tests must not stall on the disk watermarks of a nearly full CI disk.
            "cluster.routing.allocation.disk.threshold_enabled": False,
        }
        (conf / "elasticsearch.yml").write_text(
            "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
        )
        logs = self.workdir / "logs"
        (conf / "jvm.options").write_text(
            "\n".join(
                [
                    "-XX:+UseG1GC",
                    f"-Xms{self.heap}",
                    f"-Xmx{self.heap}",
                    "-Djava.io.tmpdir=${ES_TMPDIR}",
                    "-XX:+ExitOnOutOfMemoryError",
                    "-Djava.net.preferIPv4Stack=true",
                    f"-XX:ErrorFile={logs}/hs_err_pid%p.log",
                    "-Xlog:disable",
                    "-Xlog:all=warning:stderr",
                    "",
                ]
            )
        )

    def _command(self) -> list[str]:
        return [str(catalog.elasticsearch_home() / "bin" / "elasticsearch")]

    def _environment(self) -> dict[str, str]:
        assert self.workdir is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("JAVA_HOME", "JAVA_OPTS", "JAVA_TOOL_OPTIONS", "ES_JAVA_OPTS")
        }
        java = self._java_home()
        assert java is not None
        env.update(
            ES_JAVA_HOME=str(java),
            ES_PATH_CONF=str(self.workdir / "config"),
            ES_TMPDIR=str(self.workdir / "tmp"),
        )
        return env

    def _check_ready(self) -> None:
        url = f"{self.http_url}/_cluster/health?wait_for_status=yellow&timeout=1s"
        with urllib.request.urlopen(url, timeout=3.0) as response:
            health = json.loads(response.read())
        if health.get("status") not in ("green", "yellow"):
            raise ConnectionError(f"cluster health is {health.get('status')}")


_UNSHARE_PROBE = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.unshare(0x10000000) != 0:\n"
    "    sys.exit(os.strerror(ctypes.get_errno()))\n"
)


@functools.lru_cache(maxsize=1)
def _user_namespace_problem() -> str | None:
    """None when a child process may unshare(CLONE_NEWUSER) here, else the error."""
    result = subprocess.run(
        [sys.executable, "-c", _UNSHARE_PROBE], capture_output=True, text=True, check=False
    )
    if result.returncode == 0:
        return None
    return f"unshare(CLONE_NEWUSER): {result.stderr.strip() or result.returncode}"
