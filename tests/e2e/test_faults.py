"""Fault injection: the sink loses nothing, writes nothing twice and commits nothing early when
InfluxDB misbehaves, goes away, or the sink itself is killed (README, "Guarantees").

Every scenario produces a known set of generator records with a confluent-kafka producer. Each
record carries its own Kafka timestamp (the sink writes it as the point's time), so every valid
record is its own point. Some records are invalid on purpose (not JSON, a missing field, an empty
generatorID). At the end each scenario checks that:

  * InfluxDB holds every record that should be written exactly once: the point count, plus the
    identity (generatorID, time) and exact field values of a sample;
  * the dead-letter topic holds exactly the records that should be rejected, compared as a SET of
    source (partition, offset), each with the expected stage, reason and message and its original
    bytes. A SIGKILLed sink may have dead-lettered a record without committing it, so duplicate
    dead letters are reported as warnings, not failures;
  * the group's committed offsets equal the end offsets.

Scenarios:
  1. An HTTP fault proxy (tests/e2e/fault_proxy.py) between the sink and the real InfluxDB 1.6.7:
     503 with `Retry-After: 1`, 429 with `Retry-After` as an HTTP date, 500, answers slower than
     `influxdb.timeout_ms`, connections reset (with and without the write landing), 413 above a
     body size, and 401 / 500 on every write for a while (nothing committed meanwhile; 401 also
     makes /readyz 503). The same proxy stands in for the write endpoints of InfluxDB 3 and 2
     and refuses "poison" lines with the documented 400 bodies: those records must be
     dead-lettered (stage `write`, reason `InfluxDbRejected`, the server's message), the rest
     written.
  2. 200,000 records, the sink SIGKILLed three times at random moments (when InfluxDB holds a random
     share of the points) and restarted; the final run drains: exactly one point per valid record.
     After each kill, while nothing runs, every record below a committed offset must already be a
     point or a dead letter.
  3. A private influxd (own config, data dir and ports) stopped for ~30 s mid-run while records keep
     arriving (a steady producer, plus a burst of 150,000 records during the outage): the sink stays
     alive (/healthz 200) and under 300 MiB RSS, commits nothing it has not written (committed
     offsets freeze, stay below the end offsets, and every committed record is found in InfluxDB's
     files through a second influxd on a side port before the real one comes back), and everything
     lands afterwards.
  4. The dead-letter topic missing. Tansu creates a topic when a producer's metadata request names
     it and allows auto-creation, which librdkafka's producer does by default, so the sink is run
     with `allow.auto.create.topics=false` passed through [kafka.properties] (what a broker with
     `auto.create.topics.enable=false` would do to it anyway). The test asserts the topic really
     stays missing, that nothing is committed past the first undeliverable dead letter, and that
     everything is delivered once the topic is created.
  5. (extra) SIGTERM while a fault persists - InfluxDB answering 503, or a dead letter pending for a
     missing topic: the sink must exit 0 within shutdown.timeout_ms, commit nothing, and produce
     nothing after its grace period; a restart then lands everything.

Run pytest with -s to see the per-scenario `FAULTS-SUMMARY {json}` lines.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass

import pytest
import requests
from confluent_kafka import Producer

from conftest import (
    INFLUX_URL,
    Influx,
    PrivateInflux,
    committed_offsets,
    create_topic,
    end_offsets,
    free_port,
    influxql_string,
    read_topic,
    sink_overrides,
    unique,
    wait_for_commits,
)
from fault_proxy import Delay, FaultProxy, Reset, Respond, http_date
import kafka_admin

FIELDS = ["lat", "lon", "temperature", "pressure", "fuel"]
TAG = "generatorID"
DLQ_HEADER = "__connect.errors."
POISON_ID = "gen-poison"
# Records the sink itself rejects: kind -> (stage, reason).
SINK_REJECTS = {
    "not_json": ("decode", "InvalidJson"),
    "missing_field": ("validate", "SchemaViolation"),
    "empty_id": ("map", "EmptyTagValue"),
}
# Faster than the defaults, so that each scenario takes seconds: retries back off to 500 ms at
# most, and durable offsets are committed every 500 ms.
FAST = {"KIS_INFLUXDB__RETRY_MAX_BACKOFF_MS": "500", "KIS_KAFKA__COMMIT_INTERVAL_MS": "500"}


def summary(name: str, **data) -> None:
    print(f"FAULTS-SUMMARY {json.dumps({'scenario': name, **data}, default=str)}")


def wait_until(predicate, timeout: float, what: str, sinks=(), interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        for s in sinks:
            s.assert_alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {s.log_path.name} ---\n{s.log_tail(40)}" for s in sinks)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tails}")
        time.sleep(interval)


def sigkill(sink) -> None:
    """SIGKILL: no final write, no commit, no LeaveGroup."""
    sink.assert_alive()
    sink.proc.send_signal(signal.SIGKILL)
    sink.proc.wait(10)
    sink._close_log()


# --- records ----------------------------------------------------------------------------------------

@dataclass
class Rec:
    index: int
    kind: str  # "valid", "poison", "oversize", or a key of SINK_REJECTS
    key: bytes
    value: bytes
    ts: int  # Kafka timestamp, ms: the point's time
    doc: dict | None  # the point the sink makes of it; None when the sink rejects the record
    partition: int | None = None
    offset: int | None = None

    @property
    def pos(self) -> tuple[int, int]:
        return (self.partition, self.offset)


def make_records(rng: random.Random, *, points: int, invalid: int, base_ms: int, generators: int = 8,
                 poison: int = 0, oversize: int = 0, first_index: int = 0) -> list[Rec]:
    """`points` records the sink turns into points (of which `poison` have generatorID gen-poison
    and `oversize` have a 9 KiB generatorID), plus `invalid` records it rejects, shuffled. Record i
    has timestamp base_ms + i: distinct, so no two records share a point."""
    kinds = ["valid"] * (points - poison - oversize) + ["poison"] * poison + ["oversize"] * oversize
    kinds += [list(SINK_REJECTS)[j % len(SINK_REJECTS)] for j in range(invalid)]
    rng.shuffle(kinds)
    records = []
    for i, kind in enumerate(kinds, start=first_index):
        doc = {
            TAG: f"gen-{i % generators:02d}",
            "lat": round(51.2 + rng.random() * 0.6, 6),
            "lon": round(-0.5 + rng.random(), 6),
            "temperature": rng.choice([rng.randint(20, 90), round(rng.uniform(20, 90), 3)]),
            "pressure": rng.uniform(0.9, 1.2),  # full float precision
            "fuel": round(rng.uniform(0, 1000), 2),
        }
        if kind == "poison":
            doc[TAG] = POISON_ID
        elif kind == "oversize":
            doc[TAG] = "gen-oversize-" + "x" * 9000
        key = f"k-{i}-{rng.getrandbits(32):08x}".encode()
        if kind in SINK_REJECTS:
            if kind == "not_json":
                value = b"this is not json {" + str(i).encode()
            elif kind == "missing_field":
                value = json.dumps({k: v for k, v in doc.items() if k != "fuel"}).encode()
            else:
                value = json.dumps(dict(doc, **{TAG: ""})).encode()
            records.append(Rec(i, kind, key, value, base_ms + i - first_index, None))
        else:
            records.append(Rec(i, kind, key, json.dumps(doc).encode(), base_ms + i - first_index, doc))
    return records


def produce(brokers: str, topic: str, records: list[Rec], rate: float | None = None,
            stop: threading.Event | None = None) -> dict[int, int]:
    """Produces `records` (at `rate` records/s when given); fills in partition and offset and
    returns the end offsets."""
    producer = Producer({"bootstrap.servers": brokers, "acks": "all", "linger.ms": 20,
                         "queue.buffering.max.messages": 200_000})
    errors = []

    def delivered(err, msg, rec):
        if err is not None:
            errors.append((rec.index, err))
        else:
            rec.partition, rec.offset = msg.partition(), msg.offset()

    started = time.monotonic()
    for n, r in enumerate(records):
        if stop is not None and stop.is_set():
            break
        if rate:
            ahead = started + n / rate - time.monotonic()
            if ahead > 0:
                producer.poll(ahead)
        while True:
            try:
                producer.produce(topic, r.value, key=r.key, timestamp=r.ts,
                                 on_delivery=lambda err, msg, rec=r: delivered(err, msg, rec))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0, "records still undelivered after 60 s"
    assert not errors, f"{len(errors)} records not delivered, e.g. {errors[:3]}"
    return ends_of(records)


def ends_of(records: list[Rec]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for r in records:
        if r.partition is not None:
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends


# --- checks ------------------------------------------------------------------------------------------

@dataclass
class Letter:
    """Expectation for one dead letter: stage, reason, and the exact message or a substring."""
    stage: str
    reason: str
    message: str | None = None
    substring: str | None = None


def sink_letters(records: list[Rec]) -> dict[tuple[int, int], Letter]:
    return {r.pos: Letter(*SINK_REJECTS[r.kind]) for r in records if r.kind in SINK_REJECTS}


def check_points(influx: Influx, db: str, records: list[Rec], refused_positions: set, rng: random.Random,
                 sample_size: int = 25) -> int:
    """InfluxDB holds one point per record with a doc and not refused; a sample carries exactly the
    produced values. Returns the count."""
    expected = [r for r in records if r.doc is not None and r.pos not in refused_positions]
    count, want = influx.count(db), len(expected)
    assert count == want, (
        f"InfluxDB database {db} holds {count} points, wanted {len(expected)} (one per written record; "
        f"{len(records)} produced, {len(records) - len(expected)} rejected)")
    pool = [r for r in expected if r.kind != "oversize"]
    sample = rng.sample(pool, min(sample_size, len(pool)))
    problems = []
    for r in sample:
        rows = influx.query(db, f'SELECT {", ".join(FIELDS)} FROM generator '
                                f'WHERE "{TAG}" = {influxql_string(r.doc[TAG])} AND time = {r.ts}ms')
        if len(rows) != 1:
            problems.append(f"record #{r.index} at {r.pos}: {len(rows)} points for ({r.doc[TAG]}, {r.ts} ms)")
            continue
        for f in FIELDS:
            if rows[0].get(f) is None or float(rows[0][f]) != float(r.doc[f]):
                problems.append(f"record #{r.index}: {f} = {rows[0].get(f)!r}, produced {r.doc[f]!r}")
    assert not problems, f"{len(problems)} problems in a sample of {len(sample)} points:\n" + "\n".join(problems)
    return count


def check_dead_letters(brokers: str, dlq: str, topic: str, records: list[Rec],
                       expected: dict[tuple[int, int], Letter]) -> dict:
    """The DLQ holds exactly the expected source positions (as a set; duplicates are reported)."""
    by_pos = {r.pos: r for r in records}
    letters = read_topic(brokers, dlq)
    seen: dict[tuple[int, int], int] = {}
    problems = []
    for d in letters:
        h: dict[str, str] = {}
        for k, v in d["headers"]:
            if k.startswith(DLQ_HEADER):
                h[k[len(DLQ_HEADER):]] = (v or b"").decode("utf-8", "replace")
        where = f"{dlq}[{d['partition']}]@{d['offset']}"
        try:
            pos = (int(h["partition"]), int(h["offset"]))
        except (KeyError, ValueError):
            problems.append(f"{where}: no usable source partition/offset headers: {h}")
            continue
        seen[pos] = seen.get(pos, 0) + 1
        want = expected.get(pos)
        src = by_pos.get(pos)
        if want is None or src is None:
            problems.append(f"{where}: source {pos} ({src.kind if src else 'unknown record'}) should not be "
                            f"dead-lettered: stage {h.get('stage')} reason {h.get('exception.class.name')} "
                            f"message {h.get('exception.message', '')[:200]!r}")
            continue
        if h.get("topic") != topic:
            problems.append(f"{where}: errors.topic {h.get('topic')!r}, wanted {topic!r}")
        if d["value"] != src.value or d["key"] != src.key:
            problems.append(f"{where}: key/value differ from record #{src.index} as produced")
        got = (h.get("stage"), h.get("exception.class.name"))
        if got != (want.stage, want.reason):
            problems.append(f"{where} (record #{src.index}, {src.kind}): stage/reason {got}, "
                            f"wanted {(want.stage, want.reason)}")
        message = h.get("exception.message", "")
        if not message.strip():
            problems.append(f"{where}: empty exception.message")
        if want.message is not None and message != want.message:
            problems.append(f"{where}: message {message!r}, wanted {want.message!r}")
        if want.substring is not None and want.substring not in message:
            problems.append(f"{where}: message {message!r} lacks {want.substring!r}")
    missing = sorted(set(expected) - set(seen))
    for pos in missing[:20]:
        problems.append(f"record #{by_pos[pos].index} ({by_pos[pos].kind}) at {topic}{list(pos)} is missing from {dlq}")
    assert not problems, (f"{dlq}: {len(letters)} dead letters for {len(expected)} expected, {len(missing)} missing; "
                          f"{len(problems)} problems:\n" + "\n".join(problems[:40]))
    duplicates = {pos: n for pos, n in seen.items() if n > 1}
    if duplicates:
        warnings.warn(f"{dlq}: {sum(duplicates.values()) - len(duplicates)} duplicate dead letters "
                      f"(source positions {sorted(duplicates)[:10]}...) - at-least-once: legitimate only where a "
                      f"sink stopped, or lost its partitions, before committing the batch that held them")
    return {"dead_letters": len(letters), "distinct": len(seen), "duplicates": sum(duplicates.values()) - len(duplicates)}


def check_outcome(kafka, influx, *, db, topic, group, dlq, records, letters: dict[tuple[int, int], Letter],
                  seed: int) -> dict:
    """After the sink stopped: committed == end offsets, points, dead letters."""
    ends = ends_of(records)
    assert end_offsets(kafka, topic) == ends, "broker end offsets differ from the delivery reports"
    committed = committed_offsets(kafka, group, topic)
    assert committed == ends, f"group {group} committed {committed}, wanted the end offsets {ends}"
    count = check_points(influx, db, records, set(letters), random.Random(seed))
    dl = check_dead_letters(kafka, dlq, topic, records, letters)
    return {"points": count, **dl, "committed": committed}


def point_times(influx: Influx, db: str) -> set[int]:
    """The times (ms) of every point in `db` (each record has its own time)."""
    return {row["time"] for row in influx.query(db, "SELECT fuel FROM generator")}


def dead_letter_positions(brokers: str, dlq: str) -> set[tuple[int, int]]:
    positions = set()
    for d in read_topic(brokers, dlq):
        h = {k: (v or b"").decode() for k, v in d["headers"]}
        positions.add((int(h[DLQ_HEADER + "partition"]), int(h[DLQ_HEADER + "offset"])))
    return positions


def committed_but_not_durable(records: list[Rec], committed: dict[int, int | None], stored_times: set[int],
                              dlq_positions: set[tuple[int, int]]) -> list[str]:
    """Records below a committed offset that are neither a point nor a dead letter."""
    problems = []
    for r in records:
        if r.partition is None or r.offset >= (committed.get(r.partition) or 0):
            continue
        if r.doc is not None and r.ts not in stored_times:
            problems.append(f"record #{r.index} ({r.kind}) at {r.pos} committed but not in InfluxDB")
        elif r.doc is None and r.pos not in dlq_positions:
            problems.append(f"record #{r.index} ({r.kind}) at {r.pos} committed but not in the dead-letter topic")
    return problems


# --- scenario 1: the fault proxy ---------------------------------------------------------------------

PROXY_POINTS, PROXY_INVALID, PROXY_POISON = 2400, 30, 12
PROXY_BATCH = "300"  # records per batch: every scenario spans several write requests


@dataclass
class ProxyData:
    topic: str
    records: list[Rec]


@pytest.fixture(scope="module")
def proxy_data(kafka) -> ProxyData:
    """One data set shared by the proxy scenarios (each uses its own group, database and DLQ):
    2,400 records that map to points - 12 of them from generator `gen-poison`, one with a 9 KiB
    generatorID - and 30 records the sink rejects itself."""
    topic = unique("faults-proxy")
    create_topic(kafka, topic, 3)
    base_ms = (int(time.time()) // 3600 - 48) * 3_600_000
    records = make_records(random.Random(1), points=PROXY_POINTS, invalid=PROXY_INVALID, base_ms=base_ms,
                           poison=PROXY_POISON, oversize=1)
    produce(kafka, topic, records)
    return ProxyData(topic, records)


@dataclass
class ProxyRun:
    proxy: FaultProxy
    group: str
    db: str
    dlq: str


def proxy_run(kafka, influx_db, data: ProxyData, name: str, proxy: FaultProxy) -> ProxyRun:
    dlq = unique(f"faults-{name}-dlq")
    create_topic(kafka, dlq, 1)
    return ProxyRun(proxy, unique(f"faults-{name}"), influx_db(f"faults_{name.replace('-', '_')}"), dlq)


def proxy_overrides(run: ProxyRun, data: ProxyData, extra: dict[str, str] | None = None) -> dict[str, str]:
    return sink_overrides(topic=data.topic, group=run.group, database=run.db, dlq=run.dlq, extra={
        **FAST, "KIS_BATCH__MAX_RECORDS": PROXY_BATCH, "KIS_INFLUXDB__URL": run.proxy.url, **(extra or {})})


def gaps_after(proxy: FaultProxy, action: str) -> list[float]:
    """For each write answered with `action`, seconds from that answer until the sink retried the
    same body (other batches may be written meanwhile: influxdb.write_concurrency)."""
    gaps = []
    for e in proxy.writes():
        if e.action == action:
            retry = proxy.retry_of(e)
            assert retry is not None, f"the {action!r} write was never retried:\n{proxy.summary()}"
            gaps.append(round(retry.started - e.finished, 3))
    return gaps


TRANSIENT = {
    # name: (script, extra sink settings)
    "503-retry-after-seconds": ([Respond(503, {"Retry-After": "1"}, '{"error":"overloaded"}')] * 3, {}),
    "429-retry-after-http-date": (
        [Respond(429, {"Retry-After": lambda: http_date(time.time() + 2)}, '{"error":"slow down"}')] * 2, {}),
    "500": ([Respond(500, {}, '{"error":"internal error"}')] * 4, {}),
    "slow-answer-beyond-timeout": ([Delay(2.5)] * 2, {"KIS_INFLUXDB__TIMEOUT_MS": "1000"}),
    "connection-reset": ([Reset(), Reset(forward_first=True), Reset(), Reset(forward_first=True)], {}),
}


@pytest.mark.parametrize("case", list(TRANSIENT))
def test_transient_influx_faults_are_retried_and_everything_lands_once(case, kafka, influx, influx_db,
                                                                       make_sink, proxy_data):
    script, extra = TRANSIENT[case]
    with FaultProxy(INFLUX_URL) as proxy:
        proxy.script(*script)
        run = proxy_run(kafka, influx_db, proxy_data, case, proxy)
        with make_sink(proxy_overrides(run, proxy_data, extra), name=case) as sink:
            wait_for_commits(kafka, run.group, proxy_data.topic, ends_of(proxy_data.records), sink, timeout=90)
        log = sink.log_text()
    assert proxy.script_left() == 0, f"the sink made fewer write requests than scripted faults:\n{proxy.summary()}"
    faults = [e for e in proxy.writes() if e.action != "forward"]
    assert len(faults) == len(script), proxy.summary()
    result = check_outcome(kafka, influx, db=run.db, topic=proxy_data.topic, group=run.group, dlq=run.dlq,
                           records=proxy_data.records, letters=sink_letters(proxy_data.records), seed=2)

    timing = {}
    if case == "503-retry-after-seconds":
        gaps = gaps_after(proxy, "respond 503")
        # Without Retry-After the sink would retry after at most 500 ms (retry_max_backoff_ms).
        assert all(g >= 0.95 for g in gaps), f"Retry-After: 1 not honoured, gaps {gaps}:\n{proxy.summary()}"
        timing["gaps_s"] = gaps
    elif case == "429-retry-after-http-date":
        gaps = gaps_after(proxy, "respond 429")
        # The date is now + 2 s, truncated to the second: between 1 and 2 s from the answer.
        assert all(g >= 0.9 for g in gaps), f"Retry-After HTTP date not honoured, gaps {gaps}:\n{proxy.summary()}"
        timing["gaps_s"] = gaps
    elif case == "slow-answer-beyond-timeout":
        for e in proxy.writes():
            if e.action.startswith("forward, answer after"):
                retry = proxy.retry_of(e)
                assert retry is not None, f"a slow write was never retried:\n{proxy.summary()}"
                waited = retry.started - e.started
                # timeout_ms = 1000: the sink gives up after ~1 s (plus <= 500 ms backoff), well before
                # the proxy's 2.5 s answer.
                assert 0.9 <= waited < 2.4, f"retried {waited:.2f}s after a slow request began:\n{proxy.summary()}"
                timing.setdefault("retry_after_slow_s", []).append(round(waited, 3))
        assert "timeout" in log, "the sink's log never mentions the timeout"
    elif case == "connection-reset":
        assert sum(e.status is None for e in proxy.writes()) == len(script), proxy.summary()
    assert "retrying without committing" in log, "no warning about the failed write in the sink's log"
    summary(case, writes=len(proxy.writes()), faults=len(faults), **timing, **result)


@pytest.mark.parametrize("status", [401, 500])
def test_influx_failing_every_write_for_a_while_commits_nothing_then_recovers(status, kafka, influx, influx_db,
                                                                               make_sink, proxy_data):
    """401: /readyz turns 503 with the reason; 500: plain outage. Either way nothing is committed
    while every write fails, and everything lands once InfluxDB answers again."""
    body = ('{"error":"authorization failed"}' if status == 401 else '{"error":"engine: cache maximum memory size exceeded"}')
    port = free_port()
    with FaultProxy(INFLUX_URL) as proxy:
        proxy.refuse(status, body)
        run = proxy_run(kafka, influx_db, proxy_data, f"refuse-{status}", proxy)
        overrides = proxy_overrides(run, proxy_data, {"KIS_METRICS__ENABLED": "true",
                                                      "KIS_METRICS__LISTEN": f"127.0.0.1:{port}"})
        base = f"http://127.0.0.1:{port}"

        def readyz():
            try:
                r = requests.get(f"{base}/readyz", timeout=2)
                return r.status_code, r.text
            except requests.RequestException as exc:
                return None, str(exc)

        with make_sink(overrides, name=f"refuse-{status}") as sink:
            wait_until(lambda: len(proxy.writes()) >= 4, 60, "four refused write requests", [sink])
            if status == 401:
                wait_until(lambda: readyz()[0] == 503 and "authorization failed" in readyz()[1], 10,
                           "/readyz 503 naming the refusal", [sink])
            assert requests.get(f"{base}/healthz", timeout=2).status_code == 200
            time.sleep(1.5)  # three auto-commit intervals
            committed = committed_offsets(kafka, run.group, proxy_data.topic)
            assert all(v is None for v in committed.values()), (
                f"offsets committed while InfluxDB answered {status} to every write: {committed}")
            refused = len(proxy.writes())
            ready_during = readyz()
            proxy.restore()
            wait_for_commits(kafka, run.group, proxy_data.topic, ends_of(proxy_data.records), sink, timeout=60)
            wait_until(lambda: readyz()[0] == 200, 10, "/readyz 200 again", [sink])
        log = sink.log_text()
    assert all(e.status == status for e in proxy.writes()[:refused])
    result = check_outcome(kafka, influx, db=run.db, topic=proxy_data.topic, group=run.group, dlq=run.dlq,
                           records=proxy_data.records, letters=sink_letters(proxy_data.records), seed=3)
    if status == 401:
        assert "InfluxDB refuses writes" in log and "InfluxDB accepts writes again" in log
    summary(f"refuse-{status}", refused_writes=refused, readyz_during=ready_during, **result)


def test_413_splits_requests_and_dead_letters_a_single_oversize_line(kafka, influx, influx_db, make_sink,
                                                                    proxy_data):
    limit = 8192
    with FaultProxy(INFLUX_URL) as proxy:
        proxy.max_body_bytes = limit
        run = proxy_run(kafka, influx_db, proxy_data, "too-large", proxy)
        with make_sink(proxy_overrides(run, proxy_data), name="too-large") as sink:
            wait_for_commits(kafka, run.group, proxy_data.topic, ends_of(proxy_data.records), sink, timeout=90)
    writes = proxy.writes()
    too_large = [e for e in writes if e.status == 413]
    written = [e for e in writes if e.status == 204]
    assert too_large and written, proxy.summary()
    assert all(e.decoded_bytes <= limit for e in written)
    oversize = [r for r in proxy_data.records if r.kind == "oversize"]
    letters = sink_letters(proxy_data.records)
    letters.update({r.pos: Letter("write", "TooLarge", substring="Request Entity Too Large") for r in oversize})
    result = check_outcome(kafka, influx, db=run.db, topic=proxy_data.topic, group=run.group, dlq=run.dlq,
                           records=proxy_data.records, letters=letters, seed=4)
    summary("413", writes=len(writes), answered_413=len(too_large), written_requests=len(written), **result)


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_influx3_and_influx2_line_rejections_are_dead_lettered_by_line_number(api, kafka, influx, influx_db,
                                                                              make_sink, proxy_data):
    token = f"tok-{api}-" + unique("s")
    message = f"emulated InfluxDB {api[1]}: generator {POISON_ID} is quarantined"
    with FaultProxy(INFLUX_URL, api=api, token=token, poison=POISON_ID, poison_message=message) as proxy:
        run = proxy_run(kafka, influx_db, proxy_data, f"api-{api}", proxy)
        extra = {"KIS_INFLUXDB__API": api, "KIS_INFLUXDB__TOKEN": token}
        if api == "v2":
            extra.update({"KIS_INFLUXDB__ORG": "faults-org", "KIS_INFLUXDB__BUCKET": run.db})
        with make_sink(proxy_overrides(run, proxy_data, extra), name=f"api-{api}") as sink:
            wait_for_commits(kafka, run.group, proxy_data.topic, ends_of(proxy_data.records), sink, timeout=90)
    writes = proxy.writes()
    assert writes and all(e.status in (204, 400) for e in writes), proxy.summary()
    assert any(e.status == 400 for e in writes) and any(e.gzip for e in writes), proxy.summary()
    poison = [r for r in proxy_data.records if r.kind == "poison"]
    letters = sink_letters(proxy_data.records)
    letters.update({r.pos: Letter("write", "InfluxDbRejected", message=message) for r in poison})
    result = check_outcome(kafka, influx, db=run.db, topic=proxy_data.topic, group=run.group, dlq=run.dlq,
                           records=proxy_data.records, letters=letters, seed=5)
    assert not influx.query(run.db, f"SELECT fuel FROM generator WHERE \"{TAG}\" = '{POISON_ID}'")
    summary(f"api-{api}", writes=len(writes), answered_400=sum(e.status == 400 for e in writes), **result)


# --- scenario 2: SIGKILL ------------------------------------------------------------------------------

KILL_POINTS, KILL_INVALID, KILLS = 199_800, 200, 3


def test_sigkill_three_times_during_200k_records_lands_every_record_once(kafka, influx, influx_db, make_sink):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    topic, group = unique("faults-kill"), unique("faults-kill-group")
    create_topic(kafka, topic, 4)
    create_topic(kafka, f"{topic}.dlq", 1)
    db = influx_db("faults_kill")
    base_ms = (int(time.time()) // 3600 - 72) * 3_600_000
    records = make_records(random.Random(seed), points=KILL_POINTS, invalid=KILL_INVALID, base_ms=base_ms,
                           generators=20)
    t0 = time.monotonic()
    ends = produce(kafka, topic, records)
    produced_s = time.monotonic() - t0
    overrides = sink_overrides(topic=topic, group=group, database=db,
                               extra={**FAST, "KIS_KAFKA__COMMIT_INTERVAL_MS": "1000",
                                      "KIS_BATCH__MAX_RECORDS": "1000"})
    # Kill when InfluxDB holds a random share of the points, one kill in each of three windows. The
    # debug build writes ~25,000 points/s here, so a kill lands up to ~10,000 points past its target:
    # the windows end well before the last point.
    targets = [int(KILL_POINTS * rng.uniform(lo, lo + 0.15)) for lo in (0.05, 0.3, 0.55)]
    kills = []
    for k, target in enumerate(targets):
        sink = make_sink(overrides, name=f"kill-{k}").start()
        wait_until(lambda: influx.count(db) >= target, 120, f"{target} points before kill {k + 1}", [sink],
                   interval=0.05)
        time.sleep(rng.uniform(0, 0.15))
        sigkill(sink)
        # The sink is dead: nothing changes while we look. Everything below a committed offset must
        # already be durable (a point, or a dead letter).
        committed = committed_offsets(kafka, group, topic)
        stored = point_times(influx, db)
        gaps = committed_but_not_durable(records, committed, stored, dead_letter_positions(kafka, f"{topic}.dlq"))
        kills.append({"target": target, "points_at_kill": len(stored),
                      "committed_records": sum(v or 0 for v in committed.values())})
        assert not gaps, f"after kill {k + 1}: {len(gaps)} committed records not durable, e.g.\n" + "\n".join(gaps[:10])
        assert len(stored) < KILL_POINTS, f"kill {k + 1} came after the sink had written everything: {kills}"
    final = make_sink(overrides, name="kill-final")
    with final:
        wait_for_commits(kafka, group, topic, ends, final, timeout=180)
    result = check_outcome(kafka, influx, db=db, topic=topic, group=group, dlq=f"{topic}.dlq", records=records,
                           letters=sink_letters(records), seed=seed)
    summary("sigkill", seed=seed, produce_s=round(produced_s, 1), kills=kills, total_s=round(time.monotonic() - t0, 1),
            **{k: v for k, v in result.items() if k != "committed"})


# --- scenario 3: InfluxDB stopped mid-run -------------------------------------------------------------

@pytest.fixture
def private_influx(tmp_path):
    if subprocess.run(["which", "influxd"], capture_output=True).returncode != 0:
        pytest.fail("influxd is not installed: run scripts/stack.sh install", pytrace=False)
    server = PrivateInflux(tmp_path / "influxdb")
    server.start()
    yield server
    server.stop()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


OUTAGE_S, OUTAGE_RATE, OUTAGE_RECORDS, OUTAGE_BURST = 30.0, 1500, 60_000, 150_000
RSS_LIMIT_MIB = 300


def test_influx_stopped_for_30s_mid_run(kafka, make_sink, private_influx):
    influx = Influx(private_influx.url)
    db = "faults_outage"
    influx.create_database(db)
    topic, group = unique("faults-outage"), unique("faults-outage-group")
    create_topic(kafka, topic, 3)
    create_topic(kafka, f"{topic}.dlq", 1)
    base_ms = int(time.time() * 1000) - 3_600_000
    records = make_records(random.Random(6), points=OUTAGE_RECORDS - 45, invalid=45, base_ms=base_ms)
    stop_producing = threading.Event()
    producer = threading.Thread(target=produce, args=(kafka, topic, records, OUTAGE_RATE, stop_producing),
                                name="outage-producer", daemon=True)
    port = free_port()
    overrides = sink_overrides(topic=topic, group=group, database=db, extra={
        **FAST, "KIS_INFLUXDB__URL": private_influx.url, "KIS_BATCH__MAX_RECORDS": "1000",
        "KIS_METRICS__ENABLED": "true", "KIS_METRICS__LISTEN": f"127.0.0.1:{port}"})
    sink = make_sink(overrides, name="outage")
    producer.start()
    rss: list[float] = []
    try:
        with sink:
            wait_until(lambda: influx.count(db) >= 3000 and any(committed_offsets(kafka, group, topic).values()),
                       60, "the sink to write and commit", [sink])
            rss_before = rss_mib(sink.proc.pid)
            private_influx.stop()
            down_at = time.monotonic()
            frozen_at_3s = None
            healthz = []
            burst: list[Rec] = []
            while time.monotonic() - down_at < OUTAGE_S - 4:
                sink.assert_alive()
                rss.append(rss_mib(sink.proc.pid))
                if not burst and time.monotonic() - down_at >= 1:
                    # A backlog much larger than a batch arrives while InfluxDB is away.
                    burst = make_records(random.Random(61), points=OUTAGE_BURST - 50, invalid=50,
                                         base_ms=base_ms + OUTAGE_RECORDS, first_index=OUTAGE_RECORDS)
                    produce(kafka, topic, burst)
                    continue
                if frozen_at_3s is None and time.monotonic() - down_at >= 3:
                    frozen_at_3s = committed_offsets(kafka, group, topic)
                    healthz.append(requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code)
                time.sleep(0.5)
            committed = committed_offsets(kafka, group, topic)
            ends_now = end_offsets(kafka, topic)
            assert committed == frozen_at_3s, (
                f"committed offsets moved while InfluxDB was down: {frozen_at_3s} -> {committed}")
            assert sum(v or 0 for v in committed.values()) < sum(ends_now.values()), (
                f"committed offsets {committed} reached the end offsets {ends_now} while InfluxDB was down "
                "and records kept arriving")
            assert healthz == [200], f"/healthz during the outage: {healthz}"

            # Every record below a committed offset must already be in InfluxDB's files: look with a
            # second influxd on a side port, so the sink cannot write meanwhile.
            side = private_influx.start(free_port())
            stored = point_times(Influx(side), db)
            private_influx.stop()
            all_records = records + burst
            gaps = committed_but_not_durable(all_records, committed, stored, dead_letter_positions(kafka, f"{topic}.dlq"))
            assert not gaps, f"{len(gaps)} committed records are not durable, e.g.\n" + "\n".join(gaps[:10])
            committed_valid = sum(1 for r in all_records if r.doc is not None and r.partition is not None
                                  and r.offset < (committed.get(r.partition) or 0))
            private_influx.start()
            outage_s = time.monotonic() - down_at
            producer.join(120)
            assert not producer.is_alive(), "the producer did not finish"
            ends = ends_of(all_records)
            assert sum(ends.values()) == len(all_records)
            wait_for_commits(kafka, group, topic, ends, sink, timeout=120)
            rss.append(rss_mib(sink.proc.pid))
    finally:
        stop_producing.set()
    assert max(rss) < RSS_LIMIT_MIB, f"sink RSS peaked at {max(rss):.0f} MiB during the outage"
    result = check_outcome(kafka, influx, db=db, topic=topic, group=group, dlq=f"{topic}.dlq", records=all_records,
                           letters=sink_letters(all_records), seed=7)
    assert "InfluxDB write failed; retrying without committing" in sink.log_text()
    summary("influx-outage", outage_s=round(outage_s, 1), rss_before_mib=round(rss_before, 1),
            rss_max_mib=round(max(rss), 1), committed_during_outage=committed,
            committed_records_checked=committed_valid, **{k: v for k, v in result.items() if k != "committed"})


# --- scenario 4: the dead-letter topic missing ---------------------------------------------------------

def test_missing_dead_letter_topic_blocks_commits_until_it_exists(kafka, influx, influx_db, make_sink):
    topic, group = unique("faults-nodlq"), unique("faults-nodlq-group")
    dlq = unique("faults-nodlq-missing")
    create_topic(kafka, topic, 2)
    db = influx_db("faults_nodlq")
    # 300 valid records first, then 300 more mixed with 20 invalid ones: the batches before the first
    # invalid record of a partition may be committed, nothing from that record on.
    base_ms = int(time.time() * 1000) - 7_200_000
    records = make_records(random.Random(8), points=300, invalid=0, base_ms=base_ms)
    records += make_records(random.Random(9), points=300, invalid=20, base_ms=base_ms + 300, first_index=300)
    ends = produce(kafka, topic, records)
    first_invalid = {}
    for r in records:
        if r.kind in SINK_REJECTS:
            first_invalid[r.partition] = min(first_invalid.get(r.partition, r.offset), r.offset)
    overrides = sink_overrides(topic=topic, group=group, database=db, dlq=dlq, extra={
        **FAST, "KIS_BATCH__MAX_RECORDS": "100",
        # What a broker with auto.create.topics.enable=false does: the producer may not create it.
        "KIS_KAFKA__PROPERTIES__ALLOW_AUTO_CREATE_TOPICS": "false",
        # Fail undeliverable dead letters after 3 s instead of 30 s, so the sink's retry runs.
        "KIS_KAFKA__PROPERTIES__TOPIC_METADATA_PROPAGATION_MAX_MS": "3000",
    })
    with make_sink(overrides, name="no-dlq") as sink:
        wait_until(lambda: influx.count(db) > 0, 60, "the first points", [sink])
        wait_until(lambda: "dead-letter topic cannot be written" in sink.log_text(), 30,
                   "the sink to report the unwritable dead-letter topic", [sink])
        time.sleep(2)
        assert kafka_admin.partition_count(kafka, dlq) is None, f"{dlq} was created behind the test's back"
        committed = committed_offsets(kafka, group, topic)
        for p, off in committed.items():
            assert off is None or off <= first_invalid[p], (
                f"{topic}[{p}] committed at {off}, past the undelivered dead letter at offset {first_invalid[p]}")
        # The valid records before the blocked batch were made durable and committed.
        assert any(committed.values()), f"nothing committed at all: {committed}"
        create_topic(kafka, dlq, 1)
        wait_for_commits(kafka, group, topic, ends, sink, timeout=90)
    result = check_outcome(kafka, influx, db=db, topic=topic, group=group, dlq=dlq, records=records,
                           letters=sink_letters(records), seed=9)
    summary("missing-dlq", committed_while_missing=committed, first_invalid=first_invalid,
            **{k: v for k, v in result.items() if k != "committed"})


# --- extra: SIGTERM while a fault persists -------------------------------------------------------------
# README: SIGTERM writes the buffered batch "at most shutdown.timeout_ms", then commits what is durable
# and exits 0; in-flight work past the grace period is abandoned (uncommitted, re-read on restart).

SHUTDOWN_MS = 3000
SHUTDOWN_MARGIN_S = 3.0


def sigterm_and_wait(sink, limit: float) -> tuple[int | None, float]:
    """SIGTERM; waits up to `limit` seconds. Returns (exit code or None when still running, seconds)."""
    started = time.monotonic()
    sink.proc.send_signal(signal.SIGTERM)
    try:
        rc = sink.proc.wait(limit)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, time.monotonic() - started


def test_sigterm_during_influx_outage_abandons_the_batch_within_shutdown_timeout(kafka, influx, influx_db,
                                                                                  make_sink):
    """InfluxDB answers 503 to every write; SIGTERM: the sink exits 0 within shutdown.timeout_ms,
    commits nothing, and produces nothing after the grace period: each dead letter of the abandoned
    batch is in the DLQ at most once (re-delivering it is the next run's job). A restart then lands
    everything."""
    topic, group = unique("faults-term"), unique("faults-term-group")
    create_topic(kafka, topic, 2)
    create_topic(kafka, f"{topic}.dlq", 1)
    db = influx_db("faults_term")
    records = make_records(random.Random(10), points=500, invalid=6, base_ms=int(time.time() * 1000) - 3_600_000)
    ends = produce(kafka, topic, records)
    with FaultProxy(INFLUX_URL) as proxy:
        proxy.refuse(503, '{"error":"overloaded"}')
        overrides = sink_overrides(topic=topic, group=group, database=db, extra={
            **FAST, "KIS_INFLUXDB__URL": proxy.url, "KIS_SHUTDOWN__TIMEOUT_MS": str(SHUTDOWN_MS)})
        sink = make_sink(overrides, name="term-outage").start()
        wait_until(lambda: len(proxy.writes()) >= 3, 60, "three refused writes", [sink])
        rc, took = sigterm_and_wait(sink, SHUTDOWN_MS / 1000 + SHUTDOWN_MARGIN_S)
        if rc is None:
            sigkill(sink)
        sink._close_log()
        assert rc == 0, (f"exit code {rc} {took:.1f}s after SIGTERM with shutdown.timeout_ms={SHUTDOWN_MS} "
                         f"(None: still running); log tail:\n{sink.log_tail(15)}")
        committed = committed_offsets(kafka, group, topic)
        assert all(v is None for v in committed.values()), f"committed while every write failed: {committed}"
        letters = read_topic(kafka, f"{topic}.dlq")
        copies: dict[tuple[int, int], int] = {}
        for d in letters:
            h = {k: (v or b"").decode() for k, v in d["headers"]}
            pos = (int(h[DLQ_HEADER + "partition"]), int(h[DLQ_HEADER + "offset"]))
            copies[pos] = copies.get(pos, 0) + 1
        assert all(n == 1 for n in copies.values()), (
            f"one run of the sink, stopped during an outage, dead-lettered records more than once: "
            f"{len(letters)} dead letters for {len(copies)} source positions ({sorted(copies.items())}). "
            "The flush that shutdown abandoned had delivered them; the final flush delivered them again. "
            f"Log tail:\n{sink.log_tail(8)}")
        proxy.restore()
        with make_sink(overrides, name="term-outage-restart") as again:
            wait_for_commits(kafka, group, topic, ends, again, timeout=60)
    result = check_outcome(kafka, influx, db=db, topic=topic, group=group, dlq=f"{topic}.dlq", records=records,
                           letters=sink_letters(records), seed=11)
    summary("sigterm-influx-outage", exit_s=round(took, 2), **{k: v for k, v in result.items() if k != "committed"})


def test_sigterm_with_unwritable_dead_letter_topic_exits_within_shutdown_timeout(kafka, influx, influx_db,
                                                                                  make_sink):
    """The dead-letter topic is missing (auto-creation off, see scenario 4) and a dead letter is
    pending: SIGTERM must still end the sink within shutdown.timeout_ms (Kubernetes kills it after its
    grace period otherwise), with exit 0 and the batch uncommitted. Once the topic exists, a restart
    delivers everything."""
    topic, group, dlq = unique("faults-termdlq"), unique("faults-termdlq-group"), unique("faults-termdlq-missing")
    create_topic(kafka, topic, 2)
    db = influx_db("faults_termdlq")
    records = make_records(random.Random(12), points=500, invalid=6, base_ms=int(time.time() * 1000) - 3_600_000)
    ends = produce(kafka, topic, records)
    overrides = sink_overrides(topic=topic, group=group, database=db, dlq=dlq, extra={
        **FAST, "KIS_SHUTDOWN__TIMEOUT_MS": str(SHUTDOWN_MS),
        "KIS_KAFKA__PROPERTIES__ALLOW_AUTO_CREATE_TOPICS": "false"})
    sink = make_sink(overrides, name="term-no-dlq").start()
    wait_until(lambda: influx.count(db) > 0, 60, "the first points", [sink])
    time.sleep(1)  # the batch's dead letters wait for a topic that does not exist
    rc, took = sigterm_and_wait(sink, SHUTDOWN_MS / 1000 + SHUTDOWN_MARGIN_S)
    if rc is None:
        sigkill(sink)
    sink._close_log()
    assert kafka_admin.partition_count(kafka, dlq) is None, f"{dlq} was created behind the test's back"
    assert rc == 0, (f"{'still running' if rc is None else f'exit code {rc}'} {took:.1f}s after SIGTERM with "
                     f"shutdown.timeout_ms={SHUTDOWN_MS} and a dead letter pending for a missing topic "
                     f"(killed); log tail:\n{sink.log_tail(10)}")
    committed = committed_offsets(kafka, group, topic)
    assert all(v is None for v in committed.values()), f"committed past undelivered dead letters: {committed}"
    create_topic(kafka, dlq, 1)
    with make_sink(overrides, name="term-no-dlq-restart") as again:
        wait_for_commits(kafka, group, topic, ends, again, timeout=60)
    result = check_outcome(kafka, influx, db=db, topic=topic, group=group, dlq=dlq, records=records,
                           letters=sink_letters(records), seed=13)
    summary("sigterm-missing-dlq", exit_s=round(took, 2), **{k: v for k, v in result.items() if k != "committed"})


# --- a configured give-up ------------------------------------------------------------------------

def test_give_up_after_stops_and_stays_unready_without_skipping(kafka, influx, influx_db, make_sink, proxy_data):
    """influxdb.give_up_after_ms turns a long outage into "stop and stay unready", never into
    skipping: retries stop, /readyz says why and stays 503 even after InfluxDB recovers, nothing
    is committed; a restarted sink then writes everything."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FaultProxy(INFLUX_URL) as proxy:
        proxy.refuse(500, '{"error":"engine: cache maximum memory size exceeded"}')
        run = proxy_run(kafka, influx_db, proxy_data, "give-up", proxy)
        overrides = proxy_overrides(run, proxy_data, {
            "KIS_INFLUXDB__GIVE_UP_AFTER_MS": "2000",
            "KIS_METRICS__ENABLED": "true",
            "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
        })
        with make_sink(overrides, name="give-up") as sink:
            def gave_up() -> bool:
                try:
                    response = requests.get(f"{base}/readyz", timeout=2)
                except requests.RequestException:
                    return False
                return response.status_code == 503 and "gave up" in response.text

            wait_until(gave_up, 60, "/readyz to report the give-up", [sink])
            requests_at_give_up = len(proxy.writes())
            proxy.restore()  # InfluxDB is fine again, but the sink gave up: it stays stopped
            time.sleep(3)
            assert len(proxy.writes()) <= requests_at_give_up + 2, "the sink kept writing after giving up"
            assert gave_up(), "the sink must stay unready after giving up"
            assert requests.get(f"{base}/healthz", timeout=2).status_code == 200
            committed = committed_offsets(kafka, run.group, proxy_data.topic)
            assert all(v is None for v in committed.values()), f"committed after giving up: {committed}"
        assert "gave up after 2 s" in sink.log_text()
        # A restart (what an operator does) writes everything.
        restarted = make_sink(proxy_overrides(run, proxy_data), name="give-up-restart")
        with restarted:
            wait_for_commits(kafka, run.group, proxy_data.topic, ends_of(proxy_data.records), restarted, timeout=90)
    check_outcome(kafka, influx, db=run.db, topic=proxy_data.topic, group=run.group, dlq=run.dlq,
                  records=proxy_data.records, letters=sink_letters(proxy_data.records), seed=9)
