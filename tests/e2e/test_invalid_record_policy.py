"""dead_letter.policy = "skip" and "fail" against the real stack (Tansu + InfluxDB 1.6.7).

One partition keeps the record order deterministic: 20 valid records, one invalid record at
offset 20, then 10 valid records.
- skip: every valid record lands, nothing is dead-lettered, every offset is committed, and the
  skip is counted in /metrics.
- fail: the sink stops with a non-zero exit naming the record; the 20 records before it are in
  InfluxDB and committed, the invalid record's offset (20) is never committed, nothing after it
  is written.
"""

from __future__ import annotations

import json
import time

from confluent_kafka import Producer

from conftest import committed_offsets, create_topic, read_topic, sink_overrides, unique, wait_for_commits
from test_metrics_health import free_port, metrics_text, one, parse, series

BEFORE, AFTER, INVALID_OFFSET = 20, 10, 20


def produce(brokers: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
    base_ms = int(time.time() * 1000) - 600_000
    values = [json.dumps({"generatorID": "gen-1", "lat": 1, "lon": 2, "temperature": 3, "pressure": 4,
                          "fuel": 100 + i}).encode() for i in range(BEFORE + AFTER)]
    values.insert(INVALID_OFFSET, b'{"generatorID": "gen-1", "fuel": "empty"}')
    for i, value in enumerate(values):
        producer.produce(topic, value, partition=0, timestamp=base_ms + i)
    assert producer.flush(30) == 0


def setup(kafka, influx_db, name: str) -> tuple[str, str, str]:
    topic, group = unique(f"e2e-{name}"), unique(f"e2e-{name}-group")
    create_topic(kafka, topic, 1)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = influx_db(f"e2e_{name}")
    produce(kafka, topic)
    return topic, group, database


def test_skip_policy_writes_the_rest_and_counts_the_skip(kafka, influx, influx_db, make_sink):
    topic, group, database = setup(kafka, influx_db, "skip")
    port = free_port()
    overrides = sink_overrides(topic=topic, group=group, database=database, extra={
        "KIS_DEAD_LETTER__POLICY": "skip",
        "KIS_METRICS__ENABLED": "true",
        "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
    })
    with make_sink(overrides, name="skip") as sink:
        wait_for_commits(kafka, group, topic, {0: BEFORE + AFTER + 1}, sink)
        text = metrics_text(port)
    samples = parse(text)
    assert influx.count(database) == BEFORE + AFTER
    assert read_topic(kafka, f"{topic}.dlq") == []
    # Counted as skipped (by topic, stage and reason), not as dead-lettered; consumed and written
    # add up.
    assert series(samples, "kis_records_skipped_total") == {(topic, "validate", "SchemaViolation"): 1}, text
    assert series(samples, "kis_records_dead_lettered_total") == {}, text
    assert one(samples, "kis_records_consumed_total", topic=topic) == BEFORE + AFTER + 1, text
    assert one(samples, "kis_points_written_total", topic=topic) == BEFORE + AFTER, text
    assert "skipped" in sink.log_text()


def test_fail_policy_stops_before_the_invalid_record(kafka, influx, influx_db, make_sink):
    topic, group, database = setup(kafka, influx_db, "fail")
    overrides = sink_overrides(topic=topic, group=group, database=database,
                               extra={"KIS_DEAD_LETTER__POLICY": "fail"})
    sink = make_sink(overrides, name="fail").start()
    try:
        exit_code = sink.proc.wait(60)
    finally:
        sink.kill()
    log = sink.log_text()
    assert exit_code != 0, f"the sink must fail on the invalid record; log:\n{log[-3000:]}"
    assert f"{topic}[0]@{INVALID_OFFSET}" in log, f"the error must name the record; log:\n{log[-3000:]}"
    assert committed_offsets(kafka, group, topic) == {0: INVALID_OFFSET}
    assert influx.count(database) == BEFORE
    assert read_topic(kafka, f"{topic}.dlq") == []
