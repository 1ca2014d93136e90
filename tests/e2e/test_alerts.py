"""Fuel alerts end to end: Kafka (Tansu) -> kafka-influx-sink -> InfluxDB 1.6.7, and /metrics.

Plain JSON readings of several generators, spread over the partitions by uuid4 keys like the
scenario's producer: some fine, some below warn, some below critical, some exactly at a
threshold, one generator with its own thresholds (an `[[alerts.overrides]]` entry given as a
KIS_ALERTS__OVERRIDES array literal), plus a few invalid records. Alerts are on by default: no
`[alerts]` section in config/local.toml.

1. InfluxDB's `generator_alerts` holds exactly one point per below-threshold record (tags
   generator and level, fields fuel and threshold, the reading's timestamp) and none for the
   others; the `generator` measurement holds exactly the valid readings.
2. /metrics: kis_generator_fuel is each generator's newest fuel, last seen its timestamp, the
   threshold gauges the thresholds that apply to it; kis_alert_points_written_total equals the
   alert points per level, and kis_points_written_total still counts only the readings.
3. A replay with a new group rewrites the same alert points: the counts do not change.
"""

from __future__ import annotations

import json
import random
import socket
import time
import uuid

import requests
from confluent_kafka import Producer

from conftest import create_topic, influxql_string, read_topic, sink_overrides, unique, wait_for_commits

PARTITIONS = 3
DEFAULT = {"warn": 200.0, "critical": 100.0}
BIG = "gen-big"
BIG_THRESHOLDS = {"warn": 500.0, "critical": 250.0}
OVERRIDES = f'[{{ tag = "generatorID", value = "{BIG}", warn = 500, critical = 250 }}]'

# Fuel readings per generator, oldest first.
READINGS: dict[str, list[float | int]] = {
    "gen-fine": [900.5, 850.25, 800],
    "gen-warn": [250.0, 199.99, 150.5, 120],
    "gen-crit": [120.0, 99.5, 0, 100.0],  # 100.0 is at critical, not below it: warn
    "gen-edge": [200.0, 200],  # at warn: no alert
    "gen west,2": [180.0, 1e-300, 300.0],  # escaping in line protocol and label values
    BIG: [600.0, 400.0, 249.75, 505.5],  # warn 500 / critical 250 instead of the defaults
}
INVALID_VALUES = [b"not json", b'{"generatorID": "gen-crit", "fuel": 1}', b'{"generatorID": "gen-warn"']


def thresholds_for(generator: str) -> dict[str, float]:
    return BIG_THRESHOLDS if generator == BIG else DEFAULT


def level_of(generator: str, fuel: float) -> str | None:
    thresholds = thresholds_for(generator)
    if fuel < thresholds["critical"]:
        return "critical"
    if fuel < thresholds["warn"]:
        return "warn"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    """Metric samples by their full name with labels, e.g. 'kis_generator_fuel{generator="g"}'."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of `name`'s series whose labels include `labels` (e.g. over every topic)."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(value for key, value in samples.items()
               if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted))


def label(value: str) -> str:
    """A label value as the OpenMetrics text writes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def produce(brokers: str, topic: str) -> tuple[list[dict], dict[int, int]]:
    """Produces the readings (interleaved, distinct timestamps) and the invalid records.
    Returns the readings as produced (generator, fuel, timestamp_ms) and the end offsets."""
    base_ms = int(time.time() * 1000) - 3_600_000
    readings = []
    for generator, fuels in READINGS.items():
        for index, fuel in enumerate(fuels):
            readings.append({"generator": generator, "fuel": fuel, "index": index})
    random.Random(11).shuffle(readings)
    # Timestamps increase per generator in the order of READINGS, whatever the production order.
    for seq, reading in enumerate(sorted(readings, key=lambda r: (r["index"], r["generator"]))):
        reading["timestamp_ms"] = base_ms + seq * 1000
    producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
    ends: dict[int, int] = {}
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for reading in readings:
        doc = {"generatorID": reading["generator"], "lat": 51.5, "lon": -0.12, "temperature": 40.5,
               "pressure": 1.01, "fuel": reading["fuel"]}
        producer.produce(topic, json.dumps(doc).encode(), key=str(uuid.uuid4()).encode(),
                         timestamp=reading["timestamp_ms"], on_delivery=delivered)
    for value in INVALID_VALUES:
        producer.produce(topic, value, key=str(uuid.uuid4()).encode(), on_delivery=delivered)
    assert producer.flush(30) == 0
    assert not errors, errors
    assert len(ends) == PARTITIONS, f"records reached partitions {sorted(ends)} only"
    return readings, ends


