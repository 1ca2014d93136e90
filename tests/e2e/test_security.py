"""Security of the InfluxDB connection against real services (Tansu + a private InfluxDB 1.6.7).

Certificates are made by the test (the `cryptography` package): two unrelated CAs, CA-A and
CA-B, each with a server certificate for 127.0.0.1 and localhost (SAN IP and DNS), and a client
certificate signed by CA-A.

1. HTTPS + authentication: influxd serving CA-A's certificate with auth-enabled; the sink trusts
   CA-A (influxdb.ca_file) and logs in as a non-admin user with only WRITE (password_file). Every
   point lands, the group commits the end offsets, /readyz is 200.
2. Untrusted certificate, then fixed: influxd presents CA-B's certificate. The sink is unready
   (/readyz 503 naming TLS), logs exactly one ERROR line over more than ten seconds of retries
   (the retries at debug), writes and commits nothing. influxd is restarted on the same port with
   CA-A's certificate: the same sink process recovers on its own and everything lands.
3. Wrong password, then fixed on the server (SET PASSWORD): unready, nothing written or
   committed; then everything lands and commits, without restarting the sink.
4. Mutual TLS, against a stand-in (InfluxDB 1.6.7 cannot require client certificates): with the
   client certificate the sink writes and commits; without it, it is unready (TLS) and commits
   nothing.
5. insecure_skip_verify: against CA-B's certificate with no ca_file, the sink writes only with
   insecure_skip_verify = true, and warns about it (log and check-config).
6. Secrets never leak: a whole run at log level trace with librdkafka debug contexts on, through
   HTTPS + auth with a wrong-password phase and its recovery; the sink's stderr, check-config's
   output and the /metrics, /status, /readyz and /healthz bodies hold none of the configured
   secrets (InfluxDB password, a librdkafka ssl.keystore.password, Schema Registry basic-auth),
   nor the InfluxDB Basic-auth header value. check-config refuses URLs carrying credentials
   (exit code 2) without printing them.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from conftest import (
    CONFIG_FILE,
    REPO_ROOT,
    PrivateInflux,
    committed_offsets,
    create_topic,
    free_port,
    influxql_string,
    sink_overrides,
    unique,
    wait_for_commits,
)
from pki import TestCA
from test_metrics_health import VALID as RECORDS, produce_generators
from test_metrics_health import FAST_TELEMETRY, answers, parse, series, wait_until

PARTITIONS = 2
REFUSAL = "InfluxDB refuses writes; nothing is committed and the batch is retried until this is fixed"
INSECURE_WARNING = "warning: influxdb.insecure_skip_verify = true: "
# For sinks stopped while InfluxDB still refuses them: the batch in flight can never become durable,
# so do not wait the default 20 s for it (it stays uncommitted either way).
QUICK_SHUTDOWN = {"KIS_SHUTDOWN__TIMEOUT_MS": "2000"}


# --- certificates ---------------------------------------------------------------------------------

@dataclass
class Pki:
    ca_a: Path
    ca_b: Path
    ca_both: Path  # CA-A and CA-B: what the test's own clients trust
    server_a: Path
    server_a_key: Path
    server_b: Path
    server_b_key: Path
    client_a: Path
    client_a_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_a, ca_b = TestCA(d / "a", "kis e2e CA-A"), TestCA(d / "b", "kis e2e CA-B")
    server_a, server_b = ca_a.issue("server", server=True), ca_b.issue("server", server=True)
    client_a = ca_a.issue("kis-e2e-sink", server=False)
    both = d / "ca-both.pem"
    both.write_bytes(ca_a.cert.read_bytes() + ca_b.cert.read_bytes())
    return Pki(ca_a=ca_a.cert, ca_b=ca_b.cert, ca_both=both,
               server_a=server_a.cert, server_a_key=server_a.key,
               server_b=server_b.cert, server_b_key=server_b.key,
               client_a=client_a.cert, client_a_key=client_a.key)


# --- helpers --------------------------------------------------------------------------------------

def fresh_topic(kafka: str, prefix: str) -> tuple[str, str, dict[int, int]]:
    """A new topic (with its DLQ topic) holding RECORDS records; returns (topic, group, end offsets)."""
    topic = unique(prefix)
    create_topic(kafka, topic, PARTITIONS)
    create_topic(kafka, f"{topic}.dlq", 1)
    return topic, unique(f"{prefix}-group"), produce_generators(kafka, topic, invalid=[], rounds=0)


def overrides(*, topic: str, group: str, database: str, url: str, port: int, **extra: str) -> dict[str, str]:
    """The sink pointed at `url`, metrics on `port`, retries at most 1 s apart, sink debug logs."""
    return sink_overrides(topic=topic, group=group, database=database, extra={
        "KIS_INFLUXDB__URL": url,
        "KIS_INFLUXDB__RETRY_MAX_BACKOFF_MS": "1000",
        "KIS_METRICS__ENABLED": "true",
        "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
        "KIS_LOG__LEVEL": "info,kafka_influx_sink=debug",
        "KIS_LOG__FORMAT": "json",
        **FAST_TELEMETRY,
        **{f"KIS_INFLUXDB__{k.upper()}": v for k, v in extra.items()},
    })


def events(sink) -> list[dict]:
    """The sink's JSON log lines."""
    out = []
    for line in sink.log_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def refusal_lines(sink) -> list[dict]:
    return [e for e in events(sink) if e.get("message") == REFUSAL]


