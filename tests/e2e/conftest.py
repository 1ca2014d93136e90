"""Fixtures for the end-to-end tests against the real local stack (Tansu + InfluxDB 1.6.7).

Start the stack first (`scripts/stack.sh start`) and build the sink (`cargo build`). The tests never
skip: an unreachable service or a missing binary fails them with a message saying what to do.

Environment:
  KIS_SINK_BIN       sink binary (default <repo>/target/debug/kafka-influx-sink)
  KIS_KAFKA_PORT     Tansu port on 127.0.0.1 (default 19092), as for scripts/stack.sh
  KIS_INFLUX_PORT    InfluxDB port on 127.0.0.1 (default 18086), as for scripts/stack.sh
  E2E_SINK_LOG_LEVEL log level given to the sink (default info)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, TopicPartition

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import kafka_admin  # noqa: E402  (scripts/kafka_admin.py)

CONFIG_FILE = REPO_ROOT / "config" / "local.toml"
SCHEMA_FILE = REPO_ROOT / "schemas" / "generator.schema.json"
KAFKA_BROKERS = "127.0.0.1:" + os.environ.get("KIS_KAFKA_PORT", "19092")
INFLUX_URL = "http://127.0.0.1:" + os.environ.get("KIS_INFLUX_PORT", "18086")
SINK_BIN = Path(os.environ.get("KIS_SINK_BIN", REPO_ROOT / "target" / "debug" / "kafka-influx-sink"))
SINK_LOG_LEVEL = os.environ.get("E2E_SINK_LOG_LEVEL", "info")

# Consumers in tests: Tansu completes a group join in about half of session.timeout.ms.
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


# --- services -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kafka() -> str:
    """Bootstrap servers of a Tansu broker that answers metadata requests."""
    try:
        kafka_admin.wait_ready(KAFKA_BROKERS, timeout=10)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Kafka (Tansu) is not reachable at {KAFKA_BROKERS}: {exc}\n"
                    "Start the local stack with: scripts/stack.sh start", pytrace=False)
    return KAFKA_BROKERS


@pytest.fixture(scope="session")
def influx() -> "Influx":
    client = Influx(INFLUX_URL)
    try:
        r = requests.get(f"{INFLUX_URL}/ping", timeout=5)
        ok = r.status_code == 204
        detail = f"HTTP {r.status_code}"
    except requests.RequestException as exc:
        ok, detail = False, str(exc)
    if not ok:
        pytest.fail(f"InfluxDB is not reachable at {INFLUX_URL} (/ping: {detail}).\n"
                    "Start the local stack with: scripts/stack.sh start", pytrace=False)
    return client


@pytest.fixture(scope="session")
def sink_bin() -> Path:
    if not (SINK_BIN.is_file() and os.access(SINK_BIN, os.X_OK)):
        pytest.fail(f"sink binary {SINK_BIN} not found or not executable: build it with `cargo build` "
                    "(or point KIS_SINK_BIN at it)", pytrace=False)
    return SINK_BIN


def unique(prefix: str) -> str:
    """A name no other test (or test run) uses: prefix + 12 hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def names():
    return unique


# --- InfluxDB -------------------------------------------------------------------------------------

class InfluxError(AssertionError):
    pass


