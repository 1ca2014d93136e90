"""The general [mapping] against the real stack (Tansu + InfluxDB 1.6.7), on records that are not
the generator schema.

Each test writes its own configuration file (plain JSON, no JSON Schema), produces known records
with keys and headers to a one-partition topic, runs the sink until every offset is committed
and then checks what InfluxDB holds (values, tag values, SHOW FIELD KEYS types, timestamps) and
what the dead-letter topic holds (stage, reason and the path named in the message):

- nested records: JSON Pointers into objects and arrays, renames, a constant tag, tags from the
  Kafka key and a header, integer/boolean/string fields, RFC 3339 times with Z and with an offset,
  the measurement from a {topic} template; every way such a record can fail is dead-lettered;
- extra_fields = "include" with the measurement taken from a record field;
- extra_fields = "reject" with an ignore list, a tag from the topic, and an unsigned field, which
  InfluxDB 1.x refuses (dead-lettered by the write stage, as the README says).
"""

from __future__ import annotations

import json
from pathlib import Path

from confluent_kafka import Producer

from conftest import create_topic, end_offsets, read_topic, sink_overrides, unique, wait_for_commits

BASE_CONFIG = """
[kafka]
brokers = ["127.0.0.1:9092"]
group_id = "overridden"
topics = ["overridden"]
auto_offset_reset = "earliest"

[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[schema]
format = "json"

[influxdb]
api = "v1"
url = "http://127.0.0.1:8086"
database = "overridden"

[batch]
linger_ms = 50
"""