def loud_lines(sink) -> list[dict]:
    """WARN and ERROR lines."""
    return [e for e in events(sink) if e.get("level") in ("WARN", "ERROR")]


def readyz(port: int) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)


def nothing_committed(kafka: str, group: str, topic: str) -> None:
    committed = committed_offsets(kafka, group, topic)
    assert all(offset is None for offset in committed.values()), f"offsets committed while nothing was durable: {committed}"


def wait_unready(port: int, sink, needle: str, timeout: float = 30) -> str:
    """Waits for /readyz 503 whose body contains `needle`; returns the body."""
    seen: list[str] = []

    def check() -> bool:
        if not answers(port):
            return False
        r = readyz(port)
        seen.append(f"{r.status_code} {r.text}")
        return r.status_code == 503 and needle in r.text

    try:
        wait_until(check, timeout, f"/readyz 503 mentioning {needle!r}", sink)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast /readyz answers: {seen[-3:]}") from None
    return seen[-1]


def wait_ready(port: int, sink, timeout: float = 20) -> None:
    seen: list[str] = []

    def check() -> bool:
        r = readyz(port)
        seen.append(f"{r.status_code} {r.text}")
        return r.status_code == 200

    try:
        wait_until(check, timeout, "/readyz 200", sink)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast /readyz answers: {seen[-3:]}") from None


