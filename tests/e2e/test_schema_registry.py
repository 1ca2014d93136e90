"""Schema Registry records end to end: confluent-kafka serializers -> Tansu -> the sink -> InfluxDB 1.6.7.

The registry is tests/e2e/schema_registry_standin.py, an in-memory *stand-in* for Confluent Schema
Registry (no real registry can be installed here), run in-process on a free port, one per test.
Records are written by the real confluent-kafka client: `SerializingProducer` with
`JSONSerializer` / `AvroSerializer` (subject `<topic>-value`, uuid4 string keys like the source
scenario), in the prefix form (0x00 + 4-byte schema id) and the header form (`__value_schema_id`
= 0x01 + 16-byte GUID, payload unprefixed). Kafka and InfluxDB are the real local stack.

  1. JSON Schema records (mixed with plain JSON): every point carries exactly the produced values.
  2. Avro records, prefix and header form, plus JSON Schema in the header form: exact values,
     also for a writer schema with a 32-bit float field and no local reader schema.
  3. Schemas evolve mid-stream (Avro: a new optional field, float and int writer fields resolved to
     the local reader schema's doubles; JSON: new optional properties): nothing dead-lettered.
  4. Registry outages while records name a schema the sink has not fetched yet (503, connection
     refused, answers slower than the sink's timeout): nothing written, nothing dead-lettered,
     nothing committed while it lasts; everything lands once the registry is back.
  5. A schema id and a GUID the registry does not have: those records are dead-lettered
     (`UnknownSchema`, original bytes, key and headers), the rest written. So are framed records
     of a known schema with a bad payload (InvalidJson, SchemaViolation, InvalidAvro, NaN) and a
     malformed `__value_schema_id` header.
  6. The sink fetched each schema once (its cache), read from the stand-in's request log.
  7. Writer schemas with references to other subjects (Avro named type, JSON Schema `$ref`).
  8. Basic auth and bearer token against a registry that requires them.
  9. A registry outage with rebalances in the middle of it: two sinks at a time in one group on 4
     partitions, records waiting for a schema while a member joins, the leader leaves (SIGTERM)
     and another member joins. Nothing is committed past a waiting record while it lasts, nothing
     is lost or dead-lettered, no sink crashes.

Each test checks at the end: InfluxDB holds exactly the expected points with exact float values,
the dead-letter topic holds exactly the expected records, committed offsets equal end offsets.
"""

from __future__ import annotations

import io
import json
import random
import re
import ssl
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import fastavro
import pytest
from confluent_kafka import Producer, SerializingProducer
from confluent_kafka.schema_registry import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    header_schema_id_serializer,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

from conftest import (
    REPO_ROOT,
    Sink,
    committed_offsets,
    create_topic,
    env_list,
    read_topic,
    sink_overrides,
    unique,
    wait_for_commits,
)
from schema_registry_standin import SchemaRegistryStandIn

SCHEMAS = REPO_ROOT / "schemas"
AVSC_FILE = SCHEMAS / "generator.avsc"
JSON_SCHEMA_FILE = SCHEMAS / "generator.schema.json"
AVSC = AVSC_FILE.read_text()
JSON_SCHEMA = JSON_SCHEMA_FILE.read_text()

MEASUREMENT = "generator"
TAG = "generatorID"
FIELDS = ["lat", "lon", "temperature", "pressure", "fuel"]
ORIGIN_HEADER = "e2e-seq"
DLQ_PREFIX = "__connect.errors."
SCHEMA_ID_HEADER = "__value_schema_id"
PARTITIONS = 2
COMMIT_TIMEOUT = 60.0
OUTAGE_SECONDS = 4.0

# Registry lookups retried quickly, so an outage's end is noticed within a second; offsets
# committed every half second, so the tests need not wait for librdkafka's 5 s default.
FAST = {
    "KIS_KAFKA__COMMIT_INTERVAL_MS": "500",
    "KIS_SCHEMA_REGISTRY__TIMEOUT_MS": "1000",
    "KIS_SCHEMA_REGISTRY__RETRY_INITIAL_BACKOFF_MS": "100",
    "KIS_SCHEMA_REGISTRY__RETRY_MAX_BACKOFF_MS": "500",
}


# --- schemas ----------------------------------------------------------------------------------

def avro_schema(*, extra_fields: list[dict] = (), types: dict[str, str] | None = None) -> str:
    """generator.avsc with some field types changed and fields added (same record name)."""
    schema = json.loads(AVSC)
    for f in schema["fields"]:
        f["type"] = (types or {}).get(f["name"], f["type"])
    schema["fields"].extend(extra_fields)
    return json.dumps(schema)


def json_schema(*, extra_properties: dict[str, dict] | None = None) -> str:
    schema = json.loads(JSON_SCHEMA)
    schema["properties"].update(extra_properties or {})
    return json.dumps(schema)


# Avro v2: a new optional field, and fuel written as a 32-bit float (the reader's double widens it).
AVRO_V2 = avro_schema(extra_fields=[{"name": "status", "type": ["null", "string"], "default": None}],
                      types={"fuel": "float"})
# Avro v3: also temperature as int and pressure as long (promoted to double by the reader).
AVRO_V3 = avro_schema(extra_fields=[{"name": "status", "type": ["null", "string"], "default": None},
                                    {"name": "rpm", "type": "long", "default": 0}],
                      types={"fuel": "float", "temperature": "int", "pressure": "long"})
JSON_V2 = json_schema(extra_properties={"status": {"type": "string"}, "rpm": {"type": "integer"}})


def f32(x: float) -> float:
    """The double a 32-bit float written from `x` reads back as."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# --- records ----------------------------------------------------------------------------------

@dataclass
class Rec:
    index: int
    key: str
    value: dict | bytes  # a dict for a serializer, bytes for a plain producer
    timestamp_ms: int
    expect: dict | None  # the point's fields and tag; None: must be dead-lettered
    reason: str | None = None  # expected dead-letter reason
    stage: str = "decode"  # and stage
    headers: list = field(default_factory=list)
    partition: int | None = None
    offset: int | None = None
    produced: bytes | None = None  # the value bytes as they went to Kafka
    produced_headers: list = field(default_factory=list)


class Stream:
    """Distinct uuid4 keys and Kafka timestamps (one point per record) for one test."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.index = 0
        self.base_ms = (int(time.time()) // 3600 - 12) * 3_600_000 + self.rng.randrange(3_600_000)

    def next(self) -> tuple[int, str, int]:
        self.index += 1
        key = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return self.index, key, self.base_ms + self.index

    def reading(self, *, ints: bool = False) -> dict:
        """A generator reading. Floats (Avro doubles); with ints=True (JSON) some are integers."""
        rng = self.rng

        def number(lo: float, hi: float) -> float | int:
            r = rng.random()
            if ints and r < 0.2:
                return rng.randint(int(lo), int(hi))
            if r < 0.35:
                return round(rng.uniform(lo, hi), 2)
            return rng.uniform(lo, hi)  # 17 significant digits

        return {TAG: f"gen-{rng.randrange(12):02d}", "lat": number(51.2, 51.7), "lon": number(-0.5, 0.3),
                "temperature": number(-20, 400), "pressure": number(0, 5),
                "fuel": rng.choice([number(0, 1000), number(0, 1000), 1e-300, 123456789.125])}

    def records(self, n: int, *, ints: bool = False, mutate=None) -> list[Rec]:
        """n valid records; mutate(doc) -> (value, expected fields) changes what is produced."""
        out = []
        for _ in range(n):
            i, key, ts = self.next()
            doc = self.reading(ints=ints)
            value, expect = mutate(doc) if mutate else (doc, doc)
            out.append(Rec(i, key, value, ts, {k: expect[k] for k in [TAG, *FIELDS]}))
        return out


def expected_point(doc: dict) -> dict:
    return {TAG: doc[TAG], **{f: float(doc[f]) for f in FIELDS}}


# --- producing --------------------------------------------------------------------------------

def registry_client(registry: SchemaRegistryStandIn, auth: dict | None = None) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url, **(auth or {})})


