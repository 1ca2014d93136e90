"""Metrics, /status and the health endpoints against the real stack (Tansu + InfluxDB 1.6.7).

1. After a run with known valid and invalid records on a 3-partition topic, /metrics and /status
   agree with what actually landed: consumed = produced, points written = InfluxDB's count,
   dead-lettered by stage and reason = what the DLQ topic holds, batch histograms = batches
   written, latency observations = points written, committed offsets (metric, /status) = the
   partitions' end offsets, lag 0, /status lists exactly the assigned partitions. The same scrape
   is well-formed OpenMetrics and passes `promtool check metrics`, and librdkafka's statistics go
   to the metrics, not into the log.
2. Pointed at a database that does not exist (InfluxDB answers 404), the sink stays alive
   (/healthz 200), reports unready with the reason (/readyz 503), commits nothing, and recovers by
   itself once the database is created: every record lands and every offset is committed.
3. Against a private InfluxDB 1.6.7 with `auth-enabled = true` and a wrong password: /readyz 503
   naming the 401, kis_ready 0, /status not ready with the reason, nothing written or committed,
   /healthz 200; fixed on the server (SET PASSWORD), everything lands and commits. The password
   appears nowhere in the log, /metrics, /status or /readyz.
4. Two members in one group: after the second joins, each member's per-partition series
   (kis_consumer_lag, kis_committed_offset, kis_stored_offset) and /status partitions cover exactly
   its own partitions (the revoked ones are gone), and together all of them.

Lag and end offsets come from librdkafka's statistics (statistics.interval.ms, 1 s here), whose
`hi_offset` is the HighwaterMark of Fetch responses. Tansu answers ListOffsets(latest) with a
lower bound (the last batch's base offset + 1; see scripts/kafka_admin.py), but its Fetch
HighwaterMark is exact, so the tests compare /status `end_offset` with the end offsets read by
conftest before trusting a lag of 0.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import requests
from confluent_kafka import Producer

from conftest import (
    REPO_ROOT,
    PrivateInflux,
    free_port,
    committed_offsets,
    create_topic,
    end_offsets,
    read_topic,
    sink_overrides,
    unique,
    wait_for_commits,
)

PARTITIONS = 2
VALID = 190
INVALID_VALUES = [b"not json", b'{"generatorID": "g", "fuel": "low"}', b"", b'{"generatorID": "g"', b"[1, 2]"]
# Invalid values of the landed-run test, with the stage and reason the DLQ headers must carry.
EMPTY_TAG = json.dumps({"generatorID": "", "lat": 1, "lon": 2, "temperature": 3, "pressure": 1, "fuel": 5}).encode()
LANDED_INVALID = [
    (b"not json", "decode", "InvalidJson"),
    (b'{"generatorID": "g"', "decode", "InvalidJson"),
    (b"", "decode", "EmptyValue"),
    (b'{"generatorID": "g", "fuel": "low"}', "validate", "SchemaViolation"),
    (b"[1, 2]", "validate", "SchemaViolation"),
    (EMPTY_TAG, "map", "EmptyTagValue"),
]
DLQ_HEADER = "__connect.errors."
# Fast statistics (lag, end and committed offsets) and commits, so that the tests stay short.
FAST_TELEMETRY = {
    "KIS_KAFKA__PROPERTIES__STATISTICS_INTERVAL_MS": "1000",
    "KIS_KAFKA__COMMIT_INTERVAL_MS": "1000",
}


def produce_generators(brokers: str, topic: str, *, base_ms: int | None = None,
                       invalid: list[bytes] | None = None, rounds: int = 2) -> dict[int, int]:
    """VALID valid records (distinct timestamps from `base_ms`, default an hour ago) and `rounds`
    of each invalid value (keyed apart, so they spread over the partitions); returns end offsets."""
    producer = Producer({"bootstrap.servers": brokers, "acks": "all"})
    ends: dict[int, int] = {}
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(err)
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    if base_ms is None:
        base_ms = int(time.time() * 1000) - 3_600_000
    for i in range(VALID):
        doc = {"generatorID": f"gen-{i % 7}", "lat": 51.5, "lon": -0.12, "temperature": 30 + i % 10,
               "pressure": 1.0, "fuel": 1000 - i}
        producer.produce(topic, json.dumps(doc).encode(), key=str(i).encode(), timestamp=base_ms + i,
                         on_delivery=delivered)
    for n, value in enumerate((INVALID_VALUES if invalid is None else invalid) * rounds):
        producer.produce(topic, value, key=f"bad-{n}".encode(), on_delivery=delivered)
    assert producer.flush(30) == 0
    assert not errors, errors
    return ends


# --- the exposition -------------------------------------------------------------------------------

LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metrics_text(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample as (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        samples.append((name, dict(LABEL.findall(labels)), float(value)))
    return samples


def scrape(port: int) -> dict[str, float]:
    """Metric samples by their full name with labels, e.g. 'kis_ready' or
    'kis_records_consumed_total{topic="t"}'."""
    samples = {}
    for line in metrics_text(port).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def series(samples: list[tuple[str, dict[str, str], float]], name: str, **match: str) -> dict[tuple, float]:
    """Samples of metric `name` whose labels include `match`, keyed by their other labels'
    values in order (e.g. (topic, partition) -> value)."""
    out = {}
    for n, labels, value in samples:
        if n == name and all(labels.get(k) == v for k, v in match.items()):
            out[tuple(v for k, v in labels.items() if k not in match)] = value
    return out


def one(samples, name: str, **match: str) -> float:
    found = series(samples, name, **match)
    assert len(found) == 1, f"wanted one sample of {name} {match}, got {found}"
    return next(iter(found.values()))


def total(samples, name: str, **match: str) -> float:
    return sum(series(samples, name, **match).values())


def partition_series(samples, name: str, topic: str) -> dict[int, float]:
    return {int(p): v for (p,), v in series(samples, name, topic=topic).items()}


def excerpt(text: str, *prefixes: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.startswith(prefixes))


def status(port: int) -> dict:
    return requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()


def status_partitions(st: dict) -> dict[tuple[str, int], dict]:
    return {(p["topic"], p["partition"]): p for p in st["partitions"]}


def openmetrics_problems(text: str) -> list[str]:
    """Structural checks of an OpenMetrics 1.0 text exposition: `# EOF` last, HELP and TYPE per
    family, sample names that fit the family's type (`_total` for counters), units as name
    suffixes, no duplicate series, cumulative histogram buckets ending in +Inf = _count."""
    problems = []
    lines = text.split("\n")
    if not text.endswith("# EOF\n"):
        problems.append(f"the exposition does not end with '# EOF\\n': {text[-40:]!r}")
    families: dict[str, dict] = {}
    current = None
    seen = set()
    buckets: dict[tuple, list[tuple[float, float]]] = {}
    counts: dict[tuple, float] = {}
    suffixes = {"counter": ["_total", "_created"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count", "_created"],
                "info": ["_info"], "stateset": [""], "unknown": [""], "summary": ["", "_sum", "_count", "_created"],
                "gaugehistogram": ["_bucket", "_gsum", "_gcount"]}
    for line in lines[:-2]:  # the last two: "# EOF" and ""
        if line.startswith("# "):
            parts = line.split(" ", 3)
            kind, name = parts[1], parts[2]
            family = families.setdefault(name, {})
            if kind in family:
                problems.append(f"second {kind} line for {name}")
            family[kind] = parts[3] if len(parts) > 3 else ""
            if kind == "UNIT" and not name.endswith("_" + family[kind]):
                problems.append(f"{name}: UNIT {family[kind]} but the name does not end in _{family[kind]}")
            current = name
            continue
        if not line:
            problems.append("empty line inside the exposition")
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        label_map = dict(LABEL.findall(labels))
        family = families.get(current or "", {})
        kind = family.get("TYPE")
        if kind is None or not name.startswith(current or "\0") or name[len(current):] not in suffixes.get(kind, []):
            problems.append(f"sample {name} does not belong to the family declared before it ({current}, {kind})")
        if "HELP" not in family:
            problems.append(f"family {current} has no HELP")
        key = (name, tuple(sorted(label_map.items())))
        if key in seen:
            problems.append(f"duplicate series {head}")
        seen.add(key)
        if kind == "histogram":
            rest = tuple(sorted((k, v) for k, v in label_map.items() if k != "le"))
            if name.endswith("_bucket"):
                buckets.setdefault((current, rest), []).append((float(label_map["le"]), float(value)))
            elif name.endswith("_count"):
                counts[(current, rest)] = float(value)
    for key, bs in buckets.items():
        bounds = [b for b, _ in bs]
        values = [v for _, v in bs]
        if bounds != sorted(bounds) or not bounds or bounds[-1] != math.inf:
            problems.append(f"histogram {key}: bucket bounds {bounds} not increasing up to +Inf")
        if values != sorted(values):
            problems.append(f"histogram {key}: bucket counts {values} not cumulative")
        if bs and counts.get(key) != values[-1]:
            problems.append(f"histogram {key}: +Inf bucket {values[-1]} != _count {counts.get(key)}")
    return problems


def wait_until(predicate, timeout: float, what: str, sink) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in sink if isinstance(sink, list) else [sink]:
            s.assert_alive()
        if predicate():
            return
        time.sleep(0.3)
    sinks = sink if isinstance(sink, list) else [sink]
    tails = "".join(f"\n--- log tail of {s.log_path.name} ---\n{s.log_tail()}" for s in sinks)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{tails}")


def answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


# --- 1. after a run, the metrics agree with what landed -------------------------------------------

LANDED_PARTITIONS = 3
LANDED_BATCH_RECORDS = 40  # several batches, so that the histograms count more than one


@dataclass
class Landed:
    topic: str
    database: str
    ends: dict[int, int]
    produced_from_ms: int
    started: float  # Unix time the sink started
    scraped: float  # Unix time of the final scrape
    text: str  # the final /metrics body, OpenMetrics (what Prometheus asks for)
    content_type: str
    plain_text: str  # the same scrape without an Accept header: Prometheus text format 0.0.4
    plain_content_type: str
    st: dict  # the final /status
    ready: requests.Response
    healthz: int
    points: int  # InfluxDB's count
    dlq: list[dict]
    log: str  # the sink's log


@pytest.fixture(scope="module")
def landed(kafka, influx, make_sink) -> Landed:
    topic, group, port = unique("e2e-metrics"), unique("e2e-metrics-group"), free_port()
    create_topic(kafka, topic, LANDED_PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = unique("e2e_metrics").replace("-", "_")
    influx.create_database(database)
    produced_from_ms = int(time.time() * 1000) - 10_000  # recent: the latency histogram means something
    ends = produce_generators(kafka, topic, base_ms=produced_from_ms, invalid=[v for v, _, _ in LANDED_INVALID])
    assert sorted(ends) == list(range(LANDED_PARTITIONS)), f"records reached partitions {sorted(ends)} only"
    assert end_offsets(kafka, topic) == ends
    overrides = sink_overrides(topic=topic, group=group, database=database, extra={
        "KIS_METRICS__ENABLED": "true",
        "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
        "KIS_BATCH__MAX_RECORDS": str(LANDED_BATCH_RECORDS),
        **FAST_TELEMETRY,
    })
    try:
        started = time.time()
        with make_sink(overrides, name="metrics") as sink:
            wait_for_commits(kafka, group, topic, ends, sink)

            # Commit callbacks and statistics (every second) catch up with the commit.
            def settled() -> bool:
                samples = parse(metrics_text(port))
                parts = status_partitions(status(port))
                want = {p: float(e) for p, e in ends.items()}
                return (partition_series(samples, "kis_committed_offset", topic) == want
                        and partition_series(samples, "kis_consumer_lag", topic) == {p: 0.0 for p in ends}
                        and all(parts.get((topic, p), {}).get("end_offset") == e for p, e in ends.items()))

            try:
                wait_until(settled, 15, "committed offsets = end offsets and lag 0 in /metrics and /status", sink)
            except AssertionError as exc:
                text = metrics_text(port)
                raise AssertionError(
                    f"{exc}\nend offsets {ends}\n/metrics excerpt:\n"
                    + excerpt(text, "kis_consumer_lag", "kis_committed_offset", "kis_stored_offset")
                    + f"\n/status partitions: {json.dumps(status(port)['partitions'], indent=1)}") from None
            response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5, headers={
                "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"})
            plain = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            scraped = time.time()
            st = status(port)
            ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            healthz = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
        yield Landed(topic, database, ends, produced_from_ms, started, scraped, response.text,
                     response.headers.get("content-type", ""), plain.text, plain.headers.get("content-type", ""),
                     st, ready, healthz, influx.count(database),
                     read_topic(kafka, f"{topic}.dlq"), sink.log_text())
    finally:
        influx.drop_database(database)


def test_metrics_agree_with_what_landed(landed: Landed):
    run, samples, topic = landed, parse(landed.text), landed.topic
    produced = sum(run.ends.values())
    invalid = len(LANDED_INVALID) * 2
    assert produced == VALID + invalid
    assert run.healthz == 200
    assert run.ready.status_code == 200, run.ready.text
    assert one(samples, "kis_ready") == 1

    # Records: consumed = produced, points written = InfluxDB's count, by topic.
    assert series(samples, "kis_records_consumed_total") == {(topic,): produced}, excerpt(run.text, "kis_records")
    assert run.points == VALID
    assert series(samples, "kis_points_written_total") == {(topic,): run.points}, excerpt(run.text, "kis_points")

    # Dead letters: the counter by stage and reason = what the DLQ topic holds by stage and reason.
    in_dlq = Counter()
    for record in run.dlq:
        headers = {k: (v or b"").decode() for k, v in record["headers"]}
        assert headers[DLQ_HEADER + "topic"] == topic, headers
        in_dlq[(headers[DLQ_HEADER + "stage"], headers[DLQ_HEADER + "exception.class.name"])] += 1
    assert sum(in_dlq.values()) == invalid
    assert in_dlq == Counter((stage, reason) for _, stage, reason in LANDED_INVALID * 2)
    counted = {(stage, reason): v for (stage, reason), v in
               series(samples, "kis_records_dead_lettered_total", topic=topic).items()}
    assert counted == dict(in_dlq), excerpt(run.text, "kis_records_dead_lettered")
    assert series(samples, "kis_records_skipped_total") == {}

    # Batches: every histogram counts each durable batch once; every record is in exactly one.
    batches = one(samples, "kis_batches_written_total")
    assert batches >= math.ceil(produced / LANDED_BATCH_RECORDS), excerpt(run.text, "kis_batch")
    assert one(samples, "kis_batch_records_count") == batches
    assert one(samples, "kis_batch_records_sum") == produced
    assert one(samples, "kis_batch_bytes_count") == batches
    assert one(samples, "kis_batch_bytes_sum") > 0
    assert run.st["batches_written"] == batches

    # InfluxDB requests: every one answered 204 (a batch of dead letters only sends none), no retries.
    responses = series(samples, "kis_influxdb_responses_total")
    assert set(responses) == {("2xx", "204")}, excerpt(run.text, "kis_influxdb_responses")
    assert 1 <= responses[("2xx", "204")] <= batches
    assert one(samples, "kis_write_duration_seconds_count") == responses[("2xx", "204")]
    assert total(samples, "kis_write_retries_total") == 0, excerpt(run.text, "kis_write_retries")

    # Latency: one observation per point, from the record's Kafka timestamp to the acknowledgement.
    assert one(samples, "kis_end_to_end_latency_seconds_count") == run.points
    newest_ms, oldest_ms = run.produced_from_ms + VALID - 1, run.produced_from_ms
    latency_sum = one(samples, "kis_end_to_end_latency_seconds_sum")
    assert run.points * (run.started - newest_ms / 1000) <= latency_sum <= run.points * (run.scraped - oldest_ms / 1000), (
        f"latency sum {latency_sum} s for {run.points} points produced with timestamps "
        f"{oldest_ms}..{newest_ms} ms, sink running from {run.started} to {run.scraped}")
    assert time.time() - 120 < one(samples, "kis_last_durable_batch_timestamp_seconds") <= run.scraped

    # Offsets and lag per partition: committed = stored = end offsets, lag 0.
    ends = {p: float(e) for p, e in run.ends.items()}
    assert partition_series(samples, "kis_committed_offset", topic) == ends
    assert partition_series(samples, "kis_stored_offset", topic) == ends
    assert partition_series(samples, "kis_consumer_lag", topic) == {p: 0.0 for p in ends}
    assert one(samples, "kis_assigned_partitions") == LANDED_PARTITIONS
    assert one(samples, "kis_paused_partitions") == 0
    rebalances = series(samples, "kis_rebalances_total")
    assert rebalances.get(("assign",), 0) == rebalances.get(("revoke",), 0) + 1, rebalances  # assigned now

    # At rest: nothing buffered or in flight.
    assert one(samples, "kis_in_flight_bytes") == 0
    assert one(samples, "kis_buffered_bytes") == 0

    # No registry configured: no registry traffic.
    assert series(samples, "kis_schema_registry_requests_total") == {}
    assert series(samples, "kis_schema_cache_lookups_total") == {}


def test_status_agrees_with_what_landed(landed: Landed):
    run, st, samples = landed, landed.st, parse(landed.text)
    assert st["ready"] is True and st["not_ready_reason"] is None, st
    assert st["influxdb_last_error"] is None, st
    assert st["records_consumed"] == sum(run.ends.values())
    assert st["points_written"] == run.points
    assert run.started <= st["last_durable_write"] <= run.scraped
    assert st["assigned_partitions"] == LANDED_PARTITIONS

    # Exactly the assigned partitions, each settled at its end offset.
    partitions = status_partitions(st)
    assert sorted(partitions) == [(run.topic, p) for p in range(LANDED_PARTITIONS)], st["partitions"]
    letters_from = Counter(int(dict(r["headers"])[DLQ_HEADER + "partition"]) for r in run.dlq)
    for (_, p), part in partitions.items():
        end = run.ends[p]
        assert (part["end_offset"], part["committed_offset"], part["stored_offset"], part["lag"]) == (end, end, end, 0), part
        assert part["last_durable_write"] is not None and run.started <= part["last_durable_write"] <= run.scraped, part
        assert part["last_commit"] is not None and part["last_durable_write"] <= part["last_commit"] <= run.scraped, part
        assert part["batches_in_flight"] == 0 and part["paused"] is False, part
        # The last problem of a partition is its last dead-lettered record, if it had any.
        if letters_from[p]:
            assert part["last_error"] and "dead-lettered" in part["last_error"]["message"], part
        else:
            assert part["last_error"] is None, part

    # The build: the same in /status and kis_build_info, a real version and commit.
    (version, git_sha), = series(samples, "kis_build_info")
    cargo = (REPO_ROOT / "connector" / "Cargo.toml").read_text()
    assert re.search(rf'^version = "{re.escape(version)}"$', cargo, re.M), version
    assert (st["version"], st["git_sha"]) == (version, git_sha)
    assert re.fullmatch(r"[0-9a-f]{12}", git_sha), git_sha
    known = subprocess.run(["git", "cat-file", "-e", f"{git_sha}^{{commit}}"], cwd=REPO_ROOT, capture_output=True)
    assert known.returncode == 0, f"kis_build_info git_sha {git_sha} is not a commit of this repository"


def test_statistics_feed_the_metrics_not_the_log(landed: Landed):
    """statistics.interval.ms (README: settable in [kafka.properties]) makes librdkafka emit
    statistics; they belong in the metrics, and must not be dumped into the log at info level
    (rdkafka's default ClientContext logs every one as "Client stats: ...")."""
    dumps = [line for line in landed.log.splitlines() if "Client stats" in line]
    assert not dumps, (f"{len(dumps)} librdkafka statistics dumps in the sink's info-level log over a "
                       f"{landed.scraped - landed.started:.0f} s run, e.g.:\n{dumps[0][:600]}...")


def test_exposition_is_well_formed_openmetrics(landed: Landed):
    assert landed.content_type.startswith("application/openmetrics-text"), landed.content_type
    problems = openmetrics_problems(landed.text)
    assert not problems, "\n".join(problems) + "\n--- exposition ---\n" + landed.text


def test_exposition_passes_promtool_check_metrics(landed: Landed):
    """`curl .../metrics | promtool check metrics` must report no problem. Without an Accept
    header the sink serves the Prometheus text format 0.0.4, which promtool reads."""
    assert landed.plain_content_type.startswith("text/plain; version=0.0.4"), landed.plain_content_type
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (scripts/install-prerequisites.sh)",
                    pytrace=False)
    result = subprocess.run([promtool, "check", "metrics"], input=landed.plain_text, capture_output=True,
                            text=True, timeout=30)
    report = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not report, (
        f"promtool check metrics exited {result.returncode} on a scrape served as {landed.plain_content_type!r}:\n"
        f"{report}\n--- exposition ---\n{landed.plain_text}")
    # Same samples in both formats.
    samples = lambda text: sorted(l for l in text.splitlines() if l and not l.startswith("#"))  # noqa: E731
    assert samples(landed.plain_text) == samples(landed.text)