def check_config(sink_bin: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`check-config` with the sink's config file and these KIS_* overrides (inherited ones dropped)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    full_env.update(env)
    return subprocess.run([str(sink_bin), "check-config", "--config", str(CONFIG_FILE)], capture_output=True,
                          text=True, env=full_env, cwd=REPO_ROOT, timeout=60)


FIRST_FAILURES = (REFUSAL, "InfluxDB write failed; retrying without committing")


def first_failure(sink) -> dict | None:
    """The sink's first log line about a failed write (an ERROR refusal or a WARN transient failure)."""
    return next((e for e in events(sink) if e.get("message") in FIRST_FAILURES), None)


def write_retries(port: int) -> dict[str, float]:
    """kis_write_retries_total by cause."""
    return {k[0]: v for k, v in series(parse(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text),
                                         "kis_write_retries_total").items()}


def refusal_problems(sink, answers_seen: list[tuple[int, str]], needle: str) -> list[str]:
    """How the sink's report of a refusal (TLS, 401) falls short, given the /readyz answers seen
    while InfluxDB refused it: every answer 503 naming `needle`; exactly one ERROR line
    (REFUSAL) naming it; the later retries at debug only. A flood (more than one WARN/ERROR line
    about the failure) is a problem too."""
    problems = []
    bad = [a for a in answers_seen if a[0] != 503 or needle not in a[1]]
    if bad or not answers_seen:
        problems.append(f"{len(bad)} of {len(answers_seen)} /readyz answers were not 503 naming {needle!r}, "
                        f"e.g. {bad[:2]}")
    refusals = refusal_lines(sink)
    if len(refusals) != 1 or needle not in str(refusals[0].get("error", "")) or refusals[0].get("level") != "ERROR":
        problems.append(f"wanted exactly one ERROR line '{REFUSAL}' naming {needle!r}, got {len(refusals)}: "
                        + "; ".join(json.dumps(e) for e in refusals[:3]))
    first = first_failure(sink)
    if first is not None:
        detail = str(first.get("error", ""))
        loud = [e for e in loud_lines(sink) if e.get("message") in FIRST_FAILURES]
        if len(loud) != 1:
            problems.append(f"{len(loud)} WARN/ERROR lines about the failed write, wanted one (a log flood?): "
                            + "; ".join(json.dumps(e) for e in loud[:3]))
        if first.get("level") != "ERROR":
            problems.append(f"the failure was logged at {first.get('level')}, not ERROR: {json.dumps(first)}")
        retries = [e for e in events(sink) if e.get("message") == "InfluxDB write retry"]
        if not retries or any(e.get("level") != "DEBUG" for e in retries):
            problems.append(f"the later retries should be logged at DEBUG: "
                            f"{sorted({e.get('level') for e in retries})} in {len(retries)} lines")
        if retries and detail and not all(e.get("error") == detail for e in retries):
            problems.append("the retries report another error than the first failure")
    else:
        problems.append("no log line about the failed write")
    return problems


def expect_refusal(port: int, sink, needle: str, seconds: float) -> list[str]:
    """Waits for the first failed write, samples /readyz for `seconds`, returns refusal_problems()."""
    wait_until(lambda: first_failure(sink) is not None, 30, "the first failed write", sink)
    since = time.monotonic()
    answers_seen = []
    while time.monotonic() - since < seconds:
        r = readyz(port)
        answers_seen.append((r.status_code, r.text.strip()))
        time.sleep(0.5)
    return refusal_problems(sink, answers_seen, needle)


def https_influx(tmp_path: Path, pki: Pki, *, auth: bool, server: str = "a") -> PrivateInflux:
    """A private influxd serving CA-A's (server="a") or CA-B's server certificate over HTTPS."""
    if shutil.which("influxd") is None:
        pytest.fail("influxd is not installed: run scripts/stack.sh install", pytrace=False)
    cert, key = (pki.server_a, pki.server_a_key) if server == "a" else (pki.server_b, pki.server_b_key)
    influxd = PrivateInflux(tmp_path / "influxdb", auth=auth, certificate=cert, private_key=key, verify=pki.ca_both)
    influxd.start()
    return influxd


def sink_user(admin, database: str, password: str) -> None:
    """A non-admin user `sink` that may only write to `database`."""
    admin.command(f"CREATE USER \"sink\" WITH PASSWORD {influxql_string(password)}")
    admin.command(f'GRANT WRITE ON "{database}" TO "sink"')


# --- 1. HTTPS + auth ------------------------------------------------------------------------------

def test_https_with_auth_writes_everything(kafka, make_sink, pki, tmp_path):
    influxd = https_influx(tmp_path, pki, auth=True)
    try:
        admin, _ = influxd.create_first_admin()
        database = unique("e2e_tls").replace("-", "_")
        admin.create_database(database)
        password = unique("sink-pw")
        sink_user(admin, database, password)
        password_file = tmp_path / "influx-password"
        password_file.write_text(password + "\n")
        topic, group, ends = fresh_topic(kafka, "e2e-tls")
        port = free_port()
        with make_sink(overrides(topic=topic, group=group, database=database, url=influxd.url, port=port,
                                 ca_file=str(pki.ca_a), username="sink", password_file=str(password_file)),
                       name="https-auth") as sink:
            wait_for_commits(kafka, group, topic, ends, sink, timeout=60)
            wait_ready(port, sink)
            assert admin.count(database) == RECORDS
            assert refusal_lines(sink) == [], sink.log_tail()
        assert influxd.url.startswith("https://")
    finally:
        influxd.stop()


# --- 2. an untrusted certificate, then a trusted one -----------------------------------------------

def test_untrusted_certificate_is_one_error_then_recovers_without_restart(kafka, make_sink, pki, tmp_path):
    influxd = https_influx(tmp_path, pki, auth=False, server="b")
    try:
        admin = influxd.client()
        database = unique("e2e_tls_ca").replace("-", "_")
        admin.create_database(database)
        topic, group, ends = fresh_topic(kafka, "e2e-tls-ca")
        port = free_port()
        sink = make_sink(overrides(topic=topic, group=group, database=database, url=influxd.url, port=port,
                                   ca_file=str(pki.ca_a)), name="wrong-ca").start()
        try:
            wait_until(lambda: first_failure(sink) is not None, 30, "the first failed write", sink)
            attempts_then = write_retries(port)
            # Reporting problems are collected, so that one run shows all of them and the
            # recovery below is still checked; losing or committing data fails at once.
            problems = expect_refusal(port, sink, "TLS", 11)
            attempts = write_retries(port)
            assert sum(attempts.values()) - sum(attempts_then.values()) >= 5, (
                f"write retries in 11 s (backoff at most 1 s): {attempts_then} -> {attempts}: is the write retried?")
            if attempts.get("tls", 0) - attempts_then.get("tls", 0) < 5:
                problems.append(f"kis_write_retries_total by cause went {attempts_then} -> {attempts}: "
                                "the retries are not counted as cause=\"tls\"")
            line = refusal_lines(sink)[:1]
            if line and not (str(line[0].get("error")).startswith("TLS: ") and "influxdb.ca_file" in line[0]["error"]):
                problems.append(f"the refusal's error does not start with 'TLS: ' and name influxdb.ca_file: {line[0]}")
            assert admin.count(database) == 0
            nothing_committed(kafka, group, topic)

            # The same server, now with a certificate the sink trusts; the sink keeps running.
            influxd.stop()
            influxd.use_certificate(pki.server_a, pki.server_a_key)
            influxd.start()
            wait_for_commits(kafka, group, topic, ends, sink, timeout=45)
            wait_ready(port, sink)
            assert admin.count(database) == RECORDS
            assert any(e.get("message") == "InfluxDB accepts writes again" for e in events(sink)), sink.log_tail()
            if len(refusal_lines(sink)) > 1:
                problems.append(f"{len(refusal_lines(sink))} refusal lines after the restart, wanted one")
            assert sink.log_text().count("### overrides:") == 1, "the sink was restarted"
            sink.stop()
            assert not problems, "the untrusted certificate was not reported as it should be:\n- " + "\n- ".join(problems)
        finally:
            sink.kill()
    finally:
        influxd.stop()


# --- 3. a wrong password, then fixed on the server ------------------------------------------------

def test_wrong_password_is_unready_until_fixed_on_the_server(kafka, make_sink, pki, tmp_path):
    influxd = https_influx(tmp_path, pki, auth=True)
    try:
        admin, _ = influxd.create_first_admin()
        database = unique("e2e_tls_pw").replace("-", "_")
        admin.create_database(database)
        configured = unique("sink-pw")
        sink_user(admin, database, unique("other-pw"))
        password_file = tmp_path / "influx-password"
        password_file.write_text(configured)
        topic, group, ends = fresh_topic(kafka, "e2e-tls-pw")
        port = free_port()
        with make_sink(overrides(topic=topic, group=group, database=database, url=influxd.url, port=port,
                                 ca_file=str(pki.ca_a), username="sink", password_file=str(password_file)),
                       name="wrong-password") as sink:
            body = wait_unready(port, sink, "401")
            assert "InfluxDB" in body, body
            problems = expect_refusal(port, sink, "401", 4)  # retries and commit intervals (1 s) go by
            assert not problems, "the wrong password was not reported as it should be:\n- " + "\n- ".join(problems)
            assert admin.count(database) == 0
            nothing_committed(kafka, group, topic)

            admin.command(f"SET PASSWORD FOR \"sink\" = {influxql_string(configured)}")
            wait_for_commits(kafka, group, topic, ends, sink, timeout=30)
            wait_ready(port, sink)
            assert admin.count(database) == RECORDS
    finally:
        influxd.stop()


# --- 4. mutual TLS --------------------------------------------------------------------------------

class MutualTlsWriteServer:
    """A STAND-IN for InfluxDB, not InfluxDB: InfluxDB 1.6.7 cannot require client certificates,
    so this in-test HTTPS server (http.server + ssl) does. It serves CA-A's server certificate,
    requires a client certificate signed by CA-A (verify_mode = CERT_REQUIRED), answers every
    POST /write with 204 (no parsing, no storage beyond memory) and records the request bodies,
    gunzipped, with the `db` parameter and the client certificate's subject."""

    def __init__(self, pki: Pki):
        self.requests: list[dict] = []
        self.handshake_failures: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_a, pki.server_a_key)
        context.load_verify_locations(cafile=str(pki.ca_a))
        context.verify_mode = ssl.CERT_REQUIRED
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                url = urlparse(self.path)
                peer = dict(x[0] for x in self.connection.getpeercert().get("subject", ()))
                owner.requests.append({"path": url.path, "db": parse_qs(url.query).get("db", [None])[0],
                                       "lines": body.decode().splitlines(), "peer": peer.get("commonName")})
                self.send_response(204 if url.path == "/write" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                # The handshake runs in the handler thread, so a failing client blocks no one.
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def finish_request(self, request, client_address):
                try:
                    request.settimeout(10)
                    request.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    owner.handshake_failures.append(str(exc))
                    return
                super().finish_request(request, client_address)

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="mtls-standin", daemon=True)

    def lines(self, db: str) -> list[str]:
        return [line for r in self.requests if r["db"] == db and r["path"] == "/write" for line in r["lines"]]

    def __enter__(self) -> "MutualTlsWriteServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_mutual_tls_client_certificate(kafka, make_sink, pki):
    topic, group, ends = fresh_topic(kafka, "e2e-mtls")
    without_group = unique("e2e-mtls-nocert-group")
    with MutualTlsWriteServer(pki) as standin:
        ports = {"cert": free_port(), "nocert": free_port()}
        with_cert = make_sink(overrides(topic=topic, group=group, database="with_cert", url=standin.url,
                                        port=ports["cert"], ca_file=str(pki.ca_a),
                                        client_certificate_file=str(pki.client_a),
                                        client_key_file=str(pki.client_a_key)), name="mtls-cert")
        without = make_sink({**overrides(topic=topic, group=without_group, database="without_cert", url=standin.url,
                                         port=ports["nocert"], ca_file=str(pki.ca_a)), **QUICK_SHUTDOWN},
                            name="mtls-nocert")
        with with_cert, without:
            wait_for_commits(kafka, group, topic, ends, with_cert, timeout=60)
            wait_ready(ports["cert"], with_cert)
            problems = expect_refusal(ports["nocert"], without, "TLS", 4)
            without.assert_alive()
            nothing_committed(kafka, without_group, topic)
        received = standin.lines("with_cert")
        points = {line for line in received if line.startswith("generator,")}
        assert len(points) == RECORDS, f"{len(points)} distinct points received, wanted {RECORDS}"
        assert {r["peer"] for r in standin.requests} == {"kis-e2e-sink"}, standin.requests[:3]
        assert standin.lines("without_cert") == [], "a write got through without a client certificate"
        assert standin.handshake_failures, "the stand-in saw no refused handshake"
        assert not problems, "the missing client certificate was not reported as it should be:\n- " + "\n- ".join(problems)


