"""A Confluent Schema Registry *stand-in* for tests: not a real Schema Registry.

Why a stand-in
--------------
No real Schema Registry (Confluent, Karapace, Apicurio) can be installed on the machines that run
this project's tests, so the end-to-end suites talk to this small in-memory server instead. It
serves the subset of the Confluent Schema Registry REST API that the real ``confluent-kafka``
Python client (2.16.x: ``SchemaRegistryClient``, ``JSONSerializer``/``AvroSerializer`` and their
deserializers, including the GUID header form) and kafka-influx-sink use, with Confluent's
response shapes and error bodies. It is built on the Python standard library only
(``http.server.ThreadingHTTPServer``), keeps everything in memory and loses it when it stops.

What it serves
--------------
* ``POST /subjects/{subject}/versions``: register. Idempotent: the same schema (type, text up to
  JSON formatting, references) always gets the same id and GUID, across subjects too; answers
  ``{"id", "guid", "subject", "version", "schema", "schemaType" (not for AVRO), "references"
  (when any)}``. Schema text must parse as JSON for AVRO and JSON (else 422, error 42201), and
  every reference must name an existing subject version (else 422, 42201).
* ``POST /subjects/{subject}``: look a schema up under a subject (404: 40401 subject, 40403 schema).
* ``GET /schemas/ids/{id}`` and ``GET /schemas/guids/{guid}``: ``{"schema", "schemaType" (omitted
  for AVRO, like Confluent), "references" (omitted when empty, like Confluent), "guid"}``; 404
  with ``{"error_code": 40403, "message": "Schema not found"}`` for an unknown id or GUID.
  ``GET /schemas/ids/{id}/schema`` (the bare text), ``/subjects``, ``/versions``.
* ``GET /subjects``, ``GET /subjects/{subject}/versions``,
  ``GET /subjects/{subject}/versions/{version|latest|-1}`` (and ``.../schema``),
  ``DELETE /subjects/{subject}[/versions/{v}]`` (soft delete; ids stay readable, as in Confluent).
* ``GET/PUT /config[/{subject}]``, ``GET/PUT /mode[/{subject}]``, ``GET /schemas/types``,
  ``GET /contexts``, ``POST /compatibility/...`` (always compatible), and
  ``GET /associations/resources/{namespace}/{topic}`` (always ``[]``: confluent-kafka 2.16's
  default subject name strategy asks for a topic's associated subject first, then falls back to
  ``<topic>-value``).

What it is not
--------------
No compatibility checking (every new version is accepted), no normalisation beyond comparing
JSON texts structurally, no contexts, no metadata/rule sets (accepted and ignored), no
persistence, no clustering. HTTPS only when given a server certificate (``tls=`` or
``--tls-cert``/``--tls-key``), without client certificates. Meant for a handful of requests per
second on loopback.

Test controls (never behind auth, never faulted, never logged)
--------------------------------------------------------------
* ``POST /_standin/fault`` with ``{"mode": "none"}``, ``{"mode": "unavailable"}`` (every registry
  request answers 503, or ``"status": N``), ``{"mode": "slow", "delay_ms": N}`` (every answer is
  held N ms) or ``{"mode": "drop"}`` (the connection is closed without an answer).
  ``GET /_standin/fault`` shows the current one.
* ``GET /_standin/requests``: ``{"count": N, "requests": [{"seq", "time", "method", "path",
  "query", "status", "fault", "authorization"}...]}`` where ``authorization`` is ``"basic"``,
  ``"bearer"``, ``"other"`` or ``null``; ``DELETE /_standin/requests`` clears the log.
* In-process, :class:`SchemaRegistryStandIn` offers the same as methods (``set_fault``,
  ``requests``, ``clear_requests``, ``register``), plus ``stop()``/``start()`` on the same port
  with the same schemas, to make the registry refuse connections for a while.

Authentication (optional): with ``basic_auth="user:pass"`` and/or ``bearer="TOKEN"`` every
registry request must carry one of the accepted ``Authorization`` headers, otherwise it gets 401
``{"error_code": 401, "message": "Unauthorized"}``.

Command line::

    python tests/e2e/schema_registry_standin.py --port PORT [--host 127.0.0.1] \\
        [--basic-auth user:pass] [--bearer TOKEN] [--first-id N]

prints ``listening on http://HOST:PORT`` once bound (``--port 0`` picks a free port) and serves
until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
SCHEMA_TYPES = ("AVRO", "JSON", "PROTOBUF")
FAULT_MODES = ("none", "unavailable", "slow", "drop")


# --- the registry's state -------------------------------------------------------------------------

@dataclass
class StoredSchema:
    id: int
    guid: str
    schema_type: str  # AVRO, JSON or PROTOBUF
    text: str  # as first registered
    references: list[dict]  # [{"name", "subject", "version"}]

    def body(self) -> dict:
        """The body of GET /schemas/ids/{id}, as Confluent writes it."""
        out: dict[str, Any] = {"schema": self.text}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = [dict(r) for r in self.references]
        out["guid"] = self.guid
        return out


@dataclass
class SubjectVersion:
    subject: str
    version: int
    schema: StoredSchema
    deleted: bool = False

    def body(self) -> dict:
        """The body of GET /subjects/{s}/versions/{v} and of register/lookup answers."""
        out: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.schema.id,
                               "guid": self.schema.guid}
        out.update({k: v for k, v in self.schema.body().items() if k != "guid"})
        return out


class RegistryError(Exception):
    def __init__(self, status: int, error_code: int, message: str):
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def _identity(schema_type: str, text: str, references: list[dict]) -> tuple:
    """What makes two registrations 'the same schema': type, text up to JSON formatting, refs."""
    try:
        canon = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canon = text
    refs = tuple((r.get("name"), r.get("subject"), r.get("version")) for r in references)
    return schema_type, canon, refs


@dataclass
class Registry:
    first_id: int = 1
    schemas: dict[int, StoredSchema] = field(default_factory=dict)
    by_guid: dict[str, StoredSchema] = field(default_factory=dict)
    by_identity: dict[tuple, StoredSchema] = field(default_factory=dict)
    subjects: dict[str, list[SubjectVersion]] = field(default_factory=dict)
    config: dict[str | None, str] = field(default_factory=lambda: {None: "BACKWARD"})
    mode: dict[str | None, str] = field(default_factory=lambda: {None: "READWRITE"})
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- subjects and versions --

    def _live_versions(self, subject: str, deleted: bool = False) -> list[SubjectVersion]:
        return [v for v in self.subjects.get(subject, []) if deleted or not v.deleted]

    def version(self, subject: str, version: str, deleted: bool = False) -> SubjectVersion:
        with self.lock:
            versions = self._live_versions(subject, deleted)
            if not versions:
                raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
            if version in ("latest", "-1"):
                return versions[-1]
            try:
                n = int(version)
            except ValueError:
                raise RegistryError(422, 42202, "The specified version '%s' is not a valid version id. Allowed "
                                    "values are between [1, 2^31-1] and the string \"latest\"" % version)
            for v in versions:
                if v.version == n:
                    return v
            raise RegistryError(404, 40402, f"Version {n} not found.")

    def _check(self, schema_type: str, text: Any, references: Any) -> list[dict]:
        if schema_type not in SCHEMA_TYPES:
            raise RegistryError(422, 42201, f"Invalid schema type {schema_type!r}")
        if not isinstance(text, str) or not text:
            raise RegistryError(422, 42201, "Invalid schema: empty or missing 'schema'")
        if schema_type in ("AVRO", "JSON"):
            try:
                json.loads(text)
            except ValueError as exc:
                raise RegistryError(422, 42201, f"Invalid schema: {exc}")
        refs = []
        for r in references or []:
            if not isinstance(r, dict) or not r.get("name") or not r.get("subject") or r.get("version") is None:
                raise RegistryError(422, 42201, f"Invalid schema reference {r!r}")
            try:
                self.version(r["subject"], str(r["version"]))
            except RegistryError:
                raise RegistryError(422, 42201, f"Invalid schema: reference {r['name']!r} names "
                                    f"{r['subject']!r} version {r['version']}, which does not exist")
            refs.append({"name": r["name"], "subject": r["subject"], "version": int(r["version"])})
        return refs

    def register(self, subject: str, text: str, schema_type: str = "AVRO",
                 references: list[dict] | None = None) -> SubjectVersion:
        with self.lock:
            refs = self._check(schema_type, text, references)
            key = _identity(schema_type, text, refs)
            stored = self.by_identity.get(key)
            if stored is None:
                new_id = max([self.first_id - 1, *self.schemas]) + 1
                stored = StoredSchema(new_id, str(uuid.uuid4()), schema_type, text, refs)
                self.schemas[new_id] = stored
                self.by_guid[stored.guid] = stored
                self.by_identity[key] = stored
            for v in self._live_versions(subject):
                if v.schema is stored:
                    return v
            all_versions = self.subjects.setdefault(subject, [])
            sv = SubjectVersion(subject, max([0, *(v.version for v in all_versions)]) + 1, stored)
            all_versions.append(sv)
            return sv

    def lookup(self, subject: str, text: str, schema_type: str = "AVRO",
               references: list[dict] | None = None, deleted: bool = False) -> SubjectVersion:
        with self.lock:
            versions = self._live_versions(subject, deleted)
            if not versions:
                raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
            key = _identity(schema_type, text, [
                {"name": r.get("name"), "subject": r.get("subject"), "version": r.get("version")}
                for r in references or []])
            for v in versions:
                if _identity(v.schema.schema_type, v.schema.text, v.schema.references) == key:
                    return v
            raise RegistryError(404, 40403, "Schema not found")

    def by_id(self, schema_id: str) -> StoredSchema:
        with self.lock:
            try:
                stored = self.schemas.get(int(schema_id))
            except ValueError:
                stored = None
            if stored is None:
                raise RegistryError(404, 40403, "Schema not found")
            return stored

    def guid(self, guid: str) -> StoredSchema:
        with self.lock:
            stored = self.by_guid.get(guid.lower())
            if stored is None:
                raise RegistryError(404, 40403, "Schema not found")
            return stored

    def delete(self, subject: str, version: str | None, permanent: bool) -> Any:
        with self.lock:
            if version is None:
                versions = self._live_versions(subject, deleted=permanent)
                if not versions:
                    raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
                for v in versions:
                    v.deleted = True
                if permanent:
                    del self.subjects[subject]
                return [v.version for v in versions]
            v = self.version(subject, version, deleted=permanent)
            v.deleted = True
            if permanent:
                self.subjects[subject].remove(v)
            return v.version


# --- HTTP -----------------------------------------------------------------------------------------

@dataclass
class Fault:
    mode: str = "none"
    status: int = 503
    delay_ms: int = 0

    def to_dict(self) -> dict:
        return {"mode": self.mode, "status": self.status, "delay_ms": self.delay_ms}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, standin: "SchemaRegistryStandIn"):
        self.standin = standin
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # A client that gave up (timeout, "slow" fault) or a connection closed by stop() or the
        # "drop" fault: expected in tests, not worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
            return
        super().handle_error(request, client_address)

    def close_all_connections(self) -> None:
        with self.sockets_lock:
            socks = list(self.open_sockets)
            self.open_sockets.clear()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real registry
    server: _Server
    server_version = "schema-registry-standin"

    def log_message(self, format, *args):  # noqa: A002  (quiet: the request log is the record)
        pass

    # -- plumbing --

    def _read_body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise RegistryError(400, 400, "Unrecognized JSON body")

    def _send(self, status: int, body: Any, content_type: str = CONTENT_TYPE,
              extra_headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _auth_kind(self) -> str | None:
        h = self.headers.get("Authorization")
        if h is None:
            return None
        scheme = h.split(" ", 1)[0].lower()
        return scheme if scheme in ("basic", "bearer") else "other"

    def _authorized(self) -> bool:
        standin = self.server.standin
        if standin.basic_auth is None and standin.bearer is None:
            return True
        h = self.headers.get("Authorization") or ""
        scheme, _, cred = h.partition(" ")
        cred = cred.strip()
        if standin.basic_auth is not None and scheme.lower() == "basic":
            want = base64.b64encode(standin.basic_auth.encode()).decode()
            if hmac.compare_digest(cred, want):
                return True
        if standin.bearer is not None and scheme.lower() == "bearer":
            if hmac.compare_digest(cred, standin.bearer):
                return True
        return False

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        if path.startswith("/_standin/"):
            try:
                status, body = self.server.standin._control(method, path, self._read_body())
            except RegistryError as exc:
                status, body = exc.status, {"error_code": exc.error_code, "message": exc.message}
            self._send(status, body, "application/json")
            return

        standin = self.server.standin
        fault = standin.fault
        entry = {"method": method, "path": path, "query": url.query, "fault": fault.mode,
                 "authorization": self._auth_kind()}
        status = None
        try:
            if fault.mode == "drop":
                status = 0
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault.mode == "slow" and fault.delay_ms > 0:
                time.sleep(fault.delay_ms / 1000)
            if fault.mode == "unavailable":
                self._read_body_quietly()
                status = fault.status
                self._send(status, {"error_code": 50003 if status == 503 else status * 100 + 1,
                                    "message": "Schema Registry stand-in: unavailable (fault injected)"})
                return
            if not self._authorized():
                self._read_body_quietly()
                status = 401
                self._send(401, {"error_code": 401, "message": "Unauthorized"},
                           extra_headers={"WWW-Authenticate": 'Basic realm="schema-registry-standin"'})
                return
            try:
                status, body = self._route(method, [urllib.parse.unquote(p) for p in path.strip("/").split("/")],
                                           query)
            except RegistryError as exc:
                status, body = exc.status, {"error_code": exc.error_code, "message": exc.message}
            except Exception as exc:  # noqa: BLE001  (a bug here must not hang the client)
                status, body = 500, {"error_code": 50001, "message": f"stand-in error: {exc!r}"}
            if isinstance(body, str) and status == 200:
                self._send(status, body.encode(), "text/plain")
            else:
                self._send(status, body)
        finally:
            entry["status"] = status
            standin._log(entry)

    def _read_body_quietly(self) -> None:
        try:
            self._read_body()
        except RegistryError:
            pass

    def _route(self, method: str, parts: list[str], query: dict[str, list[str]]) -> tuple[int, Any]:
        reg = self.server.standin.registry
        q = {k: v[-1] for k, v in query.items()}
        deleted = q.get("deleted", "false").lower() == "true"
        permanent = q.get("permanent", "false").lower() == "true"
        n = len(parts)
        body = self._read_body() if method in ("POST", "PUT") else None

        def schema_args(b: Any) -> tuple[str, str, list]:
            if not isinstance(b, dict):
                raise RegistryError(422, 42201, "Invalid schema: request body must be a JSON object")
            return b.get("schema"), b.get("schemaType") or "AVRO", b.get("references") or []

        if parts == [""]:
            return 200, {}
        if parts[0] == "subjects":
            if n == 1 and method == "GET":
                prefix = q.get("subjectPrefix", "")
                with reg.lock:
                    return 200, sorted(s for s in reg.subjects
                                       if s.startswith(prefix) and reg._live_versions(s, deleted))
            subject = parts[1] if n > 1 else ""
            if n == 2 and method == "POST":
                text, stype, refs = schema_args(body)
                return 200, reg.lookup(subject, text, stype, refs, deleted).body()
            if n == 2 and method == "DELETE":
                return 200, reg.delete(subject, None, permanent)
            if n == 3 and parts[2] == "versions":
                if method == "GET":
                    with reg.lock:
                        versions = reg._live_versions(subject, deleted)
                        if not versions:
                            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
                        return 200, [v.version for v in versions]
                if method == "POST":
                    text, stype, refs = schema_args(body)
                    return 200, reg.register(subject, text, stype, refs).body()
            if n >= 4 and parts[2] == "versions":
                if n == 4 and method == "GET":
                    return 200, reg.version(subject, parts[3], deleted).body()
                if n == 4 and method == "DELETE":
                    return 200, reg.delete(subject, parts[3], permanent)
                if n == 5 and parts[4] == "schema" and method == "GET":
                    return 200, reg.version(subject, parts[3], deleted).schema.text
                if n == 5 and parts[4] == "referencedby" and method == "GET":
                    target = reg.version(subject, parts[3])
                    with reg.lock:
                        return 200, sorted({v.schema.id for vs in reg.subjects.values() for v in vs
                                            if not v.deleted and any(
                                                r["subject"] == target.subject and r["version"] == target.version
                                                for r in v.schema.references)})
        if parts[0] == "schemas":
            if n == 2 and parts[1] == "types" and method == "GET":
                return 200, list(SCHEMA_TYPES)
            if n >= 3 and parts[1] == "ids" and method == "GET":
                stored = reg.by_id(parts[2])
                if n == 3:
                    return 200, stored.body()
                if n == 4 and parts[3] == "schema":
                    return 200, stored.text
                if n == 4 and parts[3] in ("subjects", "versions"):
                    with reg.lock:
                        svs = [v for vs in reg.subjects.values() for v in vs
                               if v.schema is stored and (deleted or not v.deleted)]
                    if parts[3] == "subjects":
                        return 200, sorted({v.subject for v in svs})
                    return 200, [{"subject": v.subject, "version": v.version} for v in svs]
            if n >= 3 and parts[1] == "guids" and method == "GET":
                stored = reg.guid(parts[2])
                if n == 3:
                    return 200, stored.body()
                if n == 4 and parts[3] == "schema":
                    return 200, stored.text
        if parts[0] in ("config", "mode"):
            table = reg.config if parts[0] == "config" else reg.mode
            key_name = "compatibilityLevel" if parts[0] == "config" else "mode"
            subject = parts[1] if n > 1 else None
            if method == "GET":
                with reg.lock:
                    if subject in table:
                        return 200, {key_name: table[subject]}
                    if parts[0] == "config" and q.get("defaultToGlobal", "false").lower() != "true":
                        raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level "
                                            "compatibility configured")
                    return 200, {key_name: table[None]}
            if method == "PUT":
                if not isinstance(body, dict):
                    raise RegistryError(422, 42203, "Invalid body")
                value = body.get("compatibility") or body.get("compatibilityLevel") or body.get("mode")
                if not isinstance(value, str):
                    raise RegistryError(422, 42203, "Invalid compatibility level or mode")
                with reg.lock:
                    table[subject] = value.upper()
                return 200, {("compatibility" if parts[0] == "config" else "mode"): value.upper()}
            if method == "DELETE" and subject is not None:
                with reg.lock:
                    old = table.pop(subject, table[None])
                return 200, {key_name: old}
        if parts[0] == "compatibility" and method == "POST":
            return 200, {"is_compatible": True}
        if parts[0] == "contexts" and method == "GET":
            return 200, ["."]
        if parts[0] == "associations" and n >= 2 and parts[1] == "resources" and method == "GET":
            return 200, []  # confluent-kafka 2.16 asks before falling back to the topic strategy
        raise RegistryError(404, 404, "HTTP 404 Not Found")

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self):  # noqa: N802
        self._handle("DELETE")


# --- the stand-in ---------------------------------------------------------------------------------

class SchemaRegistryStandIn:
    """The stand-in in a background thread. ``start()`` binds (``port=0``: a free port), ``url`` is
    its base URL, ``stop()`` closes the listener *and* every open connection. ``start()`` again
    rebinds the same port with the same schemas. Usable as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, basic_auth: str | None = None,
                 bearer: str | None = None, first_id: int = 1, tls: "ssl.SSLContext | None" = None):
        self.host = host
        self.port = port
        self.tls = tls  # a server-side SSLContext: serve HTTPS
        self.basic_auth = basic_auth
        self.bearer = bearer
        self.registry = Registry(first_id=first_id)
        self.fault = Fault()
        self._requests: list[dict] = []
        self._seq = 0
        self._log_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> "SchemaRegistryStandIn":
        assert self._server is None, "stand-in already running"
        self._server = _Server((self.host, self.port), _Handler, self)
        if self.tls is not None:
            # Accepted connections do the TLS handshake; a client that refuses the certificate
            # fails there, in the serving thread, and the server goes on.
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"schema-registry-standin:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_all_connections()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "SchemaRegistryStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test controls --

    def set_fault(self, mode: str = "none", *, status: int = 503, delay_ms: int = 0) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"fault mode {mode!r}: one of {FAULT_MODES}")
        self.fault = Fault(mode, int(status), int(delay_ms))

    def register(self, subject: str, schema: str, schema_type: str = "AVRO",
                 references: list[dict] | None = None) -> dict:
        """Registers directly (no HTTP, not logged); returns the register answer's body."""
        return self.registry.register(subject, schema, schema_type, references).body()

    def requests(self, method: str | None = None, path: str | None = None,
                 prefix: str | None = None) -> list[dict]:
        with self._log_lock:
            return [dict(r) for r in self._requests
                    if (method is None or r["method"] == method) and (path is None or r["path"] == path)
                    and (prefix is None or r["path"].startswith(prefix))]

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def _log(self, entry: dict) -> None:
        with self._log_lock:
            self._seq += 1
            self._requests.append({"seq": self._seq, "time": time.time(), **entry})

    def _control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/_standin/fault":
            if method == "GET":
                return 200, self.fault.to_dict()
            if method in ("POST", "PUT"):
                if not isinstance(body, dict):
                    raise RegistryError(400, 400, 'body must be {"mode": ...}')
                try:
                    self.set_fault(body.get("mode", "none"), status=body.get("status", 503),
                                   delay_ms=body.get("delay_ms", 0))
                except (ValueError, TypeError) as exc:
                    raise RegistryError(400, 400, str(exc))
                return 200, self.fault.to_dict()
        if path == "/_standin/requests":
            if method == "GET":
                reqs = self.requests()
                return 200, {"count": len(reqs), "requests": reqs}
            if method == "DELETE":
                self.clear_requests()
                return 200, {"count": 0}
        raise RegistryError(404, 404, f"no control endpoint {method} {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Confluent Schema Registry stand-in for tests (in memory, "
                                "not a real Schema Registry)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port")
    p.add_argument("--basic-auth", metavar="USER:PASS", help="require HTTP basic auth with these credentials")
    p.add_argument("--bearer", metavar="TOKEN", help="require (or also accept) this bearer token")
    p.add_argument("--first-id", type=int, default=1, help="id of the first registered schema (default 1)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain) ...")
    p.add_argument("--tls-key", metavar="PEM", help="... and this private key")
    args = p.parse_args(argv)
    tls = None
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    if args.basic_auth is not None and ":" not in args.basic_auth:
        p.error("--basic-auth must be user:password")

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    standin = SchemaRegistryStandIn(args.host, args.port, basic_auth=args.basic_auth, bearer=args.bearer,
                                    first_id=args.first_id, tls=tls).start()
    print(f"listening on {standin.url}", flush=True)
    while not done.wait(0.5):
        pass
    standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
