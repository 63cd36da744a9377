"""One smoke test per real server: write through the real Python client, read it back."""

from __future__ import annotations

import socket
import uuid


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def test_redis_write_and_read_back(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    key = _unique("smoke")
    assert client.set(key, "value") is True
    assert client.get(key) == b"value"
    # Streams are what the messaging driver uses.
    stream = _unique("stream")
    entry_id = client.xadd(stream, {"point": "1"})
    assert client.xrange(stream) == [(entry_id, {b"point": b"1"})]
    client.close()


def test_influxdb_write_and_query_back(influxdb_server):
    from influxdb import InfluxDBClient

    client = InfluxDBClient(host=influxdb_server.host, port=influxdb_server.port)
    database = _unique("smoke")
    client.create_database(database)
    client.switch_database(database)
    assert client.write_points(
        [
            {
                "measurement": "trace",
                "tags": {"service": "api"},
                "time": "2024-01-01T00:00:00Z",
                "fields": {"elapsed_ms": 12.5},
            }
        ]
    )
    points = list(client.query("SELECT elapsed_ms FROM trace WHERE service = 'api'").get_points())
    assert points == [{"time": "2024-01-01T00:00:00Z", "elapsed_ms": 12.5}]
    client.drop_database(database)
    client.close()


def test_elasticsearch_index_and_search_back(elasticsearch_server):
    from elasticsearch import Elasticsearch

    client = Elasticsearch(elasticsearch_server.http_url, request_timeout=30)
    assert client.info()["version"]["number"] == elasticsearch_server.version
    index = _unique("smoke")
    client.index(index=index, id="1", document={"name": "wsgi", "duration": 3}, refresh=True)
    assert client.get(index=index, id="1")["_source"] == {"name": "wsgi", "duration": 3}
    hits = client.search(index=index, query={"term": {"name.keyword": "wsgi"}})["hits"]
    assert hits["total"]["value"] == 1
    client.indices.delete(index=index)
    client.close()


def test_mongodb_wire_insert_and_find_back(mongodb_server):
    import pymongo

    client = pymongo.MongoClient(mongodb_server.url, serverSelectionTimeoutMS=5000)
    collection = client[_unique("smoke")]["points"]
    collection.insert_many([{"base_id": "b1", "n": 1}, {"base_id": "b1", "n": 2}])
    collection.create_index("base_id")
    found = [doc["n"] for doc in collection.find({"base_id": "b1"}).sort("n", pymongo.ASCENDING)]
    assert found == [1, 2]
    client.drop_database(collection.database.name)
    client.close()


def test_statsd_client_metrics_arrive_in_the_daemon(statsd_server):
    import statsd

    statsd_server.reset()
    before = statsd_server.stats()["messages.bad_lines_seen"]
    client = statsd.StatsClient(statsd_server.host, statsd_server.udp_port, prefix="smoke")
    client.incr("requests", 3)
    client.incr("requests")
    client.gauge("table.size_bytes", 123456)
    client.timing("latency", 12.5)
    client.timing("latency", 7)

    snapshot = statsd_server.wait_for(
        lambda s: (
            s["counters"].get("smoke.requests") == 4
            and "smoke.table.size_bytes" in s["gauges"]
            and len(s["timers"].get("smoke.latency", [])) == 2
        )
    )
    assert snapshot["gauges"]["smoke.table.size_bytes"] == 123456
    assert sorted(snapshot["timers"]["smoke.latency"]) == [7, 12.5]

    # A malformed line is counted, not stored.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(b"smoke.broken:notanumber|zz", (statsd_server.host, statsd_server.udp_port))
    statsd_server.wait_for(
        lambda _s: statsd_server.stats()["messages.bad_lines_seen"] == before + 1
    )
    assert not any(key.startswith("smoke.broken") for key in statsd_server.counters())

    statsd_server.reset()
    assert "smoke.requests" not in statsd_server.counters()
    assert statsd_server.gauges() == {}
    assert statsd_server.timers() == {}