class Influx:
    """Minimal InfluxDB 1.x /query client. Results come back with epoch=ms timestamps."""

    def __init__(self, url: str, verify: bool | str = True):
        self.url = url
        self.verify = verify  # requests' `verify`: True, or a CA bundle for an https:// InfluxDB

    def _check(self, r: requests.Response, q: str) -> list[dict]:
        try:
            body = r.json()
        except ValueError:
            raise InfluxError(f"InfluxDB answered {r.status_code} with non-JSON {r.text[:300]!r} to {q!r}")
        if r.status_code != 200 or "error" in body:
            raise InfluxError(f"InfluxDB answered {r.status_code} {body} to {q!r}")
        results = body.get("results", [])
        for res in results:
            if "error" in res:  # e.g. "database not found" comes back with HTTP 200
                raise InfluxError(f"InfluxDB error {res['error']!r} for {q!r}")
        return results

    def command(self, q: str) -> None:
        r = requests.post(f"{self.url}/query", data={"q": q}, timeout=30, verify=self.verify)
        self._check(r, q)

    def create_database(self, db: str) -> None:
        self.command(f'CREATE DATABASE "{db}"')

    def drop_database(self, db: str) -> None:
        self.command(f'DROP DATABASE "{db}"')

    def query(self, db: str, q: str) -> list[dict]:
        """Rows of the first statement's first series as dicts (empty list when no series)."""
        r = requests.get(f"{self.url}/query", params={"db": db, "q": q, "epoch": "ms"}, timeout=30,
                         verify=self.verify)
        results = self._check(r, q)
        series = results[0].get("series", []) if results else []
        rows = []
        for s in series:
            cols = s["columns"]
            for values in s["values"]:
                rows.append(dict(zip(cols, values)))
        return rows

    def count(self, db: str, field: str = "fuel", measurement: str = "generator") -> int:
        rows = self.query(db, f'SELECT count("{field}") FROM "{measurement}"')
        return rows[0]["count"] if rows else 0

    def field_types(self, db: str, measurement: str = "generator") -> dict[str, str]:
        return {r["fieldKey"]: r["fieldType"] for r in self.query(db, f'SHOW FIELD KEYS FROM "{measurement}"')}

    def tag_keys(self, db: str, measurement: str = "generator") -> list[str]:
        return [r["tagKey"] for r in self.query(db, f'SHOW TAG KEYS FROM "{measurement}"')]


def influxql_string(s: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.fixture
def influx_db(influx):
    """Creates a fresh database (dropped afterwards unless E2E_KEEP_DATA=1)."""
    created = []

    def make(prefix: str = "e2e") -> str:
        db = unique(prefix).replace("-", "_")
        influx.create_database(db)
        created.append(db)
        return db

    yield make
    if os.environ.get("E2E_KEEP_DATA") != "1":
        for db in created:
            influx.drop_database(db)


# --- Kafka helpers --------------------------------------------------------------------------------

def create_topic(brokers: str, name: str, partitions: int) -> None:
    assert kafka_admin.create_topic(brokers, name, partitions), f"topic {name} already existed"
    n = kafka_admin.partition_count(brokers, name)
    assert n == partitions, f"topic {name} has {n} partitions, wanted {partitions}"


def end_offsets(brokers: str, topic: str) -> dict[int, int]:
    return {p: high for p, (_low, high) in kafka_admin.watermarks(brokers, topic).items()}


def committed_offsets(brokers: str, group: str, topic: str) -> dict[int, int | None]:
    return kafka_admin.committed_offsets(brokers, group, topic)


def read_topic(brokers: str, topic: str, timeout: float = 60.0) -> list[dict]:
    """Every record of `topic` (all partitions, from the start) as dicts, without joining a group."""
    n = kafka_admin.partition_count(brokers, topic)
    assert n is not None, f"topic {topic} does not exist"
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": unique("e2e-reader"),  # assign() only: never joins or commits
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    records: list[dict] = []
    done: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(n)])
        deadline = time.monotonic() + timeout
        while len(done) < n:
            assert time.monotonic() < deadline, f"could not read {topic} to its end within {timeout}s"
            msg = consumer.poll(0.5)
            if msg is None:  # NB: `if not msg` is wrong: a Message with an empty value is falsy
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
                    continue
                raise AssertionError(f"error reading {topic}: {err}")
            done.discard(msg.partition())
            records.append({
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": msg.key(),
                "value": msg.value(),
                "headers": list(msg.headers() or []),
                "timestamp": msg.timestamp(),
            })
    finally:
        consumer.close()
    return records


# --- the sink process -----------------------------------------------------------------------------

_started_sinks: list["Sink"] = []