def avro_serializer(client, schema: str = AVSC, header: bool = False) -> AvroSerializer:
    conf = {"schema.id.serializer": header_schema_id_serializer} if header else {}
    return AvroSerializer(client, schema, conf=conf)


def json_serializer(client, schema: str = JSON_SCHEMA, header: bool = False) -> JSONSerializer:
    conf = {"schema.id.serializer": header_schema_id_serializer} if header else {}
    return JSONSerializer(schema, client, conf=conf)


def _delivered(rec: Rec, errors: list):
    def cb(err, msg):
        if err is not None:
            errors.append((rec.index, err))
            return
        rec.partition, rec.offset = msg.partition(), msg.offset()
        rec.produced = msg.value()
    return cb


def produce(kafka: str, topic: str, records: list[Rec], serializer=None) -> None:
    """With a serializer: SerializingProducer (uuid4 string keys, like the source scenario);
    without: a plain Producer writing the records' bytes as they are. A record whose partition is
    set already goes to that partition; the others are placed by their key."""
    base = {"bootstrap.servers": kafka, "acks": "all", "linger.ms": 5}
    errors: list = []
    if serializer is not None:
        producer = SerializingProducer({**base, "key.serializer": StringSerializer("utf_8"),
                                        "value.serializer": serializer})
    else:
        producer = Producer(base)
    for r in records:
        # header_schema_id_serializer appends to the headers list: it must exist.
        headers = [(ORIGIN_HEADER, str(r.index).encode()), *r.headers]
        key = r.key if serializer is not None else r.key.encode()
        to = {} if r.partition is None else {"partition": r.partition}  # a partition set beforehand
        producer.produce(topic, key=key, value=r.value, timestamp=r.timestamp_ms, headers=headers,
                         on_delivery=_delivered(r, errors), **to)
        r.produced_headers = headers  # with the serializer's schema-id header, if it added one
        producer.poll(0)
    assert producer.flush(30) == 0, "records still undelivered after 30 s"
    assert not errors, f"delivery failed: {errors[:3]}"


def serialize(serializer, topic: str, rec: Rec) -> None:
    """Serializes rec.value now (the schema is registered now), keeping the bytes and headers for a
    plain producer later: how a record named by a schema the sink has not fetched yet is made."""
    headers: list = []
    rec.value = serializer(rec.value, SerializationContext(topic, MessageField.VALUE, headers))
    rec.headers = headers


def end_offsets_of(records: list[Rec], partitions: int = PARTITIONS) -> dict[int, int]:
    ends = {p: 0 for p in range(partitions)}
    for r in records:
        ends[r.partition] = max(ends[r.partition], r.offset + 1)
    assert all(ends.values()), f"some partition got no record: {ends}"
    return ends


# --- checking ---------------------------------------------------------------------------------

def points(influx, database: str) -> dict[tuple[str, int], dict]:
    rows = influx.query(database, f'SELECT * FROM "{MEASUREMENT}"')
    out = {}
    for row in rows:
        k = (row[TAG], row["time"])
        assert k not in out, f"two points for {k}"
        out[k] = row
    return out


def assert_points_exact(influx, database: str, records: list[Rec]) -> None:
    """InfluxDB holds one point per expected record, with exactly the produced values (InfluxDB
    1.6.7 writes the float 400.0 as `400` in JSON, so values are compared as floats), and nothing
    else."""
    got = points(influx, database)
    want = {(r.expect[TAG], r.timestamp_ms): r for r in records if r.expect is not None}
    problems = []
    for k, r in want.items():
        row = got.get(k)
        if row is None:
            problems.append(f"record #{r.index} ({k}) at {r.partition}@{r.offset}: no point")
            continue
        for f in FIELDS:
            v = row.get(f)
            if v is None or isinstance(v, str) or float(v) != float(r.expect[f]):
                problems.append(f"record #{r.index} ({k}): {f} = {v!r}, wanted {float(r.expect[f])!r}")
    extra = sorted(set(got) - set(want))
    problems += [f"unexpected point {k}: {got[k]}" for k in extra[:10]]
    assert not problems, (f"{len(got)} points for {len(want)} expected records; {len(problems)} problems:\n"
                          + "\n".join(problems[:30]))
    types = influx.field_types(database)
    assert types == {f: "float" for f in FIELDS}, f"field keys of {MEASUREMENT}: {types}"


def dlq_headers(letter: dict) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in letter["headers"]}


def assert_dead_letters(kafka: str, topic: str, records: list[Rec]) -> list[dict]:
    """The topic's DLQ holds exactly the records expected there (by source position), each with
    its original key, bytes and headers and the expected reason."""
    letters = read_topic(kafka, f"{topic}.dlq")
    want = {(r.partition, r.offset): r for r in records if r.expect is None}
    seen = {}
    problems = []
    for letter in letters:
        h = dlq_headers(letter)
        pos = (int(h.get(DLQ_PREFIX + "partition", -1)), int(h.get(DLQ_PREFIX + "offset", -1)))
        reason = h.get(DLQ_PREFIX + "exception.class.name")
        summary = (f"{pos}: stage {h.get(DLQ_PREFIX + 'stage')!r} reason {reason!r}: "
                   f"{h.get(DLQ_PREFIX + 'exception.message')!r}")
        if h.get(DLQ_PREFIX + "topic") != topic:
            problems.append(f"dead letter from topic {h.get(DLQ_PREFIX + 'topic')!r}, wanted {topic!r}: {summary}")
        r = want.get(pos)
        if r is None:
            problems.append(f"unexpected dead letter {summary}")
            continue
        seen[pos] = letter
        if reason != r.reason or h.get(DLQ_PREFIX + "stage") != r.stage:
            problems.append(f"record #{r.index}: {summary}; wanted stage {r.stage!r} reason {r.reason!r}")
        if letter["value"] != r.produced:
            problems.append(f"record #{r.index}: value {letter['value'][:40]!r}, wanted the original "
                            f"{r.produced[:40]!r}")
        if letter["key"] != r.key.encode():
            problems.append(f"record #{r.index}: key {letter['key']!r}, wanted {r.key!r}")
        original = [hv for hv in letter["headers"] if not hv[0].startswith(DLQ_PREFIX)]
        if original != r.produced_headers:
            problems.append(f"record #{r.index}: headers {original!r}, wanted {r.produced_headers!r}")
    problems += [f"record #{want[p].index} at {p} ({want[p].reason}) not dead-lettered"
                 for p in sorted(set(want) - set(seen))]
    assert not problems, f"{topic}.dlq: {len(letters)} dead letters; problems:\n" + "\n".join(problems[:30])
    return letters


