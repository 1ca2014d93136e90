"""Megabyte-sized poison records mixed into good traffic, against Tansu and InfluxDB 1.6.7.

- 1 MiB of binary garbage: dead-lettered at the decode stage.
- a 1 MiB JSON record whose generatorID is a 1 MiB string: valid for the schema and the mapping,
  but InfluxDB refuses a series key that long; dead-lettered at the write stage with InfluxDB's
  message, while the good records of the same batch are written.
- a 1 MiB JSON record that is valid apart from a huge unmapped extra field: written (unknown
  fields are ignored), as one small point.
Each is preserved byte for byte in the dead-letter topic, and every offset is committed.
"""

from __future__ import annotations

import json
import os
import time

from confluent_kafka import Producer

from conftest import create_topic, read_topic, sink_overrides, unique, wait_for_commits

MIB = 1 << 20
GOOD = 60


def test_megabyte_poison_is_dead_lettered_and_good_records_land(kafka, influx, influx_db, make_sink):
    topic, group = unique("e2e-poison"), unique("e2e-poison-group")
    create_topic(kafka, topic, 2)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = influx_db("e2e_poison")
    producer = Producer({"bootstrap.servers": kafka, "acks": "all", "message.max.bytes": 4 * MIB})
    base_ms = int(time.time() * 1000) - 3_600_000
    reading = {"lat": 51.5, "lon": -0.12, "temperature": 35.0, "pressure": 1.0}
    garbage = os.urandom(MIB)
    huge_tag = json.dumps({"generatorID": "g" * MIB, **reading, "fuel": 1.0}).encode()
    huge_extra = json.dumps({"generatorID": "gen-big", **reading, "fuel": 2.0, "blob": "x" * MIB}).encode()
    positions: dict[bytes, tuple[int, int]] = {}

    def delivered(err, msg):
        assert err is None, err
        if len(msg.value()) >= MIB:
            positions[msg.value()] = (msg.partition(), msg.offset())

    for i in range(GOOD):
        doc = {"generatorID": f"gen-{i % 3}", **reading, "fuel": 100.0 + i}
        producer.produce(topic, json.dumps(doc).encode(), partition=i % 2, timestamp=base_ms + i, on_delivery=delivered)
        if i in (10, 30, 50):
            value = {10: garbage, 30: huge_tag, 50: huge_extra}[i]
            producer.produce(topic, value, partition=i % 2, timestamp=base_ms + 10_000 + i, on_delivery=delivered)
    assert producer.flush(60) == 0
    ends = {p: sum(1 for i in range(GOOD) if i % 2 == p) + sum(1 for i in (10, 30, 50) if i % 2 == p) for p in (0, 1)}

    # No size settings for the sink: its defaults must be able to dead-letter what it can read.
    overrides = sink_overrides(topic=topic, group=group, database=database)
    with make_sink(overrides, name="poison") as sink:
        wait_for_commits(kafka, group, topic, ends, sink, timeout=90)

    assert influx.count(database) == GOOD + 1, "the good records and the record with a huge unmapped field"
    big = influx.query(database, "SELECT fuel FROM generator WHERE \"generatorID\" = 'gen-big'")
    assert [row["fuel"] for row in big] == [2.0]

    letters = {letter["value"]: letter for letter in read_topic(kafka, f"{topic}.dlq")}
    assert set(letters) == {garbage, huge_tag}, f"{len(letters)} dead letters"
    for value, stage, reason in ((garbage, "decode", "InvalidJson"), (huge_tag, "write", "InfluxDbRejected")):
        headers = {key: (raw or b"").decode() for key, raw in letters[value]["headers"]}
        assert headers["__connect.errors.stage"] == stage, headers
        assert headers["__connect.errors.exception.class.name"] == reason, headers
        assert (int(headers["__connect.errors.partition"]), int(headers["__connect.errors.offset"])) == positions[value]
        assert len(headers["__connect.errors.exception.message"]) <= 2048, "messages are truncated, never megabytes"