# --- 2. a missing database: unready, nothing committed, recovers by itself ------------------------

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
            samples = parse(metrics_text(port))
            assert one(samples, "kis_write_retries_total", cause="refused") >= 2
            assert series(samples, "kis_influxdb_responses_total").get(("4xx", "404"), 0) >= 2
            assert one(samples, "kis_ready") == 0

            influx.create_database(database)
            wait_for_commits(kafka, group, topic, ends, sink, timeout=60)
            wait_until(lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200, 30,
                       "/readyz to turn ready again", sink)
        assert influx.count(database) == VALID
        assert len(read_topic(kafka, f"{topic}.dlq")) == 2 * len(INVALID_VALUES)
    finally:
        influx.drop_database(database)


# --- 3. InfluxDB with authentication: a wrong password, then fixed on the server ------------------

def test_wrong_influxdb_password_means_unready_until_fixed_and_never_leaks(kafka, make_sink, tmp_path):
    server = PrivateInflux(tmp_path / "influxdb", auth=True)
    server.start()
    try:
        admin, _ = server.create_first_admin()
        topic, group, port = unique("e2e-auth"), unique("e2e-auth-group"), free_port()
        create_topic(kafka, topic, PARTITIONS)
        create_topic(kafka, f"{topic}.dlq", 1)
        database = unique("e2e_auth").replace("-", "_")
        admin.create_database(database)
        sink_password = unique("s3cret-pw")  # what the sink is configured with
        admin.command(f"CREATE USER \"kis\" WITH PASSWORD '{unique('other-pw')}'")
        admin.command(f'GRANT WRITE ON "{database}" TO "kis"')
        ends = produce_generators(kafka, topic)
        overrides = sink_overrides(topic=topic, group=group, database=database, extra={
            "KIS_INFLUXDB__URL": server.url,
            "KIS_INFLUXDB__USERNAME": "kis",
            "KIS_INFLUXDB__PASSWORD": sink_password,
            "KIS_INFLUXDB__RETRY_MAX_BACKOFF_MS": "1000",
            "KIS_METRICS__ENABLED": "true",
            "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
            "KIS_LOG__LEVEL": "info,kafka_influx_sink=debug",  # more log lines that could leak
            **FAST_TELEMETRY,
        })
        base = f"http://127.0.0.1:{port}"
        exposed: list[str] = []  # every body the sink served

        def get(path: str) -> requests.Response:
            response = requests.get(base + path, timeout=5)
            exposed.append(f"{path}: {response.text}")
            return response

        with make_sink(overrides, name="auth") as sink:
            def refused() -> bool:
                return answers(port) and get("/readyz").status_code == 503 and "401" in exposed[-1]

            wait_until(refused, 30, "/readyz 503 naming InfluxDB's 401", sink)
            # Several retries (backoff up to 1 s) and commit intervals (1 s) go by.
            time.sleep(3)
            readyz = get("/readyz")
            assert readyz.status_code == 503, readyz.text
            assert "InfluxDB" in readyz.text and "401" in readyz.text and "authorization failed" in readyz.text, readyz.text
            assert get("/healthz").status_code == 200
            text = get("/metrics").text
            samples = parse(text)
            assert one(samples, "kis_ready") == 0
            assert series(samples, "kis_influxdb_responses_total").get(("4xx", "401"), 0) >= 2, \
                excerpt(text, "kis_influxdb_responses")
            assert one(samples, "kis_write_retries_total", cause="refused") >= 2, excerpt(text, "kis_write_retries")
            assert total(samples, "kis_points_written_total") == 0 and one(samples, "kis_batches_written_total") == 0
            assert series(samples, "kis_committed_offset") == {} and series(samples, "kis_stored_offset") == {}, \
                excerpt(text, "kis_committed_offset", "kis_stored_offset")
            assert one(samples, "kis_in_flight_bytes") > 0
            st = get("/status").json()
            assert st["ready"] is False and "401" in (st["not_ready_reason"] or ""), st
            assert "401" in st["influxdb_last_error"]["message"], st
            parts = status_partitions(st)
            assert sorted(parts) == [(topic, p) for p in range(PARTITIONS)], st["partitions"]
            assert all(p["committed_offset"] is None and p["stored_offset"] is None and p["last_durable_write"] is None
                       for p in parts.values()), st["partitions"]
            waiting = [p for p in parts.values() if p["batches_in_flight"] > 0]
            assert waiting and all("401" in (p["last_error"] or {}).get("message", "") for p in waiting), st["partitions"]
            assert admin.count(database) == 0
            committed = committed_offsets(kafka, group, topic)
            assert all(offset is None for offset in committed.values()), (
                f"offsets committed while InfluxDB refused the credentials: {committed}")

            # Fixed on the server: the sink's password becomes the right one.
            admin.command(f"SET PASSWORD FOR \"kis\" = '{sink_password}'")
            wait_for_commits(kafka, group, topic, ends, sink, timeout=30)
            wait_until(lambda: get("/readyz").status_code == 200, 15, "/readyz to turn ready again", sink)
            assert admin.count(database) == VALID
            samples = parse(get("/metrics").text)
            assert one(samples, "kis_ready") == 1
            assert total(samples, "kis_points_written_total") == VALID
            assert series(samples, "kis_committed_offset", topic=topic) == {(str(p),): float(e) for p, e in ends.items()}
            st = get("/status").json()
            assert st["ready"] is True and st["not_ready_reason"] is None and st["influxdb_last_error"] is None, st
            assert st["points_written"] == VALID
        assert len(read_topic(kafka, f"{topic}.dlq")) == 2 * len(INVALID_VALUES)

        log = sink.log_text()
        assert "401" in log, "the log must say that InfluxDB refused the credentials"
        log_without_overrides = "\n".join(line for line in log.splitlines() if not line.startswith("### overrides:"))
        leaks = [where for where in ["the sink's log"] if sink_password in log_without_overrides]
        leaks += [body.split(":", 1)[0] for body in exposed if sink_password in body]
        assert not leaks, f"the InfluxDB password appears in: {leaks}"
    finally:
        server.stop()


