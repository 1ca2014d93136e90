"""End to end: Kafka (Tansu) -> kafka-influx-sink -> InfluxDB 1.6.7, with a dead-letter topic.

One data set of 10,000 records (about 1% invalid, about 10% of the valid ones in Confluent framing)
is produced once per module; the sink runs three times over it:
  1. first run (group A, DLQ `{topic}.dlq` from the default template): everything lands;
  2. same group A again: nothing new happens;
  3. replay with a new group B and a new DLQ topic: InfluxDB is rewritten idempotently and the new
     DLQ topic again holds exactly the invalid records.
"""

from __future__ import annotations

import json
import random
import struct
import time
import uuid
from dataclasses import dataclass, field

import pytest
from confluent_kafka import Producer

from conftest import (
    FAST_GROUP,
    committed_offsets,
    create_topic,
    end_offsets,
    influxql_string,
    read_topic,
    sink_overrides,
    unique,
    wait_for_commits,
)

SEED = 20241125
N_RECORDS = 10_000
N_INVALID = 100  # 1%
FRAMED_SHARE = 0.10  # of the valid records
PARTITIONS = 4
SAMPLE_SIZE = 50
COMMIT_TIMEOUT = 120.0
IDLE_SECONDS = 10.0

MEASUREMENT = "generator"
FIELDS = ["lat", "lon", "temperature", "pressure", "fuel"]
TAG = "generatorID"
ORIGIN_HEADER = "e2e-seq"  # on every source record; a DLQ record must keep its original headers

# Tag values that need escaping in line protocol (space, comma, equals sign), non-ASCII, quotes.
SPECIAL_IDS = ["gen 7 west", "gen,comma", "gen=equals", "générateur-ü-東", 'gen"dq', "gen'sq"]
GENERATOR_IDS = [f"gen-{i:03d}" for i in range(40)] + SPECIAL_IDS

# Invalid kinds -> DLQ stages accepted for them.
INVALID_KINDS = {
    "nan_literal": {"decode"},
    "infinity_literal": {"decode"},
    "truncated_json": {"decode"},
    "binary_garbage": {"decode"},
    "empty_value": {"decode"},
    "missing_field": {"validate"},
    "string_for_number": {"validate"},
    "json_array": {"decode", "validate"},
    "empty_generator_id": {"map"},
    "newline_in_generator_id": {"map"},
    "framed_missing_field": {"validate"},
    "framed_not_json": {"decode"},
    "framed_short_header": {"decode"},
}
DLQ_HEADER_PREFIX = "__connect.errors."


@dataclass
class Record:
    index: int
    key: bytes
    value: bytes
    timestamp_ms: int
    kind: str  # "valid" or one of INVALID_KINDS
    doc: dict | None = None  # the expected point (valid records)
    framed: bool = False
    flavour: str = "plain"  # how the JSON text was written (valid records)
    partition: int | None = None
    offset: int | None = None

    @property
    def valid(self) -> bool:
        return self.kind == "valid"


@dataclass
class DataSet:
    topic: str
    database: str
    records: list[Record]
    end_offsets: dict[int, int]
    valid: list[Record] = field(default_factory=list)
    invalid: list[Record] = field(default_factory=list)
    sample: list[Record] = field(default_factory=list)

    def position(self, r: Record) -> tuple[int, int]:
        return (r.partition, r.offset)


# --- data generation --------------------------------------------------------------------------

def frame(payload: bytes, schema_id: int) -> bytes:
    """Confluent wire format: magic byte 0, 4-byte big-endian schema id, payload."""
    return b"\x00" + struct.pack(">I", schema_id) + payload


def valid_doc(rng: random.Random) -> dict:
    def number(lo: float, hi: float) -> float | int:
        r = rng.random()
        if r < 0.25:
            return rng.randint(int(lo), int(hi))  # JSON integer: must be written as a float
        if r < 0.35:
            return round(rng.uniform(lo, hi), 2)
        return rng.uniform(lo, hi)  # full 17-digit precision

    doc = {
        TAG: rng.choice(GENERATOR_IDS),
        "lat": number(-90, 90),
        "lon": number(-180, 180),
        "temperature": number(-40, 400),
        "pressure": rng.choice([number(0, 5), rng.uniform(0, 1e-6), 0]),
        "fuel": rng.choice([number(0, 1000), 400, 1e-300, 123456789.125]),
    }
    return doc