def sink_fetches(registry: SchemaRegistryStandIn) -> dict[str, int]:
    """{path: count} of the schema fetches the registry answered normally (200, no fault)."""
    counts: dict[str, int] = {}
    for r in registry.requests(method="GET", prefix="/schemas/"):
        if r["status"] == 200 and r["fault"] == "none":
            counts[r["path"]] = counts.get(r["path"], 0) + 1
    return counts


def assert_fetched_once(registry: SchemaRegistryStandIn, ids=(), guids=()) -> None:
    """The sink asked for each schema it needed exactly once and for nothing else (the log must
    have been cleared after producing: the serializers' own requests are not the sink's)."""
    want = {f"/schemas/ids/{i}": 1 for i in ids}
    want.update({f"/schemas/guids/{g}": 1 for g in guids})
    got = sink_fetches(registry)
    assert got == want, (f"schema fetches answered by the registry: {got}, wanted each needed schema once: {want}; "
                         "all requests: "
                         f"{[(r['method'], r['path'], r['status'], r['fault']) for r in registry.requests()]}")


def wait_for_fetch_attempts(registry, path: str, n: int, sink, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        sink.assert_alive()
        if len(registry.requests(method="GET", path=path)) >= n:
            return
        assert time.monotonic() < deadline, (
            f"the sink made fewer than {n} requests for {path} in {timeout}s: {registry.requests()}")
        time.sleep(0.2)


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
def registry():
    with SchemaRegistryStandIn() as standin:
        yield standin


@dataclass
class Setup:
    topic: str
    group: str
    database: str


@pytest.fixture
def setup(kafka, influx_db) -> Setup:
    topic = unique("e2e-sr")
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    return Setup(topic, unique("e2e-sr-group"), influx_db("e2e_sr"))


def overrides(s: Setup, registry: SchemaRegistryStandIn, extra: dict[str, str] | None = None) -> dict[str, str]:
    return sink_overrides(topic=s.topic, group=s.group, database=s.database, extra={
        "KIS_SCHEMA_REGISTRY__URL": registry.url, **FAST, **(extra or {})})


def run_to_end(kafka, make_sink, s: Setup, registry, records: list[Rec], name: str, extra=None) -> None:
    ends = end_offsets_of(records)
    registry.clear_requests()  # from here on, every registry request is the sink's
    with make_sink(overrides(s, registry, extra), name=name) as sink:
        wait_for_commits(kafka, s.group, s.topic, ends, sink, timeout=COMMIT_TIMEOUT)


# --- tests ------------------------------------------------------------------------------------

def test_json_schema_records_land_with_exact_values(kafka, influx, make_sink, setup, registry):
    """JSONSerializer (prefix form, schema generator.schema.json) mixed with plain JSON records:
    format auto tells them apart per record."""
    stream = Stream(1)
    framed = stream.records(240, ints=True)
    plain = stream.records(40, ints=True, mutate=lambda d: (json.dumps(d).encode(), d))
    client = registry_client(registry)
    produce(kafka, setup.topic, framed[:120], json_serializer(client))
    produce(kafka, setup.topic, plain)
    produce(kafka, setup.topic, framed[120:], json_serializer(client))
    sid = registry.registry.lookup(f"{setup.topic}-value", JSON_SCHEMA, "JSON").schema.id
    assert {r.produced[:5] for r in framed} == {b"\x00" + struct.pack(">I", sid)}
    records = framed + plain
    for r in records:
        r.expect = expected_point(r.expect)

    run_to_end(kafka, make_sink, setup, registry, records, "json")

    assert_points_exact(influx, setup.database, records)
    assert_dead_letters(kafka, setup.topic, records)
    assert_fetched_once(registry, ids=[sid])


def test_avro_records_prefix_and_header_forms_land_with_exact_values(kafka, influx, make_sink, setup, registry):
    """AvroSerializer in the prefix form and in the header form (GUID), and JSONSerializer in the
    header form, into one topic. No local Avro schema: records are read with their writer schema,
    including a later version whose fuel is a 32-bit float (it must read back as that float)."""
    stream = Stream(2)
    client = registry_client(registry)
    avro_prefix = stream.records(150)
    avro_header = stream.records(100)
    json_header = stream.records(60, ints=True)
    avro_float = stream.records(50, mutate=lambda d: (dict(d, status=None), dict(d, fuel=f32(d["fuel"]))))
    # Different subjects: TopicNameStrategy would put the JSON Schema under the Avro subject.
    json_client_conf = {"subject.name.strategy": lambda ctx, name: f"{ctx.topic}-json-value"}
    json_ser = JSONSerializer(JSON_SCHEMA, client, conf={"schema.id.serializer": header_schema_id_serializer,
                                                        **json_client_conf})
    produce(kafka, setup.topic, avro_prefix[:75], avro_serializer(client))
    produce(kafka, setup.topic, avro_header, avro_serializer(client, header=True))
    produce(kafka, setup.topic, json_header, json_ser)
    produce(kafka, setup.topic, avro_prefix[75:], avro_serializer(client))
    produce(kafka, setup.topic, avro_float, avro_serializer(client, AVRO_V2))

    avro = registry.registry.lookup(f"{setup.topic}-value", AVSC, "AVRO").schema
    avro2 = registry.registry.lookup(f"{setup.topic}-value", AVRO_V2, "AVRO").schema
    js = registry.registry.lookup(f"{setup.topic}-json-value", JSON_SCHEMA, "JSON").schema
    for r in avro_prefix:
        assert r.produced[:5] == b"\x00" + struct.pack(">I", avro.id)
        assert SCHEMA_ID_HEADER not in dict(r.produced_headers)
    for group, schema in ((avro_header, avro), (json_header, js)):
        for r in group:
            assert dict(r.produced_headers)[SCHEMA_ID_HEADER] == b"\x01" + uuid.UUID(schema.guid).bytes
            assert r.produced[:1] != b"\x00", "the header form leaves the payload unprefixed"
    records = avro_prefix + avro_header + json_header + avro_float
    for r in records:
        r.expect = expected_point(r.expect)

    run_to_end(kafka, make_sink, setup, registry, records, "avro")

    assert_points_exact(influx, setup.database, records)
    assert_dead_letters(kafka, setup.topic, records)
    # The prefix form names the Avro schema by id, the header form by GUID: one fetch per key.
    assert_fetched_once(registry, ids=[avro.id, avro2.id], guids=[avro.guid, js.guid])


def test_schema_changes_mid_stream(kafka, influx, make_sink, setup, registry):
    """Producers register new versions while the sink runs: Avro v2 (new optional field, fuel as
    float) and v3 (also int and long writer fields) resolved to the local reader schema
    generator.avsc; JSON v2 with new optional properties. Nothing is dead-lettered."""
    json_topic = unique("e2e-sr-json")
    create_topic(kafka, json_topic, PARTITIONS)
    create_topic(kafka, f"{json_topic}.dlq", 1)
    stream = Stream(3)
    client = registry_client(registry)
    subject = f"{setup.topic}-value"

    def v2(d):
        d = dict(d, fuel=d["fuel"] if d["fuel"] > 1e-30 else 0.5)  # 1e-300 is 0 as a float32
        return dict(d, status="ok"), dict(d, fuel=f32(d["fuel"]))

    def v3(d):
        d = dict(d, fuel=d["fuel"] if d["fuel"] > 1e-30 else 0.5, temperature=int(d["temperature"]),
                 pressure=int(d["pressure"] * 1000))
        return dict(d, status="running", rpm=1500), dict(d, fuel=f32(d["fuel"]))

    def jv2(d):
        return dict(d, status="ok", rpm=1500), d

    avro1, json1 = stream.records(100), stream.records(80, ints=True)
    produce(kafka, setup.topic, avro1, avro_serializer(client))
    produce(kafka, json_topic, json1, json_serializer(client))
    registry.clear_requests()
    extra = {"KIS_KAFKA__TOPICS": env_list([setup.topic, json_topic]),
             "KIS_SCHEMA__AVRO_SCHEMA_FILE": str(AVSC_FILE)}
    with make_sink(overrides(setup, registry, extra), name="evolution") as sink:
        wait_for_commits(kafka, setup.group, setup.topic, end_offsets_of(avro1), sink, timeout=COMMIT_TIMEOUT)
        wait_for_commits(kafka, setup.group, json_topic, end_offsets_of(json1), sink, timeout=COMMIT_TIMEOUT)

        avro2, json2 = stream.records(100, mutate=v2), stream.records(80, ints=True, mutate=jv2)
        produce(kafka, setup.topic, avro2, avro_serializer(client, AVRO_V2))
        produce(kafka, json_topic, json2, json_serializer(client, JSON_V2))
        avro3 = stream.records(100, mutate=v3)
        produce(kafka, setup.topic, avro3, avro_serializer(client, AVRO_V3))
        avro = avro1 + avro2 + avro3
        wait_for_commits(kafka, setup.group, setup.topic, end_offsets_of(avro), sink, timeout=COMMIT_TIMEOUT)
        wait_for_commits(kafka, setup.group, json_topic, end_offsets_of(json1 + json2), sink,
                         timeout=COMMIT_TIMEOUT)

    assert [v.version for v in registry.registry.subjects[subject]] == [1, 2, 3]
    ids = {r.produced[1:5] for r in avro} | {r.produced[1:5] for r in json1 + json2}
    assert len(ids) == 5, f"5 schemas (Avro v1-v3, JSON v1-v2) should frame the records: {ids}"
    records = avro + json1 + json2
    for r in records:
        r.expect = expected_point(r.expect)
    assert_points_exact(influx, setup.database, records)
    assert_dead_letters(kafka, setup.topic, avro)
    assert_dead_letters(kafka, json_topic, json1 + json2)
    assert_fetched_once(registry, ids=sorted(struct.unpack(">I", i)[0] for i in ids))


def test_registry_outage_holds_records_back_and_loses_nothing(kafka, influx, make_sink, setup, registry):
    """Records naming a schema the sink has not fetched yet arrive while the registry answers
    503, refuses connections, or answers slower than the sink's timeout. Meanwhile nothing is
    written, dead-lettered or committed, and the sink stays alive; afterwards everything lands."""
    stream = Stream(4)
    client = registry_client(registry)
    first = stream.records(100)
    produce(kafka, setup.topic, first, avro_serializer(client))
    records = list(first)
    registry.clear_requests()
    extra = {"KIS_SCHEMA__AVRO_SCHEMA_FILE": str(AVSC_FILE)}
    with make_sink(overrides(setup, registry, extra), name="outage") as sink:
        wait_for_commits(kafka, setup.group, setup.topic, end_offsets_of(records), sink, timeout=COMMIT_TIMEOUT)
        assert influx.count(setup.database) == len(records)

        def schema_v(n: int) -> str:  # a new version: fuel as float, a new field with a default
            return avro_schema(extra_fields=[{"name": f"extra{n}", "type": "int", "default": 0}],
                               types={"fuel": "float"})

        def v(n: int):
            def mutate(d):
                d = dict(d, fuel=d["fuel"] if d["fuel"] > 1e-30 else 0.5)
                return dict(d, **{f"extra{n}": n}), dict(d, fuel=f32(d["fuel"]))
            return mutate

        outages = [
            ("503", lambda: registry.set_fault("unavailable"), lambda: registry.set_fault("none")),
            ("connection refused", registry.stop, registry.start),
            ("slower than timeout_ms", lambda: registry.set_fault("slow", delay_ms=2500),
             lambda: registry.set_fault("none")),
        ]
        for n, (what, begin, end) in enumerate(outages, start=2):
            batch = stream.records(60, mutate=v(n))
            ser = avro_serializer(client, schema_v(n))
            for r in batch:
                serialize(ser, setup.topic, r)  # registers the new version while the registry is up
            sid = struct.unpack(">I", batch[0].value[1:5])[0]
            assert sid not in {struct.unpack(">I", r.produced[1:5])[0] for r in records}
            committed_before = committed_offsets(kafka, setup.group, setup.topic)
            count_before = influx.count(setup.database)
            begin()
            try:
                produce(kafka, setup.topic, batch)
                deadline = time.monotonic() + OUTAGE_SECONDS
                if what != "connection refused":  # the sink asks, and asks again
                    wait_for_fetch_attempts(registry, f"/schemas/ids/{sid}", 2, sink, timeout=15)
                    deadline = max(deadline, time.monotonic() + 1)
                while time.monotonic() < deadline:
                    sink.assert_alive()
                    assert influx.count(setup.database) == count_before, f"points written during the {what} outage"
                    time.sleep(0.5)
                assert committed_offsets(kafka, setup.group, setup.topic) == committed_before, (
                    f"offsets committed during the {what} outage")
                assert read_topic(kafka, f"{setup.topic}.dlq") == [], f"dead letters during the {what} outage"
            finally:
                end()
            records += batch
            wait_for_commits(kafka, setup.group, setup.topic, end_offsets_of(records), sink, timeout=COMMIT_TIMEOUT)
            assert influx.count(setup.database) == len(records), f"after the {what} outage"

    for r in records:
        r.expect = expected_point(r.expect)
    assert_points_exact(influx, setup.database, records)
    assert_dead_letters(kafka, setup.topic, records)
    fetched = sink_fetches(registry)
    assert fetched == {f"/schemas/ids/{i}": 1 for i in range(1, 5)}, fetched


# --- a registry outage with rebalances in the middle of it ------------------------------------

REBALANCE_PARTITIONS = 4
# Committed offsets are read this often while the outage lasts; InfluxDB every INFLUX_EVERY.
COMMIT_POLL_SECONDS = 0.25
INFLUX_EVERY = 1.0


def log_events(sink: Sink) -> list[dict]:
    """The sink's JSON log lines (the sink logs JSON when its output is not a terminal)."""
    events = []
    for line in sink.log_text().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def ownership(sink: Sink) -> tuple[int, set[int] | None]:
    """(how many "partitions assigned" events the sink logged, the partitions it owns according to
    its log: None after a revocation; with the default eager strategy a revocation takes all)."""
    assigned, owned = 0, None
    for e in log_events(sink):
        msg = str(e.get("message", ""))
        if msg == "partitions assigned":
            assigned += 1
            owned = {int(p) for p in re.findall(r"\[(\d+)\]", str(e.get("partitions", "")))}
        elif msg.startswith("partitions revoked"):
            owned = None
    return assigned, owned


def paused_for_schema(sink: Sink) -> bool:
    return any(str(e.get("message", "")).startswith("partitions paused") and "Schema Registry" in str(e.get("why"))
               for e in log_events(sink))


def held_let_go(sink: Sink) -> int:
    """Held records the sink let go because their partition had moved to another member."""
    return sum(int(e.get("released", 0)) for e in log_events(sink)
               if str(e.get("message", "")).startswith("held records of revoked partitions let go"))


class OutageWatch(threading.Thread):
    """While the outage lasts: the group's committed offsets every COMMIT_POLL_SECONDS, which must
    never pass `bound` (per partition, the offset of the first record waiting for its schema), and
    InfluxDB's points every INFLUX_EVERY, which must all be among `allowed` (the records before the
    waiting ones)."""

    def __init__(self, kafka: str, group: str, topic: str, bound: dict[int, int], influx, database: str,
                 allowed: set[tuple[str, int]]):
        super().__init__(name="outage-watch", daemon=True)
        self.kafka, self.group, self.topic, self.bound = kafka, group, topic, bound
        self.influx, self.database, self.allowed = influx, database, allowed
        self.commit_samples = 0
        self.influx_samples = 0
        self.highest: dict[int, int] = {}
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.start_at = time.monotonic()

    def run(self) -> None:
        influx_due = 0.0
        while not self.stopping.is_set():
            at = time.monotonic() - self.start_at
            try:
                committed = committed_offsets(self.kafka, self.group, self.topic)
                self.commit_samples += 1
                for p, off in sorted(committed.items()):
                    if off is None:
                        continue
                    self.highest[p] = max(self.highest.get(p, 0), off)
                    if off > self.bound[p]:
                        self.violations.append(f"{at:.1f}s: committed {off} on [{p}], past the first record "
                                               f"waiting for its schema at offset {self.bound[p]}")
                if at >= influx_due:
                    influx_due = at + INFLUX_EVERY
                    rows = self.influx.query(self.database, f'SELECT "fuel", "{TAG}" FROM "{MEASUREMENT}"')
                    self.influx_samples += 1
                    written = {(r[TAG], r["time"]) for r in rows} - self.allowed
                    if written:
                        self.violations.append(f"{at:.1f}s: {len(written)} records at or behind a waiting record "
                                               f"written to InfluxDB, e.g. {sorted(written)[:3]}")
            except Exception as exc:  # noqa: BLE001  (a slow answer skips one sample; reported)
                self.errors.append(f"{at:.1f}s: {type(exc).__name__}: {exc}")
            self.stopping.wait(COMMIT_POLL_SECONDS)


def test_registry_outage_with_rebalances_loses_nothing(kafka, influx, influx_db, make_sink, registry):
    """A registry outage with rebalances in the middle of it. One group, 4 partitions:

      * sink A alone writes 100 Avro v1 records (it fetches v1), then the registry answers 503;
      * during the outage: 4 more v1 records per partition, which A writes and commits (its schema
        is cached: records before a waiting one go on as usual), then 20 records per partition of a
        v2 no sink has fetched, then 6 v1 records per partition behind them. A holds the first v2
        record, stops reading and pauses its partitions;
      * sink B joins (rebalance: B starts from the committed offsets and, having fetched nothing,
        waits too); once the group is stable, A (the leader) gets SIGTERM while its record waits
        and exits 0 (rebalance: B owns every partition); sink C joins (rebalance: two partitions
        move from B to C, whose held records B must let go);
      * the registry answers again.

    While the outage lasts, the committed offsets are polled: they never pass the first record
    waiting for its schema in each partition, and InfluxDB never holds a record at or behind it.
    At the end: every record in InfluxDB exactly once with exact values, nothing dead-lettered,
    committed offsets equal end offsets, no sink crashed or panicked (A, B and C exit 0 on SIGTERM).
    """
    began = time.monotonic()
    parts = REBALANCE_PARTITIONS
    topic = unique("e2e-sr-rebal")
    create_topic(kafka, topic, parts)
    create_topic(kafka, f"{topic}.dlq", 1)
    s = Setup(topic, unique("e2e-sr-rebal-group"), influx_db("e2e_sr"))
    stream = Stream(9)
    client = registry_client(registry)
    events: list[tuple[float, str]] = []

    def note(what: str) -> None:
        events.append((round(time.monotonic() - began, 1), what))

    def spread(records: list[Rec]) -> list[Rec]:
        for i, r in enumerate(records):
            r.partition = i % parts
        return records

    def v2(d):  # fuel written as a 32-bit float, a new field with a default
        d = dict(d, fuel=d["fuel"] if d["fuel"] > 1e-30 else 0.5)
        return dict(d, extra2=2), dict(d, fuel=f32(d["fuel"]))

    schema_v2 = avro_schema(extra_fields=[{"name": "extra2", "type": "int", "default": 0}], types={"fuel": "float"})
    warm = spread(stream.records(25 * parts))
    produce(kafka, topic, warm, avro_serializer(client))
    before = spread(stream.records(4 * parts))  # v1, during the outage, ahead of the waiting records
    waiting = spread(stream.records(20 * parts, mutate=v2))  # v2: fetched by no sink yet
    behind = spread(stream.records(6 * parts))  # v1 again, behind the waiting records
    ser_v1, ser_v2 = avro_serializer(client), avro_serializer(client, schema_v2)
    for r in before + behind:
        serialize(ser_v1, topic, r)  # while the registry is up (v1 is the client's cached id anyway)
    for r in waiting:
        serialize(ser_v2, topic, r)  # registers v2 now
    v1_id = struct.unpack(">I", warm[0].produced[1:5])[0]
    v2_id = struct.unpack(">I", waiting[0].value[1:5])[0]
    assert v1_id != v2_id and {struct.unpack(">I", r.value[1:5])[0] for r in before + behind} == {v1_id}
    registry.clear_requests()  # from here on, every registry request is a sink's

    sink_env = overrides(s, registry, {"KIS_SCHEMA__AVRO_SCHEMA_FILE": str(AVSC_FILE)})
    sinks: dict[str, Sink] = {}
    running: dict[str, Sink] = {}
    watch: OutageWatch | None = None

    def start(name: str) -> Sink:
        sink = make_sink(sink_env, name=f"sr-rebal-{name}").start()
        sinks[name] = running[name] = sink
        note(f"start {name}")
        return sink

    def wait_for(ready, what: str, timeout: float = 20.0):
        """Waits for ready() while every running sink stays alive and the watch sees nothing wrong."""
        deadline = time.monotonic() + timeout
        while True:
            for sink in running.values():
                sink.assert_alive()
            assert watch is None or not watch.violations, f"during the outage: {watch.violations[:5]}"
            result = ready()
            if result:
                return result
            assert time.monotonic() < deadline, (
                f"not within {timeout}s: {what}; events {events}\n"
                + "\n".join(f"--- {n} ---\n{sk.log_tail(20)}" for n, sk in running.items()))
            time.sleep(0.1)

    def rebalanced(counts: dict[str, int]) -> dict[str, set[int]] | None:
        """Every running member was (re)assigned since `counts` (its assignments counted before the
        change) and the members' partitions split the topic between them: the rebalance is over."""
        owned = {}
        for n, sink in running.items():
            assigned, parts_owned = ownership(sink)
            if assigned <= counts.get(n, 0) or parts_owned is None:
                return None
            owned[n] = parts_owned
        flat = [p for ps in owned.values() for p in ps]
        if sorted(flat) != list(range(parts)):
            return None
        return owned

    def assignment_counts() -> dict[str, int]:
        return {n: ownership(sink)[0] for n, sink in running.items()}

    a = start("A")
    try:
        wait_for_commits(kafka, s.group, topic, end_offsets_of(warm, parts), a, timeout=COMMIT_TIMEOUT)
        note("A wrote and committed the warm-up records")

        registry.set_fault("unavailable")
        note("registry outage begins (503)")
        produce(kafka, topic, before)
        bound = end_offsets_of(warm + before, parts)  # the first waiting record of each partition
        allowed = {(r.expect[TAG], r.timestamp_ms) for r in warm + before}
        watch = OutageWatch(kafka, s.group, topic, bound, influx, s.database, allowed)
        watch.start()
        wait_for_commits(kafka, s.group, topic, bound, a, timeout=COMMIT_TIMEOUT)
        note("A wrote and committed the v1 records produced during the outage")
        produce(kafka, topic, waiting)
        produce(kafka, topic, behind)
        first_waiting = {p: min(r.offset for r in waiting if r.partition == p) for p in range(parts)}
        assert first_waiting == bound, f"first v2 offsets {first_waiting}, wanted {bound}"
        wait_for_fetch_attempts(registry, f"/schemas/ids/{v2_id}", 2, a, timeout=15)
        wait_for(lambda: paused_for_schema(a), "A paused its partitions waiting for the schema")
        note("A holds a v2 record and paused its partitions")

        counts = assignment_counts()
        b = start("B")
        owned = wait_for(lambda: rebalanced(counts), "A and B assigned after B joined", timeout=30)
        note(f"group stable with A and B: {owned}")
        wait_for(lambda: paused_for_schema(b), "B paused its partitions waiting for a schema")
        note("B waits for a schema too")
        time.sleep(1.0)

        # A (the first member: the leader) leaves a stable group, which Tansu handles; leaving
        # during a join phase would wedge the group (see test_rebalance.py).
        counts = assignment_counts()
        stopping = time.monotonic()
        running.pop("A").stop(timeout=30)  # SIGTERM: exit code 0 asserted
        note(f"SIGTERM A while its record waited: exit 0 after {time.monotonic() - stopping:.1f}s")
        owned = wait_for(lambda: rebalanced(counts), "B owns every partition after A left", timeout=30)
        note(f"group stable with B alone: {owned}")
        time.sleep(1.0)  # B receives a record of each partition it just got, holds it, pauses it

        counts = assignment_counts()
        c = start("C")
        owned = wait_for(lambda: rebalanced(counts), "B and C assigned after C joined", timeout=30)
        note(f"group stable with B and C: {owned}")
        moved_to_c = owned["C"]
        wait_for(lambda: paused_for_schema(c), "C paused its partitions waiting for a schema")
        note("C waits for a schema too")
        time.sleep(1.5)

        watch.stopping.set()
        watch.join(30)
        for sink in running.values():
            sink.assert_alive()
        last = committed_offsets(kafka, s.group, topic)
        assert last == bound, f"at the end of the outage committed {last}, wanted {bound} (the first waiting records)"
        assert influx.count(s.database) == len(warm) + len(before), "points written during the outage"
        assert read_topic(kafka, f"{topic}.dlq") == [], "dead letters during the outage"
        outage_fetches = len(registry.requests(method="GET", prefix="/schemas/"))
    finally:
        if watch is not None:
            watch.stopping.set()
        registry.set_fault("none")
    note("registry answers again")

    records = warm + before + waiting + behind
    ends = end_offsets_of(records, parts)
    wait_for_commits(kafka, s.group, topic, ends, list(running.values()), timeout=COMMIT_TIMEOUT)
    note("committed == end offsets")
    # One at a time, the next one once the group is stable again (no member leaves during a join).
    while running:
        name = next(iter(running))
        counts = assignment_counts()
        running.pop(name).stop(timeout=30)  # SIGTERM: exit code 0 asserted
        note(f"SIGTERM {name} (exit 0)")
        if running:
            wait_for(lambda: rebalanced(counts), f"the rest of the group reassigned after {name} left", timeout=30)

    summary = {
        "duration_s": round(time.monotonic() - began, 1),
        "events": events,
        "bound": bound, "end_offsets": ends,
        "commit_samples": watch.commit_samples, "influx_samples": watch.influx_samples,
        "highest_committed_during_outage": watch.highest, "watch_errors": watch.errors,
        "registry_requests_during_outage": outage_fetches,
        "fetched": sink_fetches(registry),
        "let_go": {n: held_let_go(sk) for n, sk in sinks.items()},
        "assignments": {n: ownership(sk)[0] for n, sk in sinks.items()},
    }
    print("\nSR-REBALANCE-SUMMARY " + json.dumps(summary, sort_keys=True))

    assert not watch.violations, "during the outage:\n" + "\n".join(watch.violations[:20])
    assert watch.commit_samples >= 20 and watch.influx_samples >= 5, (
        f"too few samples during the outage: {summary}")
    assert committed_offsets(kafka, s.group, topic) == ends
    for r in records:
        r.expect = expected_point(r.expect)
    assert_points_exact(influx, s.database, records)
    assert_dead_letters(kafka, topic, records)  # none expected: the DLQ must be empty
    for name, sink in sinks.items():
        text = sink.log_text()
        assert "panicked" not in text, f"sink {name} panicked:\n{sink.log_tail()}"
        assert ownership(sink)[0] >= 1, f"sink {name} was never assigned a partition"
    # The partitions that moved from B to C carried records B was holding: B let them go.
    assert held_let_go(sinks["B"]) >= 1, (f"B did not let go of the held records of {sorted(moved_to_c)}, "
                                          f"which moved to C: {summary}")
    # Each sink process fetches a schema at most once (A: v1; B and C: v1 and v2), only after the outage.
    fetched = sink_fetches(registry)
    assert set(fetched) == {f"/schemas/ids/{v1_id}", f"/schemas/ids/{v2_id}"}, fetched
    assert 1 <= fetched[f"/schemas/ids/{v1_id}"] <= 3 and 1 <= fetched[f"/schemas/ids/{v2_id}"] <= 2, fetched


def test_unknown_schema_and_bad_framed_records_are_dead_lettered(kafka, influx, make_sink, setup, registry):
    """A schema id and a GUID the registry does not have (404): those records are dead-lettered
    with reason UnknownSchema, their original bytes, key and headers. So are framed records whose
    schema is known but whose payload is wrong. The records around them are written."""
    stream = Stream(5)
    client = registry_client(registry)
    good = stream.records(200, ints=True)
    produce(kafka, setup.topic, good[:100], json_serializer(client))
    json_id = registry.registry.lookup(f"{setup.topic}-value", JSON_SCHEMA, "JSON").schema.id
    avro_id = registry.register(f"{setup.topic}-avro-value", AVSC, "AVRO")["id"]
    parsed_avsc = fastavro.parse_schema(json.loads(AVSC))

    def avro_bytes(doc: dict) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed_avsc, doc)
        return buf.getvalue()

    def prefix(schema_id: int) -> bytes:
        return b"\x00" + struct.pack(">I", schema_id)

    unknown_guid = uuid.uuid4()
    bad_values = [  # (value, headers, stage, reason)
        (prefix(4242) + b"{}", [], "decode", "UnknownSchema"),
        (prefix(avro_id + 1000) + b"\x0agen-1" + bytes(40), [], "decode", "UnknownSchema"),
        (b"{}", [(SCHEMA_ID_HEADER, b"\x01" + unknown_guid.bytes)], "decode", "UnknownSchema"),
        (prefix(json_id) + b'{"generatorID": "gen-1", "lat": 1', [], "decode", "InvalidJson"),
        (prefix(json_id) + b'{"generatorID": "gen-1", "lat": 1, "lon": 2, "temperature": 3, "pressure": 4}', [],
         "validate", "SchemaViolation"),
        (prefix(avro_id) + avro_bytes(stream.reading())[:12], [], "decode", "InvalidAvro"),
        (prefix(avro_id) + avro_bytes(dict(stream.reading(), lat=float("nan"))), [], "decode", "NonFiniteNumber"),
        (b'{"generatorID": "gen-1"}', [(SCHEMA_ID_HEADER, b"\x01\x02\x03")], "decode", "InvalidSchemaIdHeader"),
    ]
    bad = []
    for value, headers, stage, reason in bad_values:
        i, key, ts = stream.next()
        bad.append(Rec(i, key, value, ts, None, reason, stage, headers=headers))
    produce(kafka, setup.topic, bad)
    produce(kafka, setup.topic, good[100:], json_serializer(client))
    records = good + bad
    for r in good:
        r.expect = expected_point(r.expect)

    run_to_end(kafka, make_sink, setup, registry, records, "unknown")

    assert_points_exact(influx, setup.database, records)
    letters = assert_dead_letters(kafka, setup.topic, records)
    assert len(letters) == len(bad_values)
    not_found = {r["path"] for r in registry.requests(method="GET", prefix="/schemas/") if r["status"] == 404}
    assert not_found == {"/schemas/ids/4242", f"/schemas/ids/{avro_id + 1000}", f"/schemas/guids/{unknown_guid}"}
    assert_fetched_once(registry, ids=[json_id, avro_id])