# --- 4. two members: each reports only its own partitions ----------------------------------------

REBALANCE_PARTITIONS = 4
PARTITION_REF = re.compile(r"([^\s,\[]+)\[(\d+)\]")


def owned(sink, topic: str) -> set[int]:
    """The member's partitions according to its log: assigned ones added, revoked ones removed
    (with eager rebalancing a revocation lists every partition, with cooperative ones the moved)."""
    mine: set[int] = set()
    for line in sink.log_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        message = str(event.get("message", ""))
        refs = {int(p) for t, p in PARTITION_REF.findall(str(event.get("partitions", ""))) if t == topic}
        if message == "partitions assigned":
            mine |= refs
        elif message.startswith("partitions revoked"):
            mine -= refs
    return mine


@dataclass
class MemberView:
    owned: set[int]
    lag: dict[int, float]
    committed: dict[int, float]
    stored: dict[int, float]
    status: set[int]
    assigned_gauge: float
    revokes: float

    def consistent(self) -> bool:
        return bool(self.owned) and self.owned == set(self.lag) == set(self.committed) == self.status


def member_view(sink, port: int, topic: str) -> MemberView:
    samples = parse(metrics_text(port))
    st = status(port)
    return MemberView(
        owned=owned(sink, topic),
        lag=partition_series(samples, "kis_consumer_lag", topic),
        committed=partition_series(samples, "kis_committed_offset", topic),
        stored=partition_series(samples, "kis_stored_offset", topic),
        status={p["partition"] for p in st["partitions"] if p["topic"] == topic},
        assigned_gauge=one(samples, "kis_assigned_partitions"),
        revokes=series(samples, "kis_rebalances_total").get(("revoke",), 0),
    )