class Sink:
    """The sink binary as a child process, configured by KIS_* environment overrides.

    Its stdout and stderr go to a log file under the test's tmp_path; the log is attached to the
    report of a failing test. Use as a context manager, or call start()/stop()."""

    def __init__(self, binary: Path, log_path: Path, overrides: dict[str, str], config: Path = CONFIG_FILE):
        self.binary = binary
        self.config = config
        self.log_path = log_path
        self.overrides = dict(overrides)
        self.proc: subprocess.Popen | None = None
        self._log = None

    def env(self) -> dict[str, str]:
        # Drop inherited KIS_* variables (e.g. the stack's KIS_KAFKA_PORT): the sink reads KIS_*
        # as configuration overrides.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.overrides)
        return env

    def start(self) -> "Sink":
        assert self.proc is None, "sink already started"
        self._log = open(self.log_path, "ab")
        self._log.write(f"### {self.binary} run --config {self.config}\n### overrides: "
                        f"{json.dumps(self.overrides, sort_keys=True)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [str(self.binary), "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=self.env(), cwd=REPO_ROOT, start_new_session=True,
        )
        _started_sinks.append(self)
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def assert_alive(self) -> None:
        assert self.proc is not None, "sink not started"
        rc = self.proc.poll()
        assert rc is None, f"sink exited unexpectedly with code {rc}; log tail:\n{self.log_tail()}"

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, assert exit code 0 (graceful shutdown)."""
        assert self.proc is not None, "sink not started"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self._close_log()
                raise AssertionError(f"sink did not exit within {timeout}s of SIGTERM (killed); "
                                     f"log tail:\n{self.log_tail()}")
        self._close_log()
        rc = self.proc.returncode
        assert rc == 0, f"sink exited with code {rc} after SIGTERM, wanted 0; log tail:\n{self.log_tail()}"
        return rc

    def crash(self) -> int:
        """SIGKILL: the process dies at once, without writing, committing or leaving its group.
        Returns the exit status (-9)."""
        assert self.proc is not None, "sink not started"
        self.assert_alive()
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(10)
        self._close_log()
        return rc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.kill()


def env_list(values: list[str]) -> str:
    """A list-valued KIS_* override: a TOML array literal, e.g. ["t1"] (the documented form).
    E2E_ENV_LIST_STYLE=comma gives the comma-separated form t1,t2 instead."""
    if os.environ.get("E2E_ENV_LIST_STYLE") == "comma":
        return ",".join(values)
    return json.dumps(values)  # a JSON array of strings is also a TOML array literal


def sink_overrides(*, topic: str, group: str, database: str, dlq: str | None = None,
                   extra: dict[str, str] | None = None) -> dict[str, str]:
    """KIS_* overrides pointing the sink at the test's topic, group, database and DLQ topic."""
    env = {
        "KIS_KAFKA__BROKERS": env_list([KAFKA_BROKERS]),
        "KIS_KAFKA__TOPICS": env_list([topic]),
        "KIS_KAFKA__GROUP_ID": group,
        "KIS_INFLUXDB__URL": INFLUX_URL,
        "KIS_INFLUXDB__DATABASE": database,
        "KIS_METRICS__ENABLED": "false",
        "KIS_LOG__LEVEL": SINK_LOG_LEVEL,
    }
    if dlq is not None:
        env["KIS_DEAD_LETTER__TOPIC"] = dlq
    env.update(extra or {})
    return env


@pytest.fixture(scope="module")
def make_sink(sink_bin, tmp_path_factory):
    """make_sink(overrides, name="sink") -> Sink (not started); killed at module teardown if running."""
    made: list[Sink] = []
    d = tmp_path_factory.mktemp("sinks")

    def make(overrides: dict[str, str], name: str = "sink", config: Path = CONFIG_FILE) -> Sink:
        s = Sink(sink_bin, d / f"{len(made):02d}-{name}.log", overrides, config)
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


def wait_for_commits(brokers: str, group: str, topic: str, expected: dict[int, int],
                     sink: Sink | list[Sink], timeout: float = 120.0) -> dict[int, int | None]:
    """Waits until `group` has committed exactly `expected` ({partition: end offset}) on `topic`.
    `sink` is the group's member, or a list of them: every one must stay alive meanwhile."""
    sinks = sink if isinstance(sink, list) else [sink]
    deadline = time.monotonic() + timeout
    committed: dict[int, int | None] = {}
    while time.monotonic() < deadline:
        for s in sinks:
            s.assert_alive()
        committed = committed_offsets(brokers, group, topic)
        if committed == expected:
            return committed
        for p, off in committed.items():
            assert off is None or off <= expected.get(p, 0), (
                f"group {group} committed offset {off} on {topic}[{p}] beyond its end {expected.get(p)}")
        time.sleep(0.5)
    tails = "".join(f"\n--- log tail of {s.log_path.name} ---\n{s.log_tail()}" for s in sinks)
    raise AssertionError(f"group {group} did not commit the end offsets of {topic} within {timeout}s: "
                         f"committed {committed}, end offsets {expected}{tails}")


