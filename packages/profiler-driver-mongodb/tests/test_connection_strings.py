"""Connection strings: what a pymongo user writes is accepted; bad ones fail at construction.

None of these tests needs a server: construction never contacts one.
"""

from __future__ import annotations

import time

import pymongo
import pytest
from pymongo.uri_parser import parse_uri

from xprofiler.core.errors import DriverError
from xprofiler.core.registry import get_driver_class, load_driver
from xprofiler.core.uri import URLError
from xprofiler.drivers.mongodb.driver import MongoDBDriver
from xprofiler.drivers.mongodb.settings import DEFAULT_TIMEOUTS_MS


def test_both_schemes_are_registered_through_entry_points() -> None:
    assert get_driver_class("mongodb") is MongoDBDriver
    assert get_driver_class("mongodb+srv") is MongoDBDriver


def test_construction_does_not_contact_the_server() -> None:
    began = time.monotonic()
    drv = load_driver("mongodb://u:s3cret@127.0.0.1:9,127.0.0.1:10/db?replicaSet=rs0")
    drv.close()
    assert time.monotonic() - began < 1.0


def test_defaults_database_collection_and_tracer_timeouts() -> None:
    drv = load_driver("mongodb://127.0.0.1:27017")
    s = drv.settings
    assert (s.database, s.collection, s.summary_collection) == (
        "xprofiler",
        "points",
        "points_traces",
    )
    assert s.ttl_seconds is None
    for key, value in DEFAULT_TIMEOUTS_MS.items():
        assert s.client_kwargs[key] == value
    assert s.client_uri == "mongodb://127.0.0.1:27017"


def test_database_from_path_and_collection_option() -> None:
    s = load_driver("mongodb://h/tracing?collection=spans").settings
    assert (s.database, s.collection, s.summary_collection) == ("tracing", "spans", "spans_traces")
    # pymongo's own "database.collection" path form
    s = load_driver("mongodb://h/tracing.spans").settings
    assert (s.database, s.collection) == ("tracing", "spans")


def test_timeouts_in_the_string_override_the_defaults() -> None:
    s = load_driver(
        "mongodb://h/db?serverSelectionTimeoutMS=500&sockettimeoutms=2000&appName=api"
    ).settings
    assert "serverSelectionTimeoutMS" not in s.client_kwargs
    assert "socketTimeoutMS" not in s.client_kwargs
    assert s.client_kwargs["connectTimeoutMS"] == 3000
    assert "appname" not in s.client_kwargs
    opts = parse_uri(s.client_uri)["options"]
    assert opts["serverSelectionTimeoutMS"] == 0.5
    assert opts["socketTimeoutMS"] == 2.0


def test_replica_set_auth_and_tls_options_reach_the_client_unchanged() -> None:
    url = (
        "mongodb://tracer:p%40ss%3Aw%2Frd%25@db1.example.com:27017,db2.example.com:27018,"
        "[::1]:27019/tracing?replicaSet=rs0&authSource=admin&authMechanism=SCRAM-SHA-256"
        "&tls=true&tlsAllowInvalidHostnames=true&readPreference=secondaryPreferred"
        "&readPreferenceTags=dc:ny,rack:1&w=majority&ttl=7d&collection=spans"
    )
    drv = load_driver(url)
    s = drv.settings
    assert s.ttl_seconds == 7 * 86400
    parsed = parse_uri(s.client_uri)
    assert parsed["username"] == "tracer"
    assert parsed["password"] == "p@ss:w/rd%"
    assert parsed["nodelist"] == [
        ("db1.example.com", 27017),
        ("db2.example.com", 27018),
        ("::1", 27019),
    ]
    assert parsed["database"] == "tracing"
    opts = parsed["options"]
    assert opts["replicaSet"] == "rs0"
    assert opts["authSource"] == "admin"
    assert opts["authMechanism"] == "SCRAM-SHA-256"
    assert opts["tls"] is True
    assert opts["tlsAllowInvalidHostnames"] is True
    assert opts["readPreferenceTags"] == [{"dc": "ny", "rack": "1"}]
    assert "collection" not in opts and "ttl" not in opts
    # The client pymongo builds from it (connect=False: still no server contact).
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        s.client_uri, connect=False, **s.client_kwargs
    )
    try:
        assert client.options.replica_set_name == "rs0"
        assert client.options.server_selection_timeout == 3.0
        assert client.options.pool_options.connect_timeout == 3.0
        assert client.options.pool_options.socket_timeout == 10.0
        assert client.options.pool_options._ssl_context is not None
    finally:
        client.close()
    assert "p@ss" not in repr(drv) and "p%40ss" not in repr(drv)


def test_auth_mechanism_properties_keep_their_separators() -> None:
    s = load_driver(
        "mongodb://u@h/?authMechanism=GSSAPI&authMechanismProperties=SERVICE_NAME:other"
    ).settings
    opts = parse_uri(s.client_uri)["options"]
    assert opts["authMechanismProperties"] == {"SERVICE_NAME": "other"}


def test_srv_connection_string_is_accepted_without_dns() -> None:
    drv = load_driver("mongodb+srv://tracer:s3cret@cluster0.example.net/tracing?retryWrites=true")
    s = drv.settings
    assert s.client_uri.startswith("mongodb+srv://tracer:s3cret@cluster0.example.net/tracing?")
    assert s.database == "tracing"
    assert "s3cret" not in repr(drv) and "s3cret" not in s.safe_uri


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("mongodb://u:s3cret@h/db?colection=spans", "colection"),
        ("mongodb://u:s3cret@h/db?serverSelectionTimeoutMS=soon", "serverselectiontimeoutms"),
        ("mongodb://u:s3cret@h/db?tls=maybe", "tls"),
        ("mongodb://u:s3cret@h/db?ttl=forever", "ttl"),
        ("mongodb://u:s3cret@h/db?ttl=0s", "at least 1s"),
        ("mongodb://u:s3cret@h/bad%20name", "database name"),
        ("mongodb://u:s3cret@h/db?collection=%24x", "collection"),
        ("mongodb://u:s3cret@h/db.a?collection=b", "collection is given twice"),
        ("mongodb://u:s3cret@/db", "no host"),
        ("mongodb+srv://u:s3cret@cluster.example.net:27017/db", "no port"),
        ("mongodb+srv://u:s3cret@a.example.net,b.example.net/db", "exactly one host"),
        ("mongodb://u:s3cret@h/db?srvServiceName=x", "only valid with mongodb+srv"),
        ("mongodb://u:s3cret@a,b/db?directConnection=true", "several hosts"),
        ("mongodb://u:s3cret@h/db?tlsInsecure=true&tlsAllowInvalidCertificates=true", "tls"),
    ],
)
def test_bad_connection_string_fails_clearly_without_the_password(url: str, hint: str) -> None:
    with pytest.raises((DriverError, URLError)) as info:
        load_driver(url)
    message = str(info.value)
    assert hint.lower() in message.lower()
    assert "s3cret" not in message and "s3cret" not in repr(info.value)
    assert info.value.__cause__ is None or "s3cret" not in str(info.value.__cause__)