def test_each_schema_is_fetched_once(kafka, influx, make_sink, setup, registry):
    """Many small batches over two partitions, two schemas by id and one by GUID: the sink asks the
    registry once per schema for the whole run (its cache), whatever the batching."""
    stream = Stream(6)
    client = registry_client(registry)
    a = stream.records(150, ints=True)
    b = stream.records(150, mutate=lambda d: (dict(d, status="x"), d))
    c = stream.records(100)
    produce(kafka, setup.topic, a, json_serializer(client))
    produce(kafka, setup.topic, b, avro_serializer(client, avro_schema(
        extra_fields=[{"name": "status", "type": "string", "default": ""}])))
    produce(kafka, setup.topic, c, avro_serializer(registry_client(registry), AVSC, header=True))
    records = a + b + c
    for r in records:
        r.expect = expected_point(r.expect)
    ids = sorted({struct.unpack(">I", r.produced[1:5])[0] for r in a + b})
    guids = sorted({str(uuid.UUID(bytes=dict(r.produced_headers)[SCHEMA_ID_HEADER][1:])) for r in c})
    assert len(ids) == 2 and len(guids) == 1

    run_to_end(kafka, make_sink, setup, registry, records, "cache",
               extra={"KIS_BATCH__MAX_RECORDS": "20", "KIS_BATCH__LINGER_MS": "10"})

    assert_points_exact(influx, setup.database, records)
    assert_dead_letters(kafka, setup.topic, records)
    assert_fetched_once(registry, ids=ids, guids=guids)