# --- attach sink logs to failing tests ------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        # The most recent sinks are the ones this test (or its module fixtures) started.
        for s in _started_sinks[-3:]:
            if s.log_path.exists():
                report.sections.append((f"sink log {s.log_path}", s.log_tail(150)))


# --- a private InfluxDB ---------------------------------------------------------------------------

def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateInflux:
    """An influxd of a test's own (the stack's InfluxDB 1.6.7 binary): config, data, WAL and log
    under `root`, loopback ports. With `auth=True` it runs with auth-enabled = true;
    `create_first_admin()` then makes the admin user and returns a client logged in as it.

    With `certificate` (a PEM file; `private_key` defaults to the same file) it serves HTTPS only
    (`https-enabled = true`), and `url` is an https:// URL. `verify` is what the test's own clients
    (the /ping wait, `create_first_admin()`, the returned `Influx`) trust: a PEM CA bundle, or
    True for the system roots. `use_certificate()` swaps the certificate for the next start()
    (data, WAL and meta directories stay), e.g. to restart the same server with another one."""

    def __init__(self, root: Path, *, auth: bool = False, certificate: Path | None = None,
                 private_key: Path | None = None, verify: bool | str | Path = True):
        self.root = root
        self.auth = auth
        self.certificate = certificate
        self.private_key = private_key
        self.verify = str(verify) if isinstance(verify, Path) else verify
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.log_path = root / "influxd.log"
        for d in ("meta", "data", "wal"):
            (root / d).mkdir(parents=True, exist_ok=True)

    @property
    def https(self) -> bool:
        return self.certificate is not None

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def use_certificate(self, certificate: Path | None, private_key: Path | None = None) -> None:
        """The certificate (and key) the next start() serves; None: plain HTTP."""
        assert self.proc is None or self.proc.poll() is not None, "stop influxd before changing its certificate"
        self.certificate, self.private_key = certificate, private_key

    def _config(self, http_port: int) -> Path:
        path = self.root / f"influxdb-{http_port}.conf"
        https = ""
        if self.https:
            https = (f'  https-enabled = true\n  https-certificate = "{self.certificate}"\n'
                     f'  https-private-key = "{self.private_key or self.certificate}"\n')
        path.write_text(f"""\
reporting-disabled = true
reporting-enabled = false
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{self.root}/meta"
  logging-enabled = false
[data]
  dir = "{self.root}/data"
  wal-dir = "{self.root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false
{https}[logging]
  suppress-logo = true
  level = "warn"
""")
        return path

    def start(self, http_port: int | None = None) -> str:
        """Starts influxd on `http_port` (default: its own port); returns its URL once /ping answers
        (over HTTPS, checked against `verify`)."""
        assert self.proc is None or self.proc.poll() is not None, "influxd already running"
        port = http_port or self.port
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["influxd", "run", "-config", str(self._config(port))], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"{self.scheme}://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        last = "no answer"
        while True:
            assert self.proc.poll() is None, f"influxd exited with {self.proc.returncode}; see {self.log_path}"
            try:
                r = requests.get(f"{url}/ping", timeout=1, verify=self.verify)
                if r.status_code == 204:
                    return url
                last = f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                last = str(exc)
            assert time.monotonic() < deadline, f"influxd did not answer /ping on {url} within 30 s: {last}"
            time.sleep(0.1)

    def client(self, username: str | None = None, password: str | None = None) -> "Influx":
        """An `Influx` client of this server (logged in when given credentials)."""
        login = f"{username}:{password}@" if username is not None else ""
        return Influx(f"{self.scheme}://{login}127.0.0.1:{self.port}", verify=self.verify)

    def create_first_admin(self) -> tuple["Influx", str]:
        """With auth enabled and no user yet, InfluxDB 1.x accepts exactly one statement without
        credentials: creating the first admin. Returns a client logged in as it, and its password."""
        assert self.auth, "create_first_admin needs auth=True"
        password = unique("admin-pw")
        r = requests.post(f"{self.url}/query", timeout=10, verify=self.verify, data={
            "q": f"CREATE USER admin WITH PASSWORD '{password}' WITH ALL PRIVILEGES"})
        assert r.status_code == 200 and "error" not in r.text, r.text
        r = requests.post(f"{self.url}/query", timeout=10, verify=self.verify, data={"q": "SHOW DATABASES"})
        assert r.status_code == 401, f"auth is not enabled: SHOW DATABASES without credentials answered {r.status_code}"
        return self.client("admin", password), password

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
