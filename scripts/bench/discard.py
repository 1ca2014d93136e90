#!/usr/bin/env python3
"""A local HTTP endpoint that accepts InfluxDB line protocol and throws it away.

It answers every write (POST /write, /api/v2/write, /api/v3/write_lp) with 204 as soon as the
body is read, so a writer pointed at it runs at its own ceiling. It counts requests, bytes and
lines, gunzips bodies sent with `Content-Encoding: gzip`, and optionally:

  --latency        records, per line, the arrival time of its request minus the line's
                   timestamp (the writer's produce -> acknowledged latency, since the 204 goes
                   out right after), in a 1 ms-resolution histogram
  --capture FILE   appends every (decompressed) body to FILE, each as an 8-byte big-endian
                   length and the bytes: the exact requests, for scripts/bench/replay.py
  --delay-ms N     waits N ms before answering each write: a slow server (as InfluxDB is,
                   about 100 ms per 5,000 lines here) without a server's CPU next to the writer

GET /stats returns the counters as JSON; GET /ping answers 204 like InfluxDB.
It prints `listening on http://127.0.0.1:PORT` on stdout once it serves (--port 0 picks one).
Loopback only. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WRITE_PATHS = {"/write", "/api/v2/write", "/api/v3/write_lp"}
# The line's timestamp: the last space-separated token of the line.
TIMESTAMP = re.compile(rb" (\d+)\n")
# precision query value -> digits to drop to get milliseconds (negative: multiply).
PRECISION_TO_MS = {
    "ns": 6, "nanosecond": 6, "n": 6,
    "us": 3, "u": 3, "microsecond": 3,
    "ms": 0, "millisecond": 0,
    "s": -3, "second": -3,
}


class Stats:
    def __init__(self, latency: bool, capture: str | None) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.lines = 0
        self.bytes_in = 0
        self.bytes_raw = 0
        self.gzip_requests = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.busy_s = 0.0  # wall time spent handling bodies (read + gunzip + count)
        self.latency = latency
        self.histogram: Counter[int] = Counter()  # latency in ms -> lines
        self.timeline: dict[int, list[int]] = {}  # arrival second -> [lines, worst latency ms]
        self.capture = open(capture, "ab", buffering=1 << 20) if capture else None
        self.started = time.time()

    def snapshot(self) -> dict:
        with self.lock:
            out = {
                "requests": self.requests,
                "lines": self.lines,
                "bytes_in": self.bytes_in,
                "bytes_raw": self.bytes_raw,
                "gzip_requests": self.gzip_requests,
                "first_at": self.first_at,
                "last_at": self.last_at,
                "busy_s": round(self.busy_s, 3),
                "now": time.time(),
            }
            if self.latency:
                out["latency_ms_histogram"] = {str(k): v for k, v in sorted(self.histogram.items())}
                out["timeline"] = {str(k): v for k, v in sorted(self.timeline.items())}
        return out


def line_ms_divisor(query: str, sample: bytes) -> int:
    """Digits between the line timestamps' unit and milliseconds."""
    params = parse_qs(query)
    precision = (params.get("precision") or [""])[0]
    if precision in PRECISION_TO_MS:
        return PRECISION_TO_MS[precision]
    # No precision given: InfluxDB's default is nanoseconds; v3 "auto" guesses by magnitude.
    digits = len(sample)
    return {19: 6, 16: 3, 13: 0, 10: -3}.get(digits, 6)


def latency_histogram(body: bytes, query: str, arrived_ms: float) -> Counter[int] | None:
    """{arrival minus line timestamp, in whole ms: lines}. Counts the timestamps' millisecond
    prefixes as bytes first (C speed; a batch spans few milliseconds), then converts each once."""
    if not body.endswith(b"\n"):
        body += b"\n"
    first = TIMESTAMP.search(body)
    if first is None:
        return None
    shift = line_ms_divisor(query, first.group(1))
    digits = len(first.group(1))
    if shift >= 0:
        pattern = re.compile(rb" (\d{%d})\d{%d}\n" % (digits - shift, shift))
        scale = 1
    else:
        pattern = re.compile(rb" (\d{%d})\n" % digits)
        scale = 1000
    out: Counter[int] = Counter()
    for stamp, lines in Counter(pattern.findall(body)).items():
        out[int(arrived_ms - int(stamp) * scale)] += lines
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as InfluxDB
    server_version = "bench-discard"
    stats: Stats
    delay_s = 0.0

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
        pass

    def _answer(self, code: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(code)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/stats":
            self._answer(200, json.dumps(self.stats.snapshot()).encode())
        elif path in ("/ping", "/health"):
            self._answer(204)
        else:
            self._answer(404, b'{"error":"not found"}')

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        return b""

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path not in WRITE_PATHS:
            self._read_body()
            self._answer(404, b'{"error":"not found"}')
            return
        t0 = time.perf_counter()
        raw = self._read_body()
        arrived = time.time()
        gz = (self.headers.get("Content-Encoding") or "").lower() == "gzip"
        try:
            body = zlib.decompress(raw, 31) if gz else raw  # 31: gzip wrapper
        except zlib.error as exc:
            self._answer(400, json.dumps({"error": f"bad gzip body: {exc}"}).encode())
            return
        lines = body.count(b"\n")
        if body and not body.endswith(b"\n"):
            lines += 1
        hist: Counter[int] | None = None
        if self.stats.latency and body:
            hist = latency_histogram(body, url.query, arrived * 1000.0)
        busy = time.perf_counter() - t0
        st = self.stats
        with st.lock:
            st.requests += 1
            st.lines += lines
            st.bytes_in += len(raw)
            st.bytes_raw += len(body)
            st.gzip_requests += gz
            st.busy_s += busy
            if st.first_at is None:
                st.first_at = arrived
            st.last_at = arrived
            if hist:
                st.histogram.update(hist)
                slot = st.timeline.setdefault(int(arrived), [0, 0])
                slot[0] += lines
                slot[1] = max(slot[1], max(hist))
            if st.capture is not None:
                st.capture.write(struct.pack(">Q", len(body)))
                st.capture.write(body)
                st.capture.flush()
        if self.delay_s:
            time.sleep(self.delay_s)
        self._answer(204)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", action="store_true", help="record per-line produce->ack latency")
    ap.add_argument("--capture", metavar="FILE", help="append every decompressed body to FILE")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="wait this long before answering each write")
    args = ap.parse_args()
    Handler.stats = Stats(args.latency, args.capture)
    Handler.delay_s = args.delay_ms / 1000.0
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if Handler.stats.capture is not None:
            Handler.stats.capture.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