def test_schemas_with_references(kafka, influx, make_sink, setup, registry):
    """Writer schemas that reference other subjects' schemas (Avro: a named record type; JSON
    Schema: a `$ref` to another document), registered and used by the real serializers: the sink
    follows the references (`GET /subjects/{subject}/versions/{version}`) and writes exact values."""
    stream = Stream(8)
    client = registry_client(registry)
    site_subject, site_json_subject = f"{setup.topic}-site", f"{setup.topic}-site-json"
    site_avro = {"type": "record", "name": "Site", "namespace": "io.kafka_influx_sink.generator",
                 "fields": [{"name": "name", "type": "string"}, {"name": "floor", "type": "int"}]}
    site_json = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                 "properties": {"name": {"type": "string"}, "floor": {"type": "integer"}},
                 "required": ["name"]}
    site_version = registry_client(registry).register_schema_full_response(
        site_subject, Schema(json.dumps(site_avro), "AVRO")).version
    site_json_version = registry_client(registry).register_schema_full_response(
        site_json_subject, Schema(json.dumps(site_json), "JSON")).version
    avro_with_ref = avro_schema(extra_fields=[{"name": "site", "type": "io.kafka_influx_sink.generator.Site"}])
    json_with_ref = json_schema(extra_properties={"site": {"$ref": "site.json"}})
    avro_records = stream.records(120, mutate=lambda d: (dict(d, site={"name": "north", "floor": 2}), d))
    json_records = stream.records(80, ints=True, mutate=lambda d: (dict(d, site={"name": "south", "floor": 1}), d))
    avro_ser = AvroSerializer(client, Schema(avro_with_ref, "AVRO", [SchemaReference(
        "io.kafka_influx_sink.generator.Site", site_subject, site_version)]))
    json_ser = JSONSerializer(Schema(json_with_ref, "JSON", [SchemaReference(
        "site.json", site_json_subject, site_json_version)]), client,
        conf={"subject.name.strategy": lambda ctx, name: f"{ctx.topic}-json-value"})
    produce(kafka, setup.topic, avro_records, avro_ser)
    produce(kafka, setup.topic, json_records, json_ser)
    ids = sorted({struct.unpack(">I", r.produced[1:5])[0] for r in avro_records + json_records})
    assert len(ids) == 2
    for i in ids:
        assert registry.registry.by_id(str(i)).references, "the serializers registered the references"
    # Valid for the main document, not for the referenced one (site without its required name):
    # proves the reference is resolved and applied, not ignored.
    i, key, ts = stream.next()
    bad_site = Rec(i, key, json_records[0].produced[:5] + json.dumps(
        dict(stream.reading(), site={"floor": 3})).encode(), ts, None, "SchemaViolation", "validate")
    produce(kafka, setup.topic, [bad_site])
    records = avro_records + json_records + [bad_site]
    for r in avro_records + json_records:
        r.expect = expected_point(r.expect)

    run_to_end(kafka, make_sink, setup, registry, records, "references")

    assert_points_exact(influx, setup.database, records)
    assert_dead_letters(kafka, setup.topic, records)
    fetched = sink_fetches(registry)
    assert {p: n for p, n in fetched.items() if p.startswith("/schemas/")} == {f"/schemas/ids/{i}": 1 for i in ids}
    referenced = [r["path"] for r in registry.requests(method="GET", prefix="/subjects/")]
    assert sorted(referenced) == sorted([f"/subjects/{site_subject}/versions/{site_version}",
                                         f"/subjects/{site_json_subject}/versions/{site_json_version}"]), referenced


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_registry_authentication(kafka, influx, make_sink, setup, auth):
    """A registry that requires basic auth or a bearer token: the sink sends the configured
    credentials on every request."""
    if auth == "basic":
        standin = SchemaRegistryStandIn(basic_auth="sink-user:s3cret:with:colons")
        client_auth = {"basic.auth.user.info": "sink-user:s3cret:with:colons"}
        sink_auth = {"KIS_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": "sink-user:s3cret:with:colons"}
    else:
        standin = SchemaRegistryStandIn(bearer="tok-" + uuid.uuid4().hex)
        client_auth = {"bearer.auth.credentials.source": "STATIC_TOKEN", "bearer.auth.token": standin.bearer,
                       "bearer.auth.logical.cluster": "lsrc-e2e", "bearer.auth.identity.pool.id": "pool-e2e"}
        sink_auth = {"KIS_SCHEMA_REGISTRY__BEARER_TOKEN": standin.bearer}
    with standin:
        stream = Stream(7)
        records = stream.records(60, ints=True)
        produce(kafka, setup.topic, records, json_serializer(registry_client(standin, client_auth)))
        for r in records:
            r.expect = expected_point(r.expect)
        run_to_end(kafka, make_sink, setup, standin, records, f"auth-{auth}", extra=sink_auth)
        reqs = standin.requests()
    assert_points_exact(influx, setup.database, records)
    assert_dead_letters(kafka, setup.topic, records)
    assert reqs and all(r["authorization"] == auth and r["status"] == 200 for r in reqs), reqs


