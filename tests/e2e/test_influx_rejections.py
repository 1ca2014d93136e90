"""Records InfluxDB itself refuses, against a real InfluxDB 1.6.7.

InfluxDB 1.x keeps a field's type per shard. The test seeds an integer `fuel` in one week's shard
group; the sink writes `fuel` as a float, so records timestamped in that week are refused with
"partial write: field type conflict" (HTTP 400, no line numbers), while records of another week
are fine. Every batch mixes both. The sink must isolate exactly the refused records, dead-letter
them with InfluxDB's message (stage `write`), write every other record and commit everything.
"""

from __future__ import annotations

import json
import random
import time

import requests
from confluent_kafka import Producer

from conftest import INFLUX_URL, create_topic, read_topic, sink_overrides, unique, wait_for_commits

GOOD, REFUSED = 400, 12
DAY_MS = 86_400_000


def test_refused_lines_are_dead_lettered_and_the_rest_written(kafka, influx, influx_db, make_sink):
    topic, group = unique("e2e-refused"), unique("e2e-refused-group")
    create_topic(kafka, topic, 3)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = influx_db("e2e_refused")

    now_ms = int(time.time() * 1000)
    good_base = now_ms - 30 * DAY_MS
    refused_base = now_ms - 60 * DAY_MS
    seed = requests.post(f"{INFLUX_URL}/write", params={"db": database, "precision": "ms"},
                         data=f"generator,generatorID=seed fuel=1i {refused_base - 1000}", timeout=10)
    assert seed.status_code == 204, seed.text

    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    positions: dict[tuple[int, int], bytes] = {}
    refused_values: set[bytes] = set()

    def delivered(err, msg):
        assert err is None, err
        positions[(msg.partition(), msg.offset())] = msg.value()

    order = ["good"] * GOOD + ["refused"] * REFUSED
    random.Random(7).shuffle(order)  # every batch mixes writable and refused records
    counters = {"good": 0, "refused": 0}
    for kind in order:
        i = counters[kind]
        counters[kind] += 1
        doc = {"generatorID": f"gen-{i % 5}", "lat": 1.5, "lon": 2.5, "temperature": 30.5, "pressure": 1.0,
               "fuel": 500.25 - i}
        value = json.dumps(doc).encode()
        timestamp = (good_base if kind == "good" else refused_base) + i
        if kind == "refused":
            refused_values.add(value)
        producer.produce(topic, value, key=f"{kind}-{i}".encode(), timestamp=timestamp, on_delivery=delivered)
    assert producer.flush(30) == 0
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)

    with make_sink(sink_overrides(topic=topic, group=group, database=database), name="refused") as sink:
        wait_for_commits(kafka, group, topic, ends, sink, timeout=90)

    good_rows = influx.query(database, f"SELECT count(fuel) FROM generator WHERE time >= {good_base}ms")
    assert good_rows and good_rows[0]["count"] == GOOD, good_rows
    refused_week = influx.query(
        database, f"SELECT * FROM generator WHERE time >= {refused_base - 1000}ms AND time < {good_base}ms")
    assert [row["generatorID"] for row in refused_week] == ["seed"], (
        f"only the seed point may be in the refused week: {refused_week}")

    letters = read_topic(kafka, f"{topic}.dlq")
    assert len(letters) == REFUSED, f"{len(letters)} dead letters for {REFUSED} refused records"
    assert {letter["value"] for letter in letters} == refused_values
    for letter in letters:
        headers = {key: (value or b"").decode() for key, value in letter["headers"]}
        assert headers["__connect.errors.stage"] == "write", headers
        assert headers["__connect.errors.exception.class.name"] == "InfluxDbRejected", headers
        assert "field type conflict" in headers["__connect.errors.exception.message"], headers
        partition, offset = int(headers["__connect.errors.partition"]), int(headers["__connect.errors.offset"])
        assert positions[(partition, offset)] == letter["value"]
        assert letter["key"].startswith(b"refused-")
