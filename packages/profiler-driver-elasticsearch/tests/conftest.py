"""Fixtures: a fresh index prefix per test on the session's real Elasticsearch server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch

# Daily indices of many tests add up on the test server's small heap: one shard, no replica,
# and every test's indices are deleted afterwards.
TEST_OPTIONS = "replicas=0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def es_admin(elasticsearch_server: Any) -> Iterator[Elasticsearch]:
    """A plain client on the test server, to look behind the driver's back."""
    client = Elasticsearch(
        f"http://{elasticsearch_server.host}:{elasticsearch_server.port}", request_timeout=30
    )
    yield client
    client.close()


def drop_store(es: Elasticsearch, prefix: str) -> None:
    try:
        names = list(
            es.indices.get(index=f"{prefix}-*", expand_wildcards="all", allow_no_indices=True)
        )
        if names:  # by name: the server refuses wildcard deletes
            es.indices.delete(index=",".join(names))
        es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-template")
    except Exception:  # noqa: BLE001 - the server may be down in a failing test
        pass


@pytest.fixture
def prefix(es_admin: Elasticsearch) -> Iterator[str]:
    name = f"xp_{uuid.uuid4().hex[:16]}"
    yield name
    drop_store(es_admin, name)


@pytest.fixture
def es_url(elasticsearch_server: Any, prefix: str) -> str:
    """A connection string to a fresh, empty store (its own index prefix)."""
    return (
        f"elasticsearch://{elasticsearch_server.host}:{elasticsearch_server.port}/{prefix}"
        f"?{TEST_OPTIONS}"
    )


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def dropper() -> Any:
    """``drop_store`` for module-scoped fixtures (conftest is not importable as a module)."""
    return drop_store


# -- a second server with security on: TLS on HTTP, users, API keys ------------------------------
SECURE_USER = "xp_admin"
SECURE_PASSWORD = "Adm1n-s3cret-pw"
LIMITED_PASSWORD = "L1mited-s3cret-pw"
# Least-privilege roles (README, "Privileges") for stores whose prefix starts with xp_.
ROLES_YML = """\
xp_writer:
  indices:
    - names: ["xp_*"]
      privileges: ["create_doc", "create_index"]
xp_reader:
  indices:
    - names: ["xp_*"]
      privileges: ["read", "view_index_metadata"]
"""
USERS = {
    SECURE_USER: (SECURE_PASSWORD, "superuser"),
    "xp_writer": (LIMITED_PASSWORD, "xp_writer"),
    "xp_reader": (LIMITED_PASSWORD, "xp_reader"),
}


_OTHER_CA = (
    "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=some-other-ca "
    "-keyout other-ca.key -out other-ca.crt"
)


def _secure_server_class() -> type:
    import base64
    import ssl
    import subprocess
    import urllib.request

    from realservers import catalog
    from realservers.elasticsearch_server import ElasticsearchServer

    class SecureElasticsearchServer(ElasticsearchServer):
        """The harness's Elasticsearch with security on: HTTPS with a throwaway CA (openssl),
        a file-realm superuser made with the distribution's elasticsearch-users tool."""

        scheme = "elasticsearch+https"

        @property
        def certs(self) -> Any:
            assert self.workdir is not None
            return self.workdir / "certs"

        def _prepare(self) -> None:
            super()._prepare()
            assert self.workdir is not None
            conf = self.workdir / "config"
            certs = self.certs
            if not (certs / "node.crt").exists():
                certs.mkdir(exist_ok=True)
                ext = certs / "san.ext"
                ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
                for cmd in (
                    "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=xprofiler-test-ca "
                    "-keyout ca.key -out ca.crt",
                    "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout node.key "
                    "-out node.csr",
                    "x509 -req -in node.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
                    "-extfile san.ext -out node.crt",
                ):
                    subprocess.run(
                        ["openssl", *cmd.split()], cwd=certs, check=True, capture_output=True
                    )
                subprocess.run(  # a CA the server's certificate does not come from
                    ["openssl", *_OTHER_CA.split()], cwd=certs, check=True, capture_output=True
                )
                for name in ("node.key", "node.crt", "ca.crt"):
                    (conf / name).write_bytes((certs / name).read_bytes())
            yml = conf / "elasticsearch.yml"
            text = yml.read_text().replace("xpack.security.enabled: false\n", "")
            text += (
                "xpack.security.enabled: true\n"
                "xpack.security.http.ssl.enabled: true\n"
                "xpack.security.http.ssl.key: node.key\n"
                "xpack.security.http.ssl.certificate: node.crt\n"
                "xpack.security.authc.api_key.enabled: true\n"
            )
            yml.write_text(text)
            (conf / "roles.yml").write_text(ROLES_YML)
            users = conf / "users"
            tool = catalog.elasticsearch_home() / "bin" / "elasticsearch-users"
            for user, (password, role) in USERS.items():
                if users.exists() and f"{user}:" in users.read_text():
                    continue
                subprocess.run(
                    [str(tool), "useradd", user, "-p", password, "-r", role],
                    env=self._environment(),
                    check=True,
                    capture_output=True,
                    timeout=120,
                )

        def _check_ready(self) -> None:
            ctx = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
            req = urllib.request.Request(
                f"https://{self.host}:{self.port}/_cluster/health?wait_for_status=yellow&timeout=1s"
            )
            token = base64.b64encode(f"{SECURE_USER}:{SECURE_PASSWORD}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
            with urllib.request.urlopen(req, timeout=3.0, context=ctx) as response:  # noqa: S310
                response.read()

    return SecureElasticsearchServer


@pytest.fixture(scope="session")
def secure_elasticsearch_server() -> Iterator[Any]:
    """Elasticsearch with TLS and authentication, started the first time a test asks."""
    import subprocess

    from realservers._base import ServerError, is_ci

    server = _secure_server_class()()
    try:
        server.start()
    except (ServerError, OSError, subprocess.SubprocessError) as exc:
        server.close()
        message = f"secure elasticsearch server unavailable: {exc}"
        if is_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def secure_admin(secure_elasticsearch_server: Any) -> Iterator[Elasticsearch]:
    srv = secure_elasticsearch_server
    client = Elasticsearch(
        f"https://{srv.host}:{srv.port}",
        ca_certs=str(srv.certs / "ca.crt"),
        basic_auth=(SECURE_USER, SECURE_PASSWORD),
        request_timeout=30,
    )
    yield client
    client.close()


@pytest.fixture
def secure_prefix(secure_admin: Elasticsearch) -> Iterator[str]:
    name = f"xp_{uuid.uuid4().hex[:16]}"
    yield name
    drop_store(secure_admin, name)


@pytest.fixture
def secure_base(secure_elasticsearch_server: Any) -> str:
    """``elasticsearch+https://127.0.0.1:PORT`` (no credentials, no options)."""
    srv = secure_elasticsearch_server
    return f"elasticsearch+https://{srv.host}:{srv.port}"


@pytest.fixture
def secure_ca(secure_elasticsearch_server: Any) -> str:
    return str(secure_elasticsearch_server.certs / "ca.crt")