# --- HTTPS with a private CA ------------------------------------------------------------------

def make_certificates(directory) -> tuple[str, str, str]:
    """A private CA and a server certificate it signed for 127.0.0.1 (openssl): (ca, cert, key)."""
    ca_key, ca, key, csr, cert, ext = (str(directory / name) for name in
                                       ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem", "ext.cnf"))

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=kafka-influx-sink e2e CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    with open(ext, "w", encoding="utf-8") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
            "-days", "2", "-extfile", ext)
    return ca, cert, key


def test_registry_over_https_with_a_private_ca(kafka, influx, make_sink, setup, tmp_path):
    """A registry behind HTTPS with a certificate from a private CA. Without schema_registry.ca_file
    the sink cannot verify it: records wait (nothing written, committed or dead-lettered) and the
    sink says why. With ca_file it trusts the CA and everything lands."""
    ca, cert, key = make_certificates(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with SchemaRegistryStandIn(tls=tls) as standin:
        assert standin.url.startswith("https://127.0.0.1:")
        stream = Stream(8)
        records = stream.records(50, ints=True)
        client = registry_client(standin, {"ssl.ca.location": ca})
        produce(kafka, setup.topic, records, json_serializer(client))
        for r in records:
            r.expect = expected_point(r.expect)

        # Without the CA: the certificate is not trusted; the records wait.
        standin.clear_requests()  # from here on, every request is the sink's
        with make_sink(overrides(setup, standin), name="https-untrusted") as sink:
            deadline = time.monotonic() + 15
            while "certificate" not in sink.log_text().lower() and time.monotonic() < deadline:
                sink.assert_alive()
                time.sleep(0.25)
            log = sink.log_text()
            assert "certificate" in log.lower(), "the sink does not say why it cannot reach the registry:\n" + log
            time.sleep(2)
            sink.assert_alive()
            # Said once, not once per retry (the fetch was retried many times by now).
            log = sink.log_text()
            said = [line for line in log.splitlines() if "certificate" in line.lower()]
            assert len(said) == 1, "\n".join(said)
            assert len(standin.requests()) == 0  # no request got past the TLS handshake
            assert influx.count(setup.database) == 0
            assert read_topic(kafka, f"{setup.topic}.dlq") == []
            assert all(v is None for v in committed_offsets(kafka, setup.group, setup.topic).values())
            assert sink.stop() == 0

        # With the CA: everything lands, each schema fetched once over HTTPS.
        run_to_end(kafka, make_sink, setup, standin, records, "https-trusted",
                   extra={"KIS_SCHEMA_REGISTRY__CA_FILE": ca})
        fetched = sink_fetches(standin)
    assert_points_exact(influx, setup.database, records)
    assert_dead_letters(kafka, setup.topic, records)
    assert list(fetched.values()) == [1], fetched