def valid_text(rng: random.Random, doc: dict) -> tuple[bytes, str]:
    r = rng.random()
    if r < 0.05:  # unknown extra fields are not written
        d = dict(doc, status="ok", extra={"nested": [1, 2]})
        return json.dumps(d).encode(), "extra_fields"
    if r < 0.10:  # pretty-printed, keys in another order, raw UTF-8
        items = list(doc.items())
        rng.shuffle(items)
        return json.dumps(dict(items), indent=2, ensure_ascii=False).encode(), "pretty_utf8"
    if r < 0.13 and isinstance(doc["fuel"], float) and doc["fuel"] not in (1e-300,):
        # exponent notation in the JSON text, e.g. 4.5E+2
        text = json.dumps(dict(doc, fuel="@FUEL@")).replace('"@FUEL@"', f"{doc['fuel']:.17E}")
        return text.encode(), "exponent"
    return json.dumps(doc, separators=(",", ":")).encode(), "plain"


def invalid_value(rng: random.Random, kind: str, doc: dict) -> bytes:
    if kind == "nan_literal":
        return json.dumps(dict(doc, lat=float("nan"))).encode()  # Python writes the token NaN
    if kind == "infinity_literal":
        return json.dumps(dict(doc, temperature=float("-inf"))).encode()  # -Infinity
    if kind == "truncated_json":
        text = json.dumps(doc).encode()
        return text[: rng.randint(1, len(text) - 2)]
    if kind == "binary_garbage":
        return b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(rng.randint(5, 40)))
    if kind == "empty_value":
        return b""
    if kind == "missing_field":
        d = dict(doc)
        del d[rng.choice([TAG] + FIELDS)]
        return json.dumps(d).encode()
    if kind == "string_for_number":
        f = rng.choice(FIELDS)
        return json.dumps(dict(doc, **{f: str(doc[f])})).encode()
    if kind == "json_array":
        return json.dumps([doc]).encode()
    if kind == "empty_generator_id":
        return json.dumps(dict(doc, **{TAG: ""})).encode()
    if kind == "newline_in_generator_id":
        return json.dumps(dict(doc, **{TAG: "gen\n042"})).encode()
    if kind == "framed_missing_field":
        d = dict(doc)
        del d[rng.choice(FIELDS)]
        return frame(json.dumps(d).encode(), 1)
    if kind == "framed_not_json":
        return frame(b"this is not json", 1)
    if kind == "framed_short_header":
        return b"\x00\x00\x01"
    raise ValueError(kind)


def make_records(rng: random.Random, base_ms: int) -> list[Record]:
    kinds = list(INVALID_KINDS)
    invalid_at = sorted(rng.sample(range(N_RECORDS), N_INVALID))
    invalid_kind = {pos: kinds[j % len(kinds)] for j, pos in enumerate(invalid_at)}
    records = []
    for i in range(N_RECORDS):
        key = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
        doc = valid_doc(rng)
        ts = base_ms + i  # distinct per record, so points never overwrite each other
        if i in invalid_kind:
            kind = invalid_kind[i]
            records.append(Record(i, key, invalid_value(rng, kind, doc), ts, kind))
            continue
        text, flavour = valid_text(rng, doc)
        framed = rng.random() < FRAMED_SHARE
        value = frame(text, rng.choice([1, 7, 100001])) if framed else text
        records.append(Record(i, key, value, ts, "valid", doc, framed, flavour))
    return records