@pytest.mark.parametrize("strategy", ["default", "cooperative-sticky"])
def test_each_member_reports_only_its_own_partitions(strategy, kafka, influx, influx_db, make_sink):
    topic, group = unique("e2e-members"), unique("e2e-members-group")
    create_topic(kafka, topic, REBALANCE_PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    database = influx_db("e2e_members")
    ends = produce_generators(kafka, topic, rounds=1)
    assert sorted(ends) == list(range(REBALANCE_PARTITIONS))
    extra = {"KIS_LOG__LEVEL": "info", **FAST_TELEMETRY}
    if strategy != "default":
        extra["KIS_KAFKA__PROPERTIES__PARTITION_ASSIGNMENT_STRATEGY"] = strategy
    every = set(range(REBALANCE_PARTITIONS))
    ports = {"A": free_port(), "B": free_port()}
    sinks = {name: make_sink(sink_overrides(topic=topic, group=group, database=database, extra={
        **extra, "KIS_METRICS__ENABLED": "true", "KIS_METRICS__LISTEN": f"127.0.0.1:{ports[name]}"}),
        name=f"member-{name}") for name in ports}
    views: dict[str, MemberView] = {}

    def settled(names: list[str]) -> bool:
        for name in names:
            views[name] = member_view(sinks[name], ports[name], topic)
        return (all(views[n].consistent() for n in names)
                and sorted(p for n in names for p in views[n].owned) == sorted(every))

    def describe() -> str:
        return "; ".join(f"{n}: {v}" for n, v in views.items())

    a = sinks["A"].start()
    try:
        wait_until(lambda: answers(ports["A"]), 15, "A's /healthz", a)
        # A alone: every partition, committed to its end, lag 0.
        wait_for_commits(kafka, group, topic, ends, a, timeout=60)
        try:
            wait_until(lambda: settled(["A"]) and views["A"].committed == {p: float(e) for p, e in ends.items()},
                       20, "A's series to cover every partition at its end offset", a)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{describe()}") from None
        assert views["A"].lag == {p: 0.0 for p in every}, describe()
        before = views["A"]

        b = sinks["B"].start()
        wait_until(lambda: answers(ports["B"]), 15, "B's /healthz", b)
        try:
            wait_until(lambda: settled(["A", "B"]), 45,
                       "each member's lag/committed series and /status to cover exactly its own partitions", [a, b])
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{describe()}") from None
        va, vb = views["A"], views["B"]
        assert va.owned.isdisjoint(vb.owned) and va.owned | vb.owned == every, describe()
        assert va.revokes >= 1, f"A's partitions moved without a revoke event: {describe()}"
        for v in (va, vb):
            assert v.assigned_gauge == len(v.owned), describe()
            assert set(v.stored) <= v.owned, f"stored-offset series of partitions the member does not own: {describe()}"
            assert v.committed == {p: float(ends[p]) for p in v.owned}, describe()
            assert v.lag == {p: 0.0 for p in v.owned}, describe()

        # More records: each member commits its own partitions, and only those series move.
        more = produce_generators(kafka, topic, rounds=1)
        new_ends = {p: more.get(p, ends[p]) for p in every}
        wait_for_commits(kafka, group, topic, new_ends, [a, b], timeout=60)
        try:
            wait_until(lambda: settled(["A", "B"]) and all(
                views[n].committed == {p: float(new_ends[p]) for p in views[n].owned}
                and views[n].lag == {p: 0.0 for p in views[n].owned} for n in ("A", "B")),
                20, "each member's committed series at the new end offsets, lag 0", [a, b])
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nnew end offsets {new_ends}\n{describe()}") from None
        assert views["A"].owned == va.owned and views["B"].owned == vb.owned, f"a further rebalance: {describe()}"
        written = sum(total(parse(metrics_text(ports[n])), "kis_points_written_total") for n in ("A", "B"))
        assert written == influx.count(database) == 2 * VALID
        print(f"\nMEMBERS-SUMMARY {strategy}: before B joined, A: {before}; after: {describe()}")
        # B (not the group's first member, so not its leader) leaves first: see test_rebalance.py.
        b.stop()
        a.stop()
    finally:
        for s in sinks.values():
            s.kill()