def expected_alerts(readings: list[dict]) -> set[tuple]:
    alerts = set()
    for r in readings:
        level = level_of(r["generator"], float(r["fuel"]))
        if level is not None:
            alerts.add((r["generator"], level, float(r["fuel"]), thresholds_for(r["generator"])[level],
                        r["timestamp_ms"]))
    return alerts


def alert_points(influx, database: str) -> set[tuple]:
    rows = influx.query(database, 'SELECT "generator", "level", "fuel", "threshold" FROM "generator_alerts"')
    points = {(row["generator"], row["level"], float(row["fuel"]), float(row["threshold"]), row["time"])
              for row in rows}
    assert len(points) == len(rows), f"duplicate alert points: {rows}"
    return points


def test_fuel_alerts_land_with_their_readings_and_the_gauges_follow(kafka, influx, influx_db, make_sink):
    topic, group, port = unique("e2e-alerts"), unique("e2e-alerts-group"), free_port()
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = influx_db("e2e_alerts")
    readings, ends = produce(kafka, topic)
    expected = expected_alerts(readings)
    by_level = {level: sum(1 for a in expected if a[1] == level) for level in ("warn", "critical")}
    assert by_level["warn"] >= 5 and by_level["critical"] >= 4, by_level  # guards the data set itself

    overrides = sink_overrides(topic=topic, group=group, database=database, extra={
        "KIS_METRICS__ENABLED": "true",
        "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
        "KIS_ALERTS__OVERRIDES": OVERRIDES,
    })
    with make_sink(overrides, name="alerts") as sink:
        wait_for_commits(kafka, group, topic, ends, sink)
        samples = scrape(port)

    # 1. InfluxDB: the readings unchanged, one alert point per below-threshold record.
    assert influx.count(database) == len(readings), "the generator measurement must hold the readings only"
    got = alert_points(influx, database)
    assert got == expected, (f"missing {sorted(expected - got)}\nunexpected {sorted(got - expected)}")
    assert influx.field_types(database, "generator_alerts") == {"fuel": "float", "threshold": "float"}
    assert influx.tag_keys(database, "generator_alerts") == ["generator", "level"]
    for generator in ("gen-fine", "gen-edge"):
        rows = influx.query(database, f'SELECT count("fuel") FROM "generator_alerts" '
                                      f'WHERE "generator" = {influxql_string(generator)}')
        assert not rows, f"{generator} never went below a threshold: {rows}"
    letters = read_topic(kafka, f"{topic}.dlq")
    assert len(letters) == len(INVALID_VALUES), "only the invalid records are dead-lettered"

    # 2. /metrics.
    assert total(samples, "kis_points_written_total") == len(readings), samples
    for level, count in by_level.items():
        assert samples[f'kis_alert_points_written_total{{level="{level}"}}'] == count, (level, samples)
    assert samples["kis_generator_series_evicted_total"] == 0
    for generator, fuels in READINGS.items():
        newest = max((r for r in readings if r["generator"] == generator), key=lambda r: r["timestamp_ms"])
        assert float(newest["fuel"]) == float(fuels[-1])
        g = label(generator)
        assert samples[f'kis_generator_fuel{{generator="{g}"}}'] == float(fuels[-1]), (generator, samples)
        seen = samples[f'kis_generator_last_seen_timestamp_seconds{{generator="{g}"}}']
        assert abs(seen - newest["timestamp_ms"] / 1000) < 1e-3, (generator, seen, newest)
        for level, threshold in thresholds_for(generator).items():
            key = f'kis_generator_fuel_threshold{{generator="{g}",level="{level}"}}'
            assert samples[key] == threshold, (key, samples)
    series = [k for k in samples if k.startswith("kis_generator_fuel{")]
    assert len(series) == len(READINGS), series

    # 3. A replay (new group) rewrites the same alert points.
    replay_group = unique("e2e-alerts-replay")
    replay = sink_overrides(topic=topic, group=replay_group, database=database,
                            dlq=unique("e2e-alerts-replay-dlq"),
                            extra={"KIS_ALERTS__OVERRIDES": OVERRIDES})
    create_topic(kafka, replay["KIS_DEAD_LETTER__TOPIC"], 1)
    with make_sink(replay, name="alerts-replay") as sink:
        wait_for_commits(kafka, replay_group, topic, ends, sink)
    assert alert_points(influx, database) == expected, "a replay must rewrite the alert points, not add any"
    assert influx.count(database) == len(readings)