def produce(brokers: str, topic: str, records: list[Record]) -> None:
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "acks": "all"})
    errors = []

    def on_delivery(err, msg, rec):
        if err is not None:
            errors.append((rec.index, err))
        else:
            rec.partition, rec.offset = msg.partition(), msg.offset()

    for r in records:
        while True:
            try:
                producer.produce(topic, value=r.value, key=r.key, timestamp=r.timestamp_ms,
                                 headers=[(ORIGIN_HEADER, str(r.index).encode())],
                                 on_delivery=lambda err, msg, rec=r: on_delivery(err, msg, rec))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(60)
    assert left == 0, f"{left} records still undelivered after 60 s"
    assert not errors, f"delivery failed for {len(errors)} records, e.g. {errors[:3]}"


def pick_sample(rng: random.Random, valid: list[Record]) -> list[Record]:
    chosen: dict[int, Record] = {}

    def take(pred, n):
        pool = [r for r in valid if pred(r) and r.index not in chosen]
        for r in rng.sample(pool, min(n, len(pool))):
            chosen[r.index] = r

    for gid in SPECIAL_IDS:
        take(lambda r, g=gid: r.doc[TAG] == g, 1)
    take(lambda r: r.framed, 6)
    for flavour in ("extra_fields", "pretty_utf8", "exponent"):
        take(lambda r, f=flavour: r.flavour == f, 3)
    take(lambda r: any(isinstance(r.doc[f], int) for f in FIELDS), 5)
    take(lambda r: r.doc["fuel"] == 1e-300, 1)
    take(lambda r: True, SAMPLE_SIZE - len(chosen))
    return sorted(chosen.values(), key=lambda r: r.index)


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(kafka, influx) -> DataSet:
    rng = random.Random(SEED)
    topic = unique("e2e-generator")
    database = unique("e2e").replace("-", "_")
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)  # the sink creates no topics
    influx.create_database(database)

    base_ms = (int(time.time()) // 3600 - 24) * 3_600_000  # a day ago, on the hour
    records = make_records(rng, base_ms)
    produce(kafka, topic, records)

    ends: dict[int, int] = {}
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    assert sorted(ends) == list(range(PARTITIONS)), f"records reached partitions {sorted(ends)} only"
    assert sum(ends.values()) == N_RECORDS, f"end offsets {ends} do not add up to {N_RECORDS}"
    assert end_offsets(kafka, topic) == ends, "broker end offsets differ from the delivery reports"

    ds = DataSet(topic, database, records, ends)
    ds.valid = [r for r in records if r.valid]
    ds.invalid = [r for r in records if not r.valid]
    ds.sample = pick_sample(random.Random(SEED + 1), ds.valid)
    yield ds
    influx.drop_database(database)


@dataclass
class RunResult:
    group: str
    dlq_topic: str
    committed: dict[int, int | None]
    dlq_records: list[dict]
    influx_count: int
    log: str


def run_until_caught_up(kafka, influx, make_sink, ds: DataSet, group: str, dlq_topic: str, name: str,
                        dlq_override: str | None) -> RunResult:
    sink = make_sink(sink_overrides(topic=ds.topic, group=group, database=ds.database, dlq=dlq_override),
                     name=name)
    with sink:
        wait_for_commits(kafka, group, ds.topic, ds.end_offsets, sink, timeout=COMMIT_TIMEOUT)
    # stopped with SIGTERM and exit code 0 (checked by Sink.stop)
    return RunResult(
        group=group,
        dlq_topic=dlq_topic,
        committed=committed_offsets(kafka, group, ds.topic),
        dlq_records=read_topic(kafka, dlq_topic),
        influx_count=influx.count(ds.database),
        log=sink.log_text(),
    )


@pytest.fixture(scope="module")
def first_run(kafka, influx, make_sink, dataset) -> RunResult:
    # No DLQ override: the default template `{topic}.dlq` must name the topic created above.
    return run_until_caught_up(kafka, influx, make_sink, dataset, unique("e2e-group"),
                               f"{dataset.topic}.dlq", "first-run", dlq_override=None)


# --- assertion helpers ------------------------------------------------------------------------

def assert_sample_values(influx, ds: DataSet) -> None:
    problems = []
    for r in ds.sample:
        q = (f'SELECT {", ".join(FIELDS)} FROM "{MEASUREMENT}" '
             f'WHERE "{TAG}" = {influxql_string(r.doc[TAG])} AND time = {r.timestamp_ms}ms')
        rows = influx.query(ds.database, q)
        if len(rows) != 1:
            problems.append(f"record #{r.index} ({r.flavour}, framed={r.framed}, {TAG}={r.doc[TAG]!r}): "
                            f"{len(rows)} points at {r.timestamp_ms} ms, wanted 1")
            continue
        row = rows[0]
        for f in FIELDS:
            want = float(r.doc[f])
            got = row.get(f)
            # InfluxDB's JSON writes the float 400.0 as `400`; the field type is checked separately.
            if got is None or float(got) != want:
                problems.append(f"record #{r.index} ({r.flavour}, framed={r.framed}): {f} = {got!r}, "
                                f"wanted {want!r} (produced {r.doc[f]!r})")
    assert not problems, f"{len(problems)} mismatches in the {len(ds.sample)} sampled points:\n" + "\n".join(problems[:20])


def header_map(rec: dict) -> dict[str, list[bytes | None]]:
    out: dict[str, list] = {}
    for k, v in rec["headers"]:
        out.setdefault(k, []).append(v)
    return out


def assert_dlq_holds_exactly_invalid(ds: DataSet, dlq_records: list[dict], dlq_topic: str) -> None:
    by_pos = {ds.position(r): r for r in ds.invalid}
    seen: dict[tuple[int, int], dict] = {}
    problems = []
    for d in dlq_records:
        h = header_map(d)
        where = f"{dlq_topic}[{d['partition']}]@{d['offset']}"

        def one(name: str) -> str | None:
            vals = h.get(DLQ_HEADER_PREFIX + name)
            if not vals or len(vals) != 1 or vals[0] is None:
                problems.append(f"{where}: header {DLQ_HEADER_PREFIX}{name} missing or repeated: {vals!r}")
                return None
            return vals[0].decode("utf-8", "replace")

        topic, part, off = one("topic"), one("partition"), one("offset")
        stage, cls, msg = one("stage"), one("exception.class.name"), one("exception.message")
        if None in (topic, part, off):
            continue
        if topic != ds.topic:
            problems.append(f"{where}: errors.topic {topic!r}, wanted {ds.topic!r}")
        if not (part.isdigit() and off.isdigit()):
            problems.append(f"{where}: errors.partition/offset not decimal: {part!r}/{off!r}")
            continue
        pos = (int(part), int(off))
        if pos in seen:
            problems.append(f"{where}: source position {pos} dead-lettered twice")
        seen[pos] = d
        src = by_pos.get(pos)
        if src is None:
            problems.append(f"{where}: source position {pos} is not an invalid record "
                            f"(value {d['value'][:80]!r})")
            continue
        label = f"{where} (record #{src.index}, {src.kind})"
        if d["key"] != src.key:
            problems.append(f"{label}: key {d['key']!r}, wanted {src.key!r}")
        # An empty original value must stay empty (b""), not become null.
        if d["value"] != src.value:
            problems.append(f"{label}: value {d['value'][:80]!r}, wanted {src.value[:80]!r}")
        if stage not in INVALID_KINDS[src.kind]:
            problems.append(f"{label}: stage {stage!r}, wanted one of {sorted(INVALID_KINDS[src.kind])}")
        if not cls or not cls.strip():
            problems.append(f"{label}: empty exception.class.name")
        if not msg or not msg.strip():
            problems.append(f"{label}: empty exception.message")
        if h.get(ORIGIN_HEADER) != [str(src.index).encode()]:
            problems.append(f"{label}: original header {ORIGIN_HEADER} = {h.get(ORIGIN_HEADER)!r}, "
                            f"wanted [{str(src.index).encode()!r}]")
    missing = sorted(set(by_pos) - set(seen))
    for pos in missing[:20]:
        r = by_pos[pos]
        problems.append(f"invalid record #{r.index} ({r.kind}) at {ds.topic}[{pos[0]}]@{pos[1]} "
                        f"is missing from {dlq_topic}: {r.value[:80]!r}")
    assert not problems, (f"{dlq_topic}: {len(dlq_records)} records for {len(ds.invalid)} invalid ones, "
                          f"{len(missing)} missing; {len(problems)} problems:\n" + "\n".join(problems[:40]))
    assert len(dlq_records) == len(ds.invalid)


# --- tests: first run -------------------------------------------------------------------------

def test_dataset_shape(dataset):
    """Guards the generator itself: the mix the other tests rely on."""
    assert len(dataset.invalid) == N_INVALID
    assert {r.kind for r in dataset.invalid} == set(INVALID_KINDS)
    framed = sum(r.framed for r in dataset.valid)
    assert 0.07 * len(dataset.valid) < framed < 0.13 * len(dataset.valid), framed
    assert len(dataset.sample) == SAMPLE_SIZE
    assert {r.doc[TAG] for r in dataset.sample} >= set(SPECIAL_IDS)


def test_first_run_commits_end_offsets(first_run, dataset):
    assert first_run.committed == dataset.end_offsets, (
        f"after a graceful stop, group {first_run.group} has committed {first_run.committed}, "
        f"wanted the end offsets {dataset.end_offsets}")


def test_first_run_writes_every_valid_record_once(first_run, dataset):
    assert first_run.influx_count == len(dataset.valid), (
        f"InfluxDB holds {first_run.influx_count} points in {MEASUREMENT}, wanted {len(dataset.valid)} "
        f"(one per valid record; {len(dataset.invalid)} invalid records of {N_RECORDS})")


def test_first_run_schema_of_points(first_run, dataset, influx):
    types = influx.field_types(dataset.database)
    assert types == {f: "float" for f in FIELDS}, (
        f"field keys of {MEASUREMENT}: {types}; wanted exactly the mapped fields, all float "
        "(integers in the JSON must be written as floats, unmapped JSON keys not at all)")
    assert influx.tag_keys(dataset.database) == [TAG]


def test_first_run_sampled_values_exact(first_run, dataset, influx):
    assert_sample_values(influx, dataset)


def test_first_run_dead_letters_exactly_the_invalid_records(first_run, dataset):
    assert_dlq_holds_exactly_invalid(dataset, first_run.dlq_records, first_run.dlq_topic)


# --- tests: restart with the same group, then replay with a new group ----------------------------

def test_second_run_same_group_changes_nothing(kafka, influx, make_sink, dataset, first_run):
    ds = dataset
    sink = make_sink(sink_overrides(topic=ds.topic, group=first_run.group, database=ds.database), name="same-group")
    with sink:
        # Joining takes ~3 s with the short session timeout; then there is nothing to do.
        deadline = time.monotonic() + IDLE_SECONDS
        while time.monotonic() < deadline:
            sink.assert_alive()
            time.sleep(0.5)
        sink.assert_alive()
    assert committed_offsets(kafka, first_run.group, ds.topic) == ds.end_offsets, "committed offsets moved"
    assert influx.count(ds.database) == len(ds.valid), "InfluxDB point count changed on a restart"
    dlq_now = read_topic(kafka, first_run.dlq_topic)
    assert len(dlq_now) == len(first_run.dlq_records), (
        f"{first_run.dlq_topic} grew from {len(first_run.dlq_records)} to {len(dlq_now)} records on a restart")


def test_replay_with_new_group_is_idempotent(kafka, influx, make_sink, dataset, first_run):
    ds = dataset
    dlq2 = unique("e2e-replay-dlq")
    create_topic(kafka, dlq2, 1)
    replay = run_until_caught_up(kafka, influx, make_sink, ds, unique("e2e-replay-group"), dlq2, "replay",
                                 dlq_override=dlq2)
    assert replay.committed == ds.end_offsets
    assert replay.influx_count == len(ds.valid), (
        f"after the replay InfluxDB holds {replay.influx_count} points, wanted {len(ds.valid)} "
        "(rewriting the same points must overwrite them)")
    assert_sample_values(influx, ds)
    assert_dlq_holds_exactly_invalid(ds, replay.dlq_records, dlq2)
    assert len(read_topic(kafka, first_run.dlq_topic)) == len(first_run.dlq_records), (
        "the replay wrote to the first run's DLQ topic")
