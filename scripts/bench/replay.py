#!/usr/bin/env python3
"""Writes pre-encoded line protocol straight over HTTP, as fast as the server takes it.

The bodies are the sink's own requests, captured by `discard.py --capture` (8-byte big-endian
length + bytes each): the same line protocol, the same batches. They are loaded and, with
--gzip, compressed at level 1 (the sink's level) before the clock starts, then POSTed by
--concurrency threads over keep-alive connections, each taking the next body. Used for

  * InfluxDB's own ceiling: the same lines, batch size and concurrency as the sink, with no
    Kafka, decoding or mapping in the way;
  * the discard endpoint's capacity: showing it is not what limits the sink.

Prints one JSON line: requests, lines, seconds (first request sent to last answer), lines/s,
statuses. Any non-2xx answer is retried after 100 ms and counted; standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import struct
import sys
import threading
import time
import zlib
from urllib.parse import urlsplit


def load(path: str, limit: int | None) -> list[bytes]:
    bodies = []
    with open(path, "rb") as fh:
        while limit is None or len(bodies) < limit:
            head = fh.read(8)
            if len(head) < 8:
                break
            (size,) = struct.unpack(">Q", head)
            bodies.append(fh.read(size))
    return bodies


def gzip1(data: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="full write URL, e.g. http://127.0.0.1:8086/write?db=x&precision=ns")
    ap.add_argument("--bodies", required=True, help="capture file from discard.py --capture")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--limit", type=int, help="use only the first N bodies")
    ap.add_argument("--repeat", type=int, default=1, help="send the bodies this many times")
    args = ap.parse_args()

    bodies = load(args.bodies, args.limit)
    if not bodies:
        print("replay: no bodies in " + args.bodies, file=sys.stderr)
        return 1
    lines_per_body = [b.count(b"\n") + (0 if b.endswith(b"\n") else 1) for b in bodies]
    payloads = [gzip1(b) for b in bodies] if args.gzip else bodies
    url = urlsplit(args.url)
    target = url.path + ("?" + url.query if url.query else "")
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if args.gzip:
        headers["Content-Encoding"] = "gzip"

    jobs = list(range(len(payloads))) * args.repeat
    lock = threading.Lock()
    state = {"next": 0, "lines": 0, "requests": 0, "retries": 0, "statuses": {}, "last_answer": 0.0}
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
        try:
            while True:
                with lock:
                    if state["next"] >= len(jobs):
                        return
                    i = jobs[state["next"]]
                    state["next"] += 1
                for _attempt in range(100):
                    try:
                        conn.request("POST", target, body=payloads[i], headers=headers)
                        resp = conn.getresponse()
                        text = resp.read()
                        status = resp.status
                    except (OSError, http.client.HTTPException) as exc:
                        conn.close()
                        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
                        status, text = 0, str(exc).encode()
                    with lock:
                        state["statuses"][str(status)] = state["statuses"].get(str(status), 0) + 1
                        if 200 <= status < 300:
                            state["lines"] += lines_per_body[i]
                            state["requests"] += 1
                            state["last_answer"] = time.time()
                            break
                        state["retries"] += 1
                        if len(errors) < 5:
                            errors.append(f"{status}: {text[:200]!r}")
                    time.sleep(0.1)
                else:
                    with lock:
                        errors.append(f"body {i} never accepted")
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = state["last_answer"] - started
    out = {
        "requests": state["requests"], "lines": state["lines"], "bodies": len(bodies),
        "bytes_raw": sum(len(b) for b in bodies) * args.repeat,
        "bytes_sent": sum(len(p) for p in payloads) * args.repeat,
        "seconds": round(seconds, 3), "lines_per_s": round(state["lines"] / seconds) if seconds > 0 else None,
        "started_at": started, "done_at": state["last_answer"],
        "retries": state["retries"], "statuses": state["statuses"], "errors": errors,
    }
    print(json.dumps(out), flush=True)
    return 0 if state["requests"] == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
