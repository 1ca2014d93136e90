"""Two different records of one generator in the same millisecond, against InfluxDB 1.6.7.

With the default `collisions = "overwrite"` InfluxDB keeps one point (its own rule for identical
series and time); with `collisions = "keep"` both are kept, and a replay under a new group does
not add a third: the sub-millisecond nanoseconds come from the record's Kafka position.
"""

from __future__ import annotations

import json
import time

from confluent_kafka import Producer

from conftest import create_topic, sink_overrides, unique, wait_for_commits

PAIRS = 25


def produce_pairs(brokers: str, topic: str) -> dict[int, int]:
    """PAIRS pairs of readings; both readings of a pair share generator and millisecond."""
    producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
    base_ms = int(time.time() * 1000) - 7_200_000
    for pair in range(PAIRS):
        for reading in range(2):
            doc = {"generatorID": "gen-1", "lat": 1, "lon": 2, "temperature": 3, "pressure": 4,
                   "fuel": 1000 - pair - reading / 10}
            producer.produce(topic, json.dumps(doc).encode(), partition=pair % 2, timestamp=base_ms + pair)
    assert producer.flush(30) == 0
    return {0: (PAIRS + 1) // 2 * 2, 1: PAIRS // 2 * 2}


def run(kafka, make_sink, topic: str, ends: dict[int, int], database: str, collisions: str | None) -> None:
    group = unique("e2e-collisions-group")
    extra = {"KIS_MAPPING__TIMESTAMP__COLLISIONS": collisions} if collisions else {}
    with make_sink(sink_overrides(topic=topic, group=group, database=database, extra=extra),
                   name=f"collisions-{collisions}") as sink:
        wait_for_commits(kafka, group, topic, ends, sink)


def test_overwrite_by_default_and_keep_on_request(kafka, influx, influx_db, make_sink):
    topic = unique("e2e-collisions")
    create_topic(kafka, topic, 2)
    create_topic(kafka, f"{topic}.dlq", 1)
    ends = produce_pairs(kafka, topic)

    overwrite = influx_db("e2e_overwrite")
    run(kafka, make_sink, topic, ends, overwrite, None)
    assert influx.count(overwrite) == PAIRS, "default: one point per generator and millisecond"

    keep = influx_db("e2e_keep")
    run(kafka, make_sink, topic, ends, keep, "keep")
    assert influx.count(keep) == 2 * PAIRS, "keep: both readings of every pair"
    run(kafka, make_sink, topic, ends, keep, "keep")
    assert influx.count(keep) == 2 * PAIRS, "a replay must rewrite, not add"
    fuels = sorted(row["fuel"] for row in influx.query(keep, "SELECT fuel FROM generator"))
    assert fuels == sorted(1000 - pair - reading / 10 for pair in range(PAIRS) for reading in range(2))