# --- 5. insecure_skip_verify ----------------------------------------------------------------------

def test_insecure_skip_verify_writes_and_warns(kafka, make_sink, sink_bin, pki, tmp_path):
    influxd = https_influx(tmp_path, pki, auth=False, server="b")
    try:
        admin = influxd.client()
        insecure_db, strict_db = (unique(p).replace("-", "_") for p in ("e2e_insecure", "e2e_strict"))
        admin.create_database(insecure_db)
        admin.create_database(strict_db)
        topic, group, ends = fresh_topic(kafka, "e2e-insecure")
        strict_group = unique("e2e-strict-group")
        ports = {"insecure": free_port(), "strict": free_port()}
        insecure_env = overrides(topic=topic, group=group, database=insecure_db, url=influxd.url,
                                 port=ports["insecure"], insecure_skip_verify="true")
        checked = check_config(sink_bin, insecure_env)
        assert checked.returncode == 0 and INSECURE_WARNING in checked.stderr, (
            f"check-config: exit {checked.returncode}\n{checked.stderr}")
        insecure = make_sink(insecure_env, name="insecure")
        strict = make_sink({**overrides(topic=topic, group=strict_group, database=strict_db, url=influxd.url,
                                        port=ports["strict"]), **QUICK_SHUTDOWN}, name="strict")
        with insecure, strict:
            wait_for_commits(kafka, group, topic, ends, insecure, timeout=60)
            wait_ready(ports["insecure"], insecure)
            problems = expect_refusal(ports["strict"], strict, "TLS", 4)
            strict.assert_alive()
            nothing_committed(kafka, strict_group, topic)
        assert admin.count(insecure_db) == RECORDS
        assert admin.count(strict_db) == 0
        warnings = [e for e in events(insecure) if e.get("level") == "WARN" and "insecure_skip_verify" in json.dumps(e)]
        assert warnings, f"no WARN line about insecure_skip_verify:\n{insecure.log_tail(40)}"
        assert not any("insecure_skip_verify" in json.dumps(e) for e in events(strict))
        assert not problems, ("without insecure_skip_verify or ca_file, CA-B's certificate was not reported as "
                              "it should be:\n- " + "\n- ".join(problems))
    finally:
        influxd.stop()


