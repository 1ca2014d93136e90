"""Metrics and health endpoints against the real stack (Tansu + InfluxDB 1.6.7).

1. After a run, /metrics agrees with what InfluxDB and the dead-letter topic hold, /healthz and
   /readyz answer 200.
2. Pointed at a database that does not exist (InfluxDB answers 404), the sink stays alive
   (/healthz 200), reports unready with the reason (/readyz 503), commits nothing, and recovers by
   itself once the database is created: every record lands and every offset is committed.
"""

from __future__ import annotations

import json
import re
import socket
import time

import requests
from confluent_kafka import Producer

from conftest import (
    committed_offsets,
    create_topic,
    read_topic,
    sink_overrides,
    unique,
    wait_for_commits,
)

PARTITIONS = 2
VALID = 190
INVALID_VALUES = [b"not json", b'{"generatorID": "g", "fuel": "low"}', b"", b'{"generatorID": "g"', b"[1, 2]"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def produce_generators(brokers: str, topic: str) -> dict[int, int]:
    """VALID valid records (distinct timestamps) and 2 of each invalid kind; returns end offsets."""
    producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
    ends: dict[int, int] = {}
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    base_ms = int(time.time() * 1000) - 3_600_000
    for i in range(VALID):
        doc = {"generatorID": f"gen-{i % 7}", "lat": 51.5, "lon": -0.12, "temperature": 30 + i % 10,
               "pressure": 1.0, "fuel": 1000 - i}
        producer.produce(topic, json.dumps(doc).encode(), key=str(i).encode(), timestamp=base_ms + i,
                         on_delivery=delivered)
    for value in INVALID_VALUES * 2:
        producer.produce(topic, value, key=b"bad", on_delivery=delivered)
    assert producer.flush(30) == 0
    assert not errors, errors
    return ends


def scrape(port: int) -> dict[str, float]:
    """Metric samples by their full name with labels, e.g. 'kis_points_written_total'."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def dead_lettered_total(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("kis_records_dead_lettered_total{"))


def wait_until(predicate, timeout: float, what: str, sink) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sink.assert_alive()
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; sink log tail:\n{sink.log_tail()}")


def test_metrics_agree_with_what_landed(kafka, influx, influx_db, make_sink):
    topic, group, port = unique("e2e-metrics"), unique("e2e-metrics-group"), free_port()
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = influx_db("e2e_metrics")
    ends = produce_generators(kafka, topic)
    overrides = sink_overrides(topic=topic, group=group, database=database,
                               extra={"KIS_METRICS__ENABLED": "true", "KIS_METRICS__LISTEN": f"127.0.0.1:{port}"})
    with make_sink(overrides, name="metrics") as sink:
        wait_for_commits(kafka, group, topic, ends, sink)
        samples = scrape(port)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
    total = VALID + 2 * len(INVALID_VALUES)
    assert samples["kis_records_consumed_total"] == total, samples
    assert samples["kis_points_written_total"] == VALID == influx.count(database), samples
    assert dead_lettered_total(samples) == 2 * len(INVALID_VALUES) == len(read_topic(kafka, f"{topic}.dlq")), samples
    assert samples['kis_records_dead_lettered_total{stage="validate",reason="SchemaViolation"}'] == 4, samples
    assert samples["kis_last_durable_batch_timestamp_seconds"] > time.time() - 120
    assert any(re.match(r'kis_build_info\{version="[^"]+"\}', k) for k in samples), samples


def test_missing_database_means_unready_and_uncommitted_until_fixed(kafka, influx, make_sink):
    topic, group, port = unique("e2e-unready"), unique("e2e-unready-group"), free_port()
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = unique("e2e_missing").replace("-", "_")  # not created yet: InfluxDB answers 404
    ends = produce_generators(kafka, topic)
    overrides = sink_overrides(topic=topic, group=group, database=database, extra={
        "KIS_METRICS__ENABLED": "true",
        "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
        "KIS_INFLUXDB__RETRY_MAX_BACKOFF_MS": "1000",
    })
    base = f"http://127.0.0.1:{port}"
    try:
        with make_sink(overrides, name="unready") as sink:
            def unready_with_reason() -> bool:
                try:
                    response = requests.get(f"{base}/readyz", timeout=2)
                except requests.RequestException:
                    return False
                return response.status_code == 503 and "database not found" in response.text

            wait_until(unready_with_reason, 60, "/readyz to report the missing database", sink)
            assert requests.get(f"{base}/healthz", timeout=2).status_code == 200
            time.sleep(3)  # several retries and at least one auto-commit interval... of nothing
            committed = committed_offsets(kafka, group, topic)
            assert all(offset is None for offset in committed.values()), (
                f"offsets committed while InfluxDB refused every write: {committed}")
            assert scrape(port)["kis_write_retries_total"] >= 2

            influx.create_database(database)
            wait_for_commits(kafka, group, topic, ends, sink, timeout=60)
            wait_until(lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200, 30,
                       "/readyz to turn ready again", sink)
        assert influx.count(database) == VALID
        assert len(read_topic(kafka, f"{topic}.dlq")) == 2 * len(INVALID_VALUES)
    finally:
        influx.drop_database(database)
