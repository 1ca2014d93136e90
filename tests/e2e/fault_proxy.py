"""A scriptable HTTP fault-injection proxy between the sink and a real InfluxDB 1.x, for tests.

What it is
----------
A small test double built on the Python standard library (`http.server.ThreadingHTTPServer` in a
daemon thread, bound to 127.0.0.1 on a free port). By default it is a transparent forwarder: each
request's method, path, query, headers and body bytes go unchanged to the upstream InfluxDB
(including `Content-Encoding: gzip`, which it does not touch), and InfluxDB's status, headers and
body come back unchanged. A test then scripts what happens to the *write* requests instead:

* ``proxy.script(Respond(503, {"Retry-After": "1"}), Reset(), Delay(2.0), ...)``: one action per
  write request, in order; once the script is used up, writes are forwarded again.
* ``proxy.refuse(401, body)`` ... ``proxy.restore()``: answer every write that way for a while.
* ``proxy.max_body_bytes = N``: answer 413 to any write whose (decompressed) body exceeds N bytes.
* ``api="v3"`` / ``api="v2"``: a *stand-in* for the write endpoint of InfluxDB 3
  (``POST /api/v3/write_lp?db=..&precision=nanosecond``, ``Authorization: Bearer <token>``) or
  InfluxDB 2 (``POST /api/v2/write?org=..&bucket=..&precision=ns``, ``Authorization: Token
  <token>``). It checks the token, translates the request into an InfluxDB 1.x
  ``/write?db=..&precision=ns`` and, for lines containing a ``poison`` marker, returns HTTP 400
  with the error body those versions document (v3: ``{"error": "partial write of line protocol
  occurred", "data": [{"original_line", "line_number", "error_message"}]}`` with the other lines
  forwarded, i.e. a partial write; v2: ``{"code": "invalid", "line": N, "message": "failed to
  parse line protocol: ... error parsing line N (1-based): ..."}`` with nothing written).

Every request is logged as an :class:`Exchange` (timing, what the proxy did, what the client got),
so a test can assert that a fault really happened and how the client reacted (e.g. that it waited
for ``Retry-After`` before the next request).

What it is not
--------------
Not an InfluxDB 2 or 3. The v2/v3 modes emulate only the write endpoint's request shape, token
header and 400 error bodies; everything else (queries, retention, schema rules, real line-protocol
parsing) is InfluxDB 1.x behind it, and a line is "rejected" only because it contains the marker.
It reads bodies by ``Content-Length`` only (no chunked uploads), opens one upstream connection per
request, and is meant for a handful of requests per second on loopback, not for load.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import http.client
import json
import os
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union

HeaderValue = Union[str, Callable[[], str]]
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "host", "content-length"}
WRITE_PATHS = {"v1": "/write", "v2": "/api/v2/write", "v3": "/api/v3/write_lp"}


def http_date(epoch_seconds: float) -> str:
    """An RFC 7231 HTTP date (as used by `Retry-After`)."""
    return email.utils.formatdate(epoch_seconds, usegmt=True)


# --- scripted actions -----------------------------------------------------------------------------

@dataclass
class Respond:
    """Answer with this status instead of forwarding (nothing reaches InfluxDB). Header values
    may be callables, evaluated when the answer is sent (e.g. an HTTP date relative to now)."""
    status: int
    headers: dict[str, HeaderValue] = field(default_factory=dict)
    body: bytes | str = b""


@dataclass
class Delay:
    """Forward the request (the write lands in InfluxDB), then hold the answer for `seconds`
    before sending it: a slow server. A client with a shorter timeout gives up meanwhile."""
    seconds: float


@dataclass
class Reset:
    """Close the connection with a TCP RST instead of answering. With `forward_first`, the
    request is forwarded first: the write lands, only its acknowledgement is lost."""
    forward_first: bool = False


@dataclass
class Forward:
    """Forward unchanged (a no-op step in a script)."""


Action = Union[Respond, Delay, Reset, Forward]


@dataclass
class Exchange:
    """One request as the proxy saw it."""
    started: float  # time.monotonic()
    path: str
    write: bool
    action: str = "forward"
    status: int | None = None  # what the client was sent; None when the connection was reset
    upstream_status: int | None = None
    body_bytes: int = 0  # on the wire
    decoded_bytes: int = 0  # after gzip decompression
    lines: int = 0
    gzip: bool = False
    authorization: str | None = None
    digest: str = ""  # sha256 of the decompressed body: a retry of the same request has the same digest
    client_gone: bool = False  # the answer could not be delivered (client timed out / closed)
    finished: float | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # noqa: D401 - quiet: resets are on purpose
        pass


class FaultProxy:
    """See the module docstring. Use as a context manager or call start()/stop()."""

    def __init__(self, upstream: str, *, api: str = "v1", token: str | None = None,
                 poison: str | None = None, poison_message: str = "emulated rejection of a poison line"):
        assert api in WRITE_PATHS, api
        parsed = urllib.parse.urlsplit(upstream)
        assert parsed.scheme == "http" and parsed.hostname and parsed.port, upstream
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port
        self.api = api
        self.token = token
        self.poison = poison
        self.poison_message = poison_message
        self.max_body_bytes: int | None = None
        self.upstream_timeout = 30.0
        self._lock = threading.Lock()
        self._script: list[Action] = []
        self._refusal: Respond | None = None
        self.exchanges: list[Exchange] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- control ------------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *actions: Action) -> None:
        """Appends actions, each applied to one upcoming write request, in order."""
        with self._lock:
            self._script.extend(actions)

    def script_left(self) -> int:
        with self._lock:
            return len(self._script)

    def refuse(self, status: int, body: bytes | str = b"", headers: dict[str, HeaderValue] | None = None) -> None:
        """Answers every write request with `status` until restore()."""
        with self._lock:
            self._refusal = Respond(status, dict(headers or {}), body)

    def restore(self) -> None:
        with self._lock:
            self._refusal = None

    def writes(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.write]

    def retry_of(self, exchange: Exchange) -> Exchange | None:
        """The first later write request with the same body as `exchange` (the client may have other
        writes in flight meanwhile)."""
        return next((e for e in self.writes() if e.digest == exchange.digest and e.started > exchange.started), None)

    def summary(self) -> str:
        """One line per write request, for assertion messages."""
        t0 = self.exchanges[0].started if self.exchanges else 0.0
        return "\n".join(
            f"  +{e.started - t0:7.3f}s {e.digest[:8]} {e.action:<22} -> {e.status} (upstream {e.upstream_status}) "
            f"{e.lines} lines {e.decoded_bytes} B{' gzip' if e.gzip else ''}{' [client gone]' if e.client_gone else ''}"
            for e in self.writes())

    # --- per request (called from handler threads) ----------------------------------------------

    def _next_action(self) -> tuple[Action | None, Respond | None]:
        with self._lock:
            if self._refusal is not None:
                return None, self._refusal
            return (self._script.pop(0) if self._script else None), None

    def _log(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def _upstream(self, method: str, path: str, headers: dict[str, str], body: bytes
                  ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=self.upstream_timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        except OSError as exc:
            return 502, [("Content-Type", "application/json")], json.dumps(
                {"error": f"fault proxy: upstream {self.upstream_host}:{self.upstream_port} unreachable: {exc}"}
            ).encode()
        finally:
            conn.close()


def _split_lines(text: bytes) -> list[bytes]:
    return [line for line in text.split(b"\n") if line.strip()]


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as the sink's HTTP client expects

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    # --- plumbing --------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, ex: Exchange, status: int, headers: list[tuple[str, str]] | dict, body: bytes) -> None:
        ex.status = status
        items = headers.items() if isinstance(headers, dict) else headers
        try:
            self.send_response(status)
            for name, value in items:
                if name.lower() in HOP_BY_HOP:
                    continue
                self.send_header(name, value() if callable(value) else value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            ex.client_gone = True
            self.close_connection = True

    def _reset(self, ex: Exchange) -> None:
        ex.status = None
        sock = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(sock.detach())  # linger 0: the kernel sends RST instead of FIN
        except OSError:
            pass
        self.close_connection = True

    def _forward_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}

    def _json(self, ex: Exchange, status: int, doc: dict) -> None:
        self._send(ex, status, {"Content-Type": "application/json"}, json.dumps(doc).encode())

    # --- the request -----------------------------------------------------------------------------

    def _handle(self) -> None:
        proxy = self.owner
        body = self._read_body()
        parsed = urllib.parse.urlsplit(self.path)
        is_write = self.command == "POST" and parsed.path == WRITE_PATHS[proxy.api]
        ex = Exchange(started=time.monotonic(), path=self.path, write=is_write, body_bytes=len(body),
                      gzip=(self.headers.get("Content-Encoding") or "").lower() == "gzip",
                      authorization=self.headers.get("Authorization"))
        proxy._log(ex)
        try:
            if not is_write:
                if proxy.api != "v1":
                    ex.action = "not found"
                    self._json(ex, 404, {"error": f"fault proxy ({proxy.api}) serves only POST "
                                                  f"{WRITE_PATHS[proxy.api]}, not {self.command} {parsed.path}"})
                    return
                status, headers, rbody = proxy._upstream(self.command, self.path, self._forward_headers(), body)
                ex.upstream_status = status
                self._send(ex, status, headers, rbody)
                return
            decoded = gzip.decompress(body) if ex.gzip else body
            lines = _split_lines(decoded)
            ex.decoded_bytes, ex.lines = len(decoded), len(lines)
            ex.digest = hashlib.sha256(decoded).hexdigest()

            action, refusal = proxy._next_action()
            if refusal is not None:
                ex.action = f"refused {refusal.status}"
                self._send(ex, refusal.status, refusal.headers,
                           refusal.body.encode() if isinstance(refusal.body, str) else refusal.body)
                return
            if isinstance(action, Respond):
                ex.action = f"respond {action.status}"
                self._send(ex, action.status, action.headers,
                           action.body.encode() if isinstance(action.body, str) else action.body)
                return
            if isinstance(action, Reset) and not action.forward_first:
                ex.action = "reset"
                self._reset(ex)
                return
            if proxy.max_body_bytes is not None and len(decoded) > proxy.max_body_bytes:
                ex.action = "too large"
                self._json(ex, 413, {"error": f"Request Entity Too Large: {len(decoded)} bytes "
                                              f"> {proxy.max_body_bytes} (fault proxy)"})
                return

            status, headers, rbody = self._write(ex, parsed, lines, decoded, body)
            if isinstance(action, Reset):
                ex.action = "forward, then reset"
                self._reset(ex)
                return
            if isinstance(action, Delay):
                ex.action = f"forward, answer after {action.seconds:g}s"
                time.sleep(action.seconds)
            self._send(ex, status, headers, rbody)
        finally:
            ex.finished = time.monotonic()

    def _write(self, ex: Exchange, parsed: urllib.parse.SplitResult, lines: list[bytes], decoded: bytes,
               body: bytes) -> tuple[int, list[tuple[str, str]] | dict, bytes]:
        """Performs the write upstream (v1: as is; v2/v3: translated, poison lines refused)."""
        proxy = self.owner
        if proxy.api == "v1":
            status, headers, rbody = proxy._upstream("POST", self.path, self._forward_headers(), body)
            ex.upstream_status = status
            return status, headers, rbody

        query = dict(urllib.parse.parse_qsl(parsed.query))
        if proxy.api == "v3":
            scheme, database = "Bearer", query.get("db")
            if query.get("precision") != "nanosecond":
                return 400, {"Content-Type": "application/json"}, json.dumps(
                    {"error": f"fault proxy (v3): precision={query.get('precision')!r}, want 'nanosecond'"}).encode()
        else:
            scheme, database = "Token", query.get("bucket")
            if not query.get("org") or query.get("precision") != "ns":
                return 400, {"Content-Type": "application/json"}, json.dumps(
                    {"code": "invalid", "message": f"fault proxy (v2): need org and precision=ns, got {query}"}).encode()
        if proxy.token is not None and self.headers.get("Authorization") != f"{scheme} {proxy.token}":
            ex.action = "unauthorized"
            if proxy.api == "v3":
                return 401, {"Content-Type": "application/json"}, json.dumps({"error": "the request was not authenticated"}).encode()
            return 401, {"Content-Type": "application/json"}, json.dumps(
                {"code": "unauthorized", "message": "unauthorized access"}).encode()
        if not database:
            return 400, {"Content-Type": "application/json"}, b'{"error":"fault proxy: no database/bucket"}'

        poisoned = [(i + 1, line) for i, line in enumerate(lines)
                    if proxy.poison is not None and proxy.poison.encode() in line]
        keep = [line for line in lines if proxy.poison is None or proxy.poison.encode() not in line]
        if proxy.api == "v2" and poisoned:
            keep = []  # emulated 2.x: a request with a bad line writes nothing
        if keep:
            payload = b"\n".join(keep) + b"\n"
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if ex.gzip:
                payload = gzip.compress(payload)
                headers["Content-Encoding"] = "gzip"
            path = "/write?" + urllib.parse.urlencode({"db": database, "precision": "ns"})
            status, up_headers, rbody = proxy._upstream("POST", path, headers, payload)
            ex.upstream_status = status
            if not 200 <= status < 300:
                return status, up_headers, rbody  # InfluxDB 1.x's own answer
        if not poisoned:
            return 204, {}, b""
        ex.action = f"refuse {len(poisoned)} poison"
        if proxy.api == "v3":
            doc = {"error": "partial write of line protocol occurred",
                   "data": [{"original_line": line.decode("utf-8", "replace"), "line_number": n,
                             "error_message": proxy.poison_message} for n, line in poisoned]}
        else:
            doc = {"code": "invalid", "line": poisoned[0][0],
                   "message": "failed to parse line protocol:\nerrors encountered on line(s):\n" + "\n".join(
                       f"error parsing line {n} (1-based): {proxy.poison_message}" for n, _ in poisoned)}
        return 400, {"Content-Type": "application/json"}, json.dumps(doc).encode()