def test_disabled_alerts_write_no_alert_points(kafka, influx, influx_db, make_sink):
    topic, group = unique("e2e-noalerts"), unique("e2e-noalerts-group")
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = influx_db("e2e_noalerts")
    readings, ends = produce(kafka, topic)
    overrides = sink_overrides(topic=topic, group=group, database=database,
                               extra={"KIS_ALERTS__ENABLED": "false"})
    with make_sink(overrides, name="no-alerts") as sink:
        wait_for_commits(kafka, group, topic, ends, sink)
    assert influx.count(database) == len(readings)
    assert influx.query(database, 'SELECT count("fuel") FROM "generator_alerts"') == []


def test_a_refused_alert_point_dead_letters_its_record_and_the_reading_stays(kafka, influx, influx_db, make_sink):
    """InfluxDB 1.x keeps a field's type per shard: an integer `fuel` seeded into
    generator_alerts in one week makes InfluxDB refuse the alert points of that week (the
    readings themselves, in `generator`, are fine). Those records are dead-lettered with reason
    AlertPointRejected, their readings are written, and everything is committed."""
    day_ms = 86_400_000
    topic, group, port = unique("e2e-alert-refused"), unique("e2e-alert-refused-group"), free_port()
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = influx_db("e2e_alert_refused")
    now_ms = int(time.time() * 1000)
    good_base, refused_base = now_ms - 30 * day_ms, now_ms - 60 * day_ms
    seed = requests.post(f"{influx.url}/write", params={"db": database, "precision": "ms"},
                         data=f"generator_alerts,generator=seed,level=warn fuel=1i,threshold=1i {refused_base - 1000}",
                         timeout=10)
    assert seed.status_code == 204, seed.text

    producer = Producer({"bootstrap.servers": kafka, "acks": "all"})
    positions: dict[bytes, tuple[int, int]] = {}

    def delivered(err, msg):
        assert err is None, err
        positions[msg.value()] = (msg.partition(), msg.offset())

    kinds = ["good_alert"] * 30 + ["refused_alert"] * 8 + ["refused_week_fine"] * 10
    random.Random(5).shuffle(kinds)  # every batch mixes them
    refused_values = set()
    for i, kind in enumerate(kinds):
        fuel = 500.5 + i if kind == "refused_week_fine" else 50.25 + i  # distinct values
        base = good_base if kind == "good_alert" else refused_base
        value = json.dumps({"generatorID": f"gen-{i % 4}", "lat": 1.5, "lon": 2.5, "temperature": 30.5,
                            "pressure": 1.0, "fuel": fuel}).encode()
        if kind == "refused_alert":
            refused_values.add(value)
        producer.produce(topic, value, key=str(uuid.uuid4()).encode(), timestamp=base + i, on_delivery=delivered)
    assert producer.flush(30) == 0
    ends: dict[int, int] = {}
    for partition, offset in positions.values():
        ends[partition] = max(ends.get(partition, 0), offset + 1)

    overrides = sink_overrides(topic=topic, group=group, database=database, extra={
        "KIS_METRICS__ENABLED": "true", "KIS_METRICS__LISTEN": f"127.0.0.1:{port}"})
    with make_sink(overrides, name="alert-refused") as sink:
        wait_for_commits(kafka, group, topic, ends, sink, timeout=90)
        samples = scrape(port)

    assert influx.count(database) == len(kinds), "every reading is written, refused alert or not"
    alerts = influx.query(database, f'SELECT count("threshold") FROM "generator_alerts" WHERE time >= {good_base}ms')
    assert alerts and alerts[0]["count"] == 30, alerts
    refused_week = influx.query(database, f'SELECT * FROM "generator_alerts" WHERE time < {good_base}ms')
    assert [row["generator"] for row in refused_week] == ["seed"], refused_week

    letters = read_topic(kafka, f"{topic}.dlq")
    assert {letter["value"] for letter in letters} == refused_values
    assert len(letters) == len(refused_values), "each record once"
    for letter in letters:
        headers = {key: (raw or b"").decode() for key, raw in letter["headers"]}
        assert headers["__connect.errors.stage"] == "write", headers
        assert headers["__connect.errors.exception.class.name"] == "AlertPointRejected", headers
        message = headers["__connect.errors.exception.message"]
        assert "alert point" in message and "field type conflict" in message, message
        partition, offset = int(headers["__connect.errors.partition"]), int(headers["__connect.errors.offset"])
        assert positions[letter["value"]] == (partition, offset)

    assert total(samples, "kis_points_written_total") == len(kinds), samples
    assert samples['kis_alert_points_written_total{level="critical"}'] == 30, samples
    assert samples['kis_alert_points_written_total{level="warn"}'] == 0, samples
    assert total(samples, "kis_records_dead_lettered_total", stage="write", reason="AlertPointRejected") == 8, samples
