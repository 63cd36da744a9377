"""Connection strings: forms, options, and bad input (clear errors, no secret in them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from xprofiler.core.errors import DriverError, StoreUnavailable
from xprofiler.core.registry import available, get_driver_class, load_driver
from xprofiler.core.testing import make_trace
from xprofiler.drivers.elasticsearch import ElasticsearchDriver


def test_both_schemes_are_registered_to_this_distribution() -> None:
    found = available()
    for scheme in ("elasticsearch", "elasticsearch+https"):
        assert found[scheme].distribution == "profiler-driver-elasticsearch"
        assert get_driver_class(scheme) is ElasticsearchDriver


def test_defaults() -> None:
    s = load_driver("elasticsearch://").settings
    assert s.scheme == "http"
    assert s.hosts == (("localhost", 9200),)
    assert s.prefix == "xprofiler"
    assert s.period == "day"
    assert s.username is None and s.api_key is None
    assert s.timeout == 10.0 and s.max_retries == 2


def test_several_hosts_ipv6_and_https() -> None:
    drv = load_driver("elasticsearch+https://es1:9201,[::1]:9300,es3/traces")
    s = drv.settings
    assert s.scheme == "https"
    assert s.hosts == (("es1", 9201), ("::1", 9300), ("es3", 9200))
    assert s.prefix == "traces"
    client = drv.client()  # building the client does not connect
    urls = sorted(str(n.base_url) for n in client.transport.node_pool.all())
    assert urls == ["https://[::1]:9300", "https://es1:9201", "https://es3:9200"]
    drv.close()


def test_basic_auth_password_is_never_shown() -> None:
    drv = load_driver("elasticsearch://elastic:pa%40ss%3Aw0rd@localhost/traces")
    assert drv.settings.username == "elastic"
    assert drv.settings.password == "pa@ss:w0rd"
    for text in (repr(drv), str(drv.url), repr(drv.settings), drv.settings.where):
        assert "pa@ss" not in text and "pa%40ss" not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [("abc123==", "abc123=="), ("my-id:my-secret", ("my-id", "my-secret"))],
)
def test_api_key_forms_and_masking(value: str, expected: object) -> None:
    drv = load_driver(f"elasticsearch://localhost/traces?api_key={value}")
    assert drv.settings.api_key == expected
    secret = value.split(":")[-1]
    for text in (repr(drv), str(drv.url), repr(drv.url), repr(drv.settings), drv.settings.where):
        assert secret not in text
    assert "api_key=***" in str(drv.url)


def test_index_prefix_as_option_and_period() -> None:
    s = load_driver("elasticsearch://h?index_prefix=abc_1&index_period=monthly").settings
    assert s.prefix == "abc_1" and s.period == "month"
    s = load_driver("elasticsearch://h/abc_1?index_prefix=abc_1").settings
    assert s.prefix == "abc_1"


def test_tuning_options() -> None:
    s = load_driver(
        "elasticsearch://h?timeout=2500ms&read_timeout=1m&max_retries=0&bulk_size=200"
        "&shards=2&replicas=0&retention_days=30&refresh_on_read=false"
    ).settings
    assert (s.timeout, s.read_timeout, s.max_retries, s.bulk_size) == (2.5, 60.0, 0, 200)
    assert (s.shards, s.replicas, s.retention_days, s.refresh_on_read) == (2, 0, 30, False)


def test_tls_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until connecting")
    fp = "AB:" * 31 + "AB"
    s = load_driver(
        f"elasticsearch+https://h?ca_certs={ca}&verify_certs=false&ssl_assert_fingerprint={fp}"
    ).settings
    assert s.tls == {
        "ca_certs": str(ca),
        "verify_certs": False,
        "ssl_show_warn": False,
        "ssl_assert_fingerprint": "ab" * 32,
    }


BAD = [
    ("elasticsearch://h?colour=blue", "unknown option(s) colour"),
    ("elasticsearch://h?timeout=soon", "not a duration"),
    ("elasticsearch://h?timeout=0s", "'timeout' must be between"),
    ("elasticsearch://h?max_retries=many", "'max_retries' must be an integer"),
    ("elasticsearch://h?max_retries=99", "'max_retries' must be between 0 and 10"),
    ("elasticsearch://h?bulk_size=0", "'bulk_size' must be between"),
    ("elasticsearch://h?replicas=-1", "'replicas' must be between"),
    ("elasticsearch://h?retention_days=0", "'retention_days' must be between"),
    ("elasticsearch://h?refresh_on_read=maybe", "must be true or false"),
    ("elasticsearch://h?index_period=hourly", "'index_period' must be day"),
    ("elasticsearch://h/Upper", "index prefix must be"),
    ("elasticsearch://h/with-dash", "index prefix must be"),
    ("elasticsearch://h/a?index_prefix=b", "index prefix is given twice"),
    ("elasticsearch://h?api_key=", "'api_key' is empty"),
    ("elasticsearch://u:s3cret@h?api_key=k", "either user:password or api_key"),
    ("elasticsearch://h?ca_certs=/etc/hosts", "need the elasticsearch+https:// scheme"),
    ("elasticsearch+https://h?ca_certs=/no/such/ca.pem", "no such file"),
    ("elasticsearch+https://h?client_cert=/etc/hosts", "must be given together"),
    ("elasticsearch+https://h?ssl_assert_fingerprint=xyz", "SHA-256 fingerprint"),
    ("elasticsearch+https://h?verify_certs=perhaps", "must be true or false"),
]


@pytest.mark.parametrize(("url", "message"), BAD)
def test_bad_connection_strings_fail_at_construction(url: str, message: str) -> None:
    # The password rides along in every case: it must never show in the error.
    if "@" not in url and "api_key" not in url:
        url = url.replace("://", "://user:s3cret@", 1)
    with pytest.raises(DriverError) as info:
        load_driver(url)
    text = str(info.value)
    assert message in text
    assert "s3cret" not in text and "s3cret" not in repr(info.value)
    assert text.startswith("bad Elasticsearch connection string elasticsearch")


def test_bad_api_key_value_is_not_echoed() -> None:
    with pytest.raises(DriverError) as info:
        load_driver("elasticsearch://h?api_key=TOPSECRET&colour=blue")
    assert "TOPSECRET" not in str(info.value)
    assert "api_key=" in str(info.value)


def test_construction_never_connects(unused_port: int) -> None:
    began = time.monotonic()
    drv = load_driver(f"elasticsearch://user:s3cret@127.0.0.1:{unused_port}/xp_nothing")
    assert drv._client is None
    assert time.monotonic() - began < 1.0
    drv.close()


def test_unreachable_server_is_store_unavailable_without_secrets(unused_port: int) -> None:
    for url in (
        f"elasticsearch://user:s3cret@127.0.0.1:{unused_port}/xp_x?timeout=2s&max_retries=1",
        f"elasticsearch://127.0.0.1:{unused_port}/xp_x?api_key=s3cret&timeout=2s",
    ):
        drv = load_driver(url)
        for call in (
            lambda d=drv: d.notify(make_trace(1)),
            lambda d=drv: d.get_report("abc"),
            lambda d=drv: d.list_traces(),
            lambda d=drv: d.apply_retention(3),
        ):
            with pytest.raises(StoreUnavailable) as info:
                call()
            assert "s3cret" not in str(info.value) and "s3cret" not in repr(info.value)
            assert "did not answer" in str(info.value)
            assert info.value.__cause__ is None and info.value.__suppress_context__
        drv.close()


def test_https_to_a_plain_http_server_fails_clearly(elasticsearch_server: object) -> None:
    host, port = elasticsearch_server.host, elasticsearch_server.port  # type: ignore[attr-defined]
    drv = load_driver(f"elasticsearch+https://u:s3cret@{host}:{port}/xp_tls?timeout=3s")
    with pytest.raises(StoreUnavailable) as info:
        drv.notify(make_trace(1))
    assert "s3cret" not in str(info.value)
    assert "TLS" in str(info.value) or "did not answer" in str(info.value)
    drv.close()