# --- 6. secrets never leak ------------------------------------------------------------------------

def secret(kind: str) -> str:
    return f"kis-{kind}-{uuid.uuid4().hex}"


def forms(value: str) -> list[str]:
    """The value and the encodings it could travel in."""
    return [value, base64.b64encode(value.encode()).decode(), base64.b64encode(value.encode()).decode().rstrip("=")]


def test_secrets_never_leak(kafka, make_sink, sink_bin, pki, tmp_path):
    influx_password = secret("influx-pw")
    keystore_password = secret("keystore-pw")
    registry_password = secret("registry-pw")
    registry_user_info = f"registry-user:{registry_password}"
    url_password = secret("url-pw")
    needles = {
        "influxdb.password": forms(influx_password) + forms(f"sink:{influx_password}")[1:],
        "ssl.keystore.password": forms(keystore_password),
        "schema_registry.basic_auth_user_info": forms(registry_password) + forms(registry_user_info)[1:],
    }
    captures: dict[str, str] = {}

    influxd = https_influx(tmp_path, pki, auth=True)
    try:
        admin, _ = influxd.create_first_admin()
        database = unique("e2e_secrets").replace("-", "_")
        admin.create_database(database)
        sink_user(admin, database, secret("other-pw"))
        topic, group, ends = fresh_topic(kafka, "e2e-secrets")
        port = free_port()
        env = overrides(topic=topic, group=group, database=database, url=influxd.url, port=port,
                        ca_file=str(pki.ca_a), username="sink", password=influx_password)
        env.update({
            "KIS_LOG__LEVEL": "trace",
            "KIS_LOG__FORMAT": "json",
            "KIS_KAFKA__PROPERTIES__DEBUG": "security,broker,conf,protocol,generic",
            "KIS_KAFKA__PROPERTIES__SSL_KEYSTORE_PASSWORD": keystore_password,
            # Never contacted: the records are plain JSON, not registry-framed.
            "KIS_SCHEMA_REGISTRY__URL": f"http://127.0.0.1:{free_port()}",
            "KIS_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": registry_user_info,
        })
        checked = check_config(sink_bin, env)
        captures["check-config stdout"] = checked.stdout
        captures["check-config stderr"] = checked.stderr
        assert checked.returncode == 0, f"check-config: exit {checked.returncode}\n{checked.stderr}"
        assert checked.stdout.count("<redacted>") >= 3, checked.stdout

        def sample(phase: str) -> None:
            for path in ("/metrics", "/status", "/readyz", "/healthz"):
                r = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
                captures[f"{path} ({phase})"] = f"{r.status_code}\n{r.text}"

        with make_sink(env, name="secrets") as sink:
            wait_unready(port, sink, "401", timeout=45)
            time.sleep(3)  # several failed, retried writes: the error paths run
            sample("wrong password")
            assert captures["/readyz (wrong password)"].startswith("503"), captures["/readyz (wrong password)"]
            nothing_committed(kafka, group, topic)
            admin.command(f"SET PASSWORD FOR \"sink\" = {influxql_string(influx_password)}")
            wait_for_commits(kafka, group, topic, ends, sink, timeout=60)
            wait_ready(port, sink)
            sample("recovered")
        assert admin.count(database) == RECORDS
        # The sink's whole stderr (and stdout), without the harness's own "###" header lines,
        # which list the overrides, secrets included.
        log = sink.log_text()
        captures["sink log"] = "\n".join(line for line in log.splitlines() if not line.startswith("### "))
    finally:
        influxd.stop()

    # check-config refuses URLs with credentials, without echoing them.
    for key, url in (("KIS_INFLUXDB__URL", f"https://sink:{url_password}@127.0.0.1:1"),
                     ("KIS_SCHEMA_REGISTRY__URL", f"https://registry-user:{url_password}@127.0.0.1:2")):
        refused = check_config(sink_bin, {key: url})
        section = "influxdb" if "INFLUXDB" in key else "schema_registry"
        assert refused.returncode == 2, f"{key}={url!r}: exit {refused.returncode}\n{refused.stderr}"
        assert f"error: invalid configuration: {section}.url: " in refused.stderr, refused.stderr
        captures[f"check-config {section}.url with credentials"] = refused.stdout + refused.stderr
    needles["a URL's embedded password"] = forms(url_password)

    # The capture is not trivial: a trace log with librdkafka's debug output and the error paths.
    log = captures["sink log"]
    lines = log.splitlines()
    # (The floor counts every line; rdkafka's per-message trace lines no longer come since
    # messages are taken from librdkafka in batches, and the checks below say what is in it.)
    assert len(lines) > 500, f"only {len(lines)} log lines at trace level"
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    rdkafka = [e for e in parsed if e.get("target") == "librdkafka"]  # librdkafka's own debug lines
    assert len(rdkafka) > 100, f"only {len(rdkafka)} librdkafka debug lines in the log"
    conf = [e for e in rdkafka if e.get("facility") == "CONF" and "ssl.keystore.password" in str(e.get("message"))]
    assert conf, "librdkafka's configuration dump (debug=conf) does not list ssl.keystore.password: not set?"
    assert any(e.get("facility") == "PROTOERR" or "Sent" in str(e.get("message")) for e in rdkafka), \
        "no librdkafka protocol debug line"
    assert any(e.get("level") == "TRACE" for e in parsed), "no TRACE line"
    assert any(str(e.get("target", "")).startswith(("hyper", "reqwest")) for e in parsed), \
        "the HTTP client's own log lines are missing"
    assert any(e.get("message") == REFUSAL and "401" in str(e.get("error")) for e in parsed), "the 401 was not logged"
    assert "401" in captures["/readyz (wrong password)"] and captures["/readyz (recovered)"].startswith("200")

    leaks = [f"{name} ({value[:12]}…) in {where}: …{text[max(0, text.find(value) - 150):text.find(value) + 60]}…"
             for where, text in captures.items() for name, values in needles.items() for value in values
             if value in text]
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks[:20])
    print(f"\nSECRETS-SUMMARY: {len(lines)} log lines ({len(rdkafka)} from librdkafka), "
          f"{sum(len(t) for t in captures.values())} bytes captured in {len(captures)} places, no secret found")