def write_config(tmp_path: Path, mapping: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(BASE_CONFIG + mapping)
    return path


def produce(brokers: str, topic: str, records: list[tuple[bytes | None, list[tuple[str, bytes]], object]]) -> None:
    """Produces (key, headers, value) in order to partition 0, the i-th with Kafka timestamp
    1700000000000 + i ms; a value that is not bytes is JSON-encoded."""
    producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
    for index, (key, headers, value) in enumerate(records):
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        producer.produce(topic, data, key=key, headers=headers or None, partition=0,
                         timestamp=1_700_000_000_000 + index)
    assert producer.flush(30) == 0


def run_sink(kafka, make_sink, tmp_path: Path, topic: str, database: str, mapping: str, name: str) -> None:
    group = unique(f"e2e-{name}-group")
    config = write_config(tmp_path, mapping)
    overrides = sink_overrides(topic=topic, group=group, database=database, dlq=f"{topic}.dlq")
    with make_sink(overrides, name=name, config=config) as sink:
        wait_for_commits(kafka, group, topic, end_offsets(kafka, topic), sink)


def dead_letters(kafka, topic: str) -> list[dict[str, str]]:
    """The dead letters' error headers, decoded, with the original value under "value", in
    source offset order (map-stage and write-stage dead letters are delivered concurrently)."""
    letters = []
    for letter in read_topic(kafka, f"{topic}.dlq"):
        headers = {key.removeprefix("__connect.errors."): (value or b"").decode()
                   for key, value in letter["headers"] if key.startswith("__connect.errors.")}
        headers["value"] = letter["value"].decode()
        letters.append(headers)
    return sorted(letters, key=lambda letter: int(letter["offset"]))


def setup(kafka, influx_db, name: str) -> tuple[str, str]:
    topic = unique(f"e2e-{name}")
    create_topic(kafka, topic, 1)
    create_topic(kafka, f"{topic}.dlq", 1)
    return topic, influx_db(f"e2e_{name}")


NESTED_MAPPING = """
[mapping]
measurement = "{topic}"
tags = [
    "/meta/site",
    { name = "fleet", value = "north" },
    { name = "device", from = "key" },
    { name = "source", header = "source-system" },
]
fields = [
    { name = "temp_c", path = "/readings/0/value" },
    { name = "count", path = "/stats/count", type = "integer" },
    { name = "running", type = "boolean" },
    { name = "state", path = "/meta/state", type = "string" },
    { name = "note", type = "string", optional = true },
]

[mapping.timestamp]
source = "field"
field = "/meta/time"
unit = "rfc3339"
"""


def nested(site="s1", time="2026-11-25T05:00:00.123Z", readings=None, count=12, running=True, **extra):
    record = {"meta": {"site": site, "state": "ok", "time": time},
              "readings": [{"value": 21.5}, {"value": 40}] if readings is None else readings,
              "stats": {"count": count}, "running": running}
    if site is None:
        del record["meta"]["site"]
    record.update(extra)
    return record


def test_nested_records_typed_fields_tags_from_kafka_and_rfc3339_times(kafka, influx, influx_db, make_sink, tmp_path):
    topic, database = setup(kafka, influx_db, "mapping-nested")
    erp = [("source-system", b"erp")]
    tricky_state = 'says "hi", a=b \\ c\\'
    valid = [
        (b"dev-1", erp, nested()),
        (b"dev-2", [("source-system", b"old"), ("source-system", b"scada 2")],
         {**nested(time="2026-11-25T06:00:01.5+01:00", count=7.0, running=False, note="hello"),
          "meta": {"site": "s 2", "state": tricky_state, "time": "2026-11-25T06:00:01.5+01:00"}}),
    ]
    invalid = [
        (None, erp, nested(), "MissingKafkaKey", "Kafka key"),
        (b"dev-3", [], nested(), "MissingHeader", "source-system"),
        (b"dev-3", erp, nested(count=1.5), "NotAnInteger", "/stats/count"),
        (b"dev-3", erp, nested(running="yes"), "WrongFieldType", "running"),
        (b"dev-3", erp, nested(time="2026-11-25T05:00:00"), "InvalidTimestamp", "/meta/time"),
        (b"dev-3", erp, nested(readings=[]), "MissingField", "/readings/0/value"),
        (b"dev-3", erp, nested(site=None), "MissingTag", "/meta/site"),
        (b"dev-3", erp, [1, 2], "NotAnObject", "array"),
    ]
    produce(kafka, topic, valid + [(key, headers, value) for key, headers, value, _, _ in invalid])
    run_sink(kafka, make_sink, tmp_path, topic, database, NESTED_MAPPING, "nested")

    assert influx.field_types(database, topic) == {
        "temp_c": "float", "count": "integer", "running": "boolean", "state": "string", "note": "string"}
    assert sorted(influx.tag_keys(database, topic)) == ["device", "fleet", "site", "source"]
    rows = influx.query(database, f'SELECT * FROM "{topic}" ORDER BY time')
    assert rows == [
        {"time": 1_795_582_800_123, "count": 12, "device": "dev-1", "fleet": "north", "note": None,
         "running": True, "site": "s1", "source": "erp", "state": "ok", "temp_c": 21.5},
        {"time": 1_795_582_801_500, "count": 7, "device": "dev-2", "fleet": "north", "note": "hello",
         "running": False, "site": "s 2", "source": "scada 2", "state": tricky_state, "temp_c": 21.5},
    ], rows

    letters = dead_letters(kafka, topic)
    assert [(letter["stage"], letter["exception.class.name"]) for letter in letters] == [
        ("map", reason) for *_, reason, _ in invalid]
    for letter, (*_, reason, named) in zip(letters, invalid):
        assert named in letter["exception.message"], (reason, letter)


INCLUDE_MAPPING = """
[mapping]
measurement_field = "type"
tags = ["device"]
fields = []
extra_fields = "include"
ignore = ["debug"]

[mapping.timestamp]
source = "field"
field = "ts"
unit = "ms"
"""


def test_extra_fields_include_with_the_measurement_from_a_field(kafka, influx, influx_db, make_sink, tmp_path):
    topic, database = setup(kafka, influx_db, "mapping-include")
    records = [
        {"type": "boiler", "device": "b-1", "ts": 1_700_000_000_123, "temp": 71.5, "on": True, "mode": "eco",
         "debug": "x", "raw": {"a": 1}, "none": None, "list": [1]},
        {"type": "pump", "device": "p-1", "ts": 1_700_000_000_456, "rpm": 1200},
        {"device": "x", "ts": 1_700_000_000_789, "v": 1},
        {"type": "pump", "device": "p-2", "ts": 1_700_000_000_999, "raw": {}, "debug": 1},
    ]
    produce(kafka, topic, [(None, [], record) for record in records])
    run_sink(kafka, make_sink, tmp_path, topic, database, INCLUDE_MAPPING, "include")

    assert influx.field_types(database, "boiler") == {"mode": "string", "on": "boolean", "temp": "float"}
    assert influx.query(database, 'SELECT * FROM "boiler"') == [
        {"time": 1_700_000_000_123, "device": "b-1", "mode": "eco", "on": True, "temp": 71.5}]
    assert influx.query(database, 'SELECT * FROM "pump"') == [
        {"time": 1_700_000_000_456, "device": "p-1", "rpm": 1200.0}]
    letters = dead_letters(kafka, topic)
    assert [(letter["stage"], letter["exception.class.name"]) for letter in letters] == [
        ("map", "MissingMeasurement"), ("map", "NoFields")]
    assert "`type`" in letters[0]["exception.message"], letters[0]


REJECT_MAPPING = """
[mapping]
measurement = "kafka_{topic}"
tags = [{ name = "topic", from = "topic" }]
fields = ["v", { name = "n", type = "unsigned", optional = true }]
extra_fields = "reject"
ignore = ["debug"]
"""


def test_extra_fields_reject_and_unsigned_fields_on_influxdb_1(kafka, influx, influx_db, make_sink, tmp_path):
    topic, database = setup(kafka, influx_db, "mapping-reject")
    records = [
        {"v": 1, "debug": {"anything": True}},
        {"v": 2, "surprise": 1},
        {"v": 3, "n": 5},
        {"v": 4},
    ]
    produce(kafka, topic, [(None, [], record) for record in records])
    run_sink(kafka, make_sink, tmp_path, topic, database, REJECT_MAPPING, "reject")

    measurement = f"kafka_{topic}"
    rows = influx.query(database, f'SELECT v, "topic" FROM "{measurement}" ORDER BY time')
    assert rows == [{"time": 1_700_000_000_000, "v": 1.0, "topic": topic},
                    {"time": 1_700_000_000_003, "v": 4.0, "topic": topic}], rows
    letters = dead_letters(kafka, topic)
    assert [(letter["stage"], letter["exception.class.name"]) for letter in letters] == [
        ("map", "UnexpectedKey"), ("write", "InfluxDbRejected")], letters
    assert "`surprise`" in letters[0]["exception.message"], letters[0]
    assert json.loads(letters[1]["value"]) == {"v": 3, "n": 5}
    assert "invalid number" in letters[1]["exception.message"], letters[1]
