#!/usr/bin/env python3
"""The baseline: the Kafka -> InfluxDB consumer a competent engineer writes from the scenario.

confluent-kafka Consumer in a group, `consume()` in batches of 5000, JSON parse, line protocol
for the generator record (tag generatorID; fields lat, lon, temperature, pressure, fuel; the
Kafka timestamp in ms), gzip, POST /write over a keep-alive `requests` session, and a
synchronous commit after each acknowledged write (at-least-once). A record that does not parse
or lacks a field is logged and counted, not written. Nothing here is slowed down on purpose;
gzip uses level 1, as the sink does (Python's default, 9, would be much slower).

For the benchmark it stops after --count records are written and committed, and prints one
JSON line with its own timings, CPU seconds (utime+stime) and peak resident memory (VmHWM).
With --latency it also records, per record, the write acknowledgement time minus the record's
Kafka timestamp (1 ms histogram).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import sys
import time
from collections import Counter

import requests
from confluent_kafka import Consumer, KafkaException

FIELDS = ("lat", "lon", "temperature", "pressure", "fuel")
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def own_cpu_and_hwm() -> tuple[float, int]:
    with open("/proc/self/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm_kib = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm_kib = int(line.split()[1])
    return cpu, hwm_kib


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--url", required=True, help="InfluxDB base URL (v1 API)")
    ap.add_argument("--database", default="bench")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--linger", type=float, default=0.1, help="flush a partial batch after this many seconds")
    ap.add_argument("--gzip-level", type=int, default=1, help="0 = no gzip")
    ap.add_argument("--count", type=int, required=True, help="stop after this many records are committed")
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--fetch-wait-ms", type=int, default=20, help="fetch.wait.max.ms, as the sink's bench config")
    args = ap.parse_args()

    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,  # Tansu joins in about half of it
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": args.fetch_wait_ms,  # Tansu holds fetches this long (sink.toml)
    })
    assigned = False

    def on_assign(_consumer, partitions):
        nonlocal assigned
        assigned = True
        print(json.dumps({"event": "assigned", "partitions": len(partitions), "at": time.time()}), flush=True)

    consumer.subscribe([args.topic], on_assign=on_assign)
    session = requests.Session()
    write_url = args.url.rstrip("/") + "/write"
    params = {"db": args.database, "precision": "ms"}
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if args.gzip_level:
        headers["Content-Encoding"] = "gzip"

    lines: list[str] = []
    stamps: list[int] = []
    hist: Counter[int] = Counter()
    consumed = written = bad = batches = 0
    first_at = None
    batch_started = 0.0

    def flush() -> None:
        nonlocal written, batches
        body = "\n".join(lines).encode()
        if args.gzip_level:
            body = gzip.compress(body, compresslevel=args.gzip_level)
        delay = 0.1
        while True:
            try:
                resp = session.post(write_url, params=params, data=body, headers=headers, timeout=10)
                if resp.status_code < 300:
                    break
                print(f"baseline: write answered {resp.status_code}: {resp.text[:200]}", file=sys.stderr)
            except requests.RequestException as exc:
                print(f"baseline: write failed: {exc}", file=sys.stderr)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        acked_ms = time.time() * 1000.0
        if args.latency:
            hist.update(int(acked_ms - ts) for ts in stamps)
        consumer.commit(asynchronous=False)
        written += len(lines)
        batches += 1
        lines.clear()
        stamps.clear()

    try:
        while not stop and written + bad < args.count:
            msgs = consumer.consume(num_messages=args.batch - len(lines), timeout=0.1)
            for msg in msgs:
                if msg.error():
                    raise KafkaException(msg.error())
                if first_at is None:
                    first_at = time.time()
                consumed += 1
                try:
                    rec = json.loads(msg.value())
                    gen = str(rec["generatorID"]).translate(_TAG_ESCAPES)
                    fields = ",".join(f"{name}={float(rec[name])!r}" for name in FIELDS)
                except (ValueError, KeyError, TypeError) as exc:
                    bad += 1
                    print(f"baseline: skipping record at {msg.partition()}@{msg.offset()}: {exc!r}", file=sys.stderr)
                    continue
                ts = msg.timestamp()[1]
                if not lines:
                    batch_started = time.monotonic()
                lines.append(f"generator,generatorID={gen} {fields} {ts}")
                stamps.append(ts)
            if lines and (len(lines) >= args.batch or time.monotonic() - batch_started >= args.linger):
                flush()
        if lines:
            flush()
        done_at = time.time()
        cpu, hwm = own_cpu_and_hwm()
        out = {
            "event": "done", "consumed": consumed, "written": written, "bad": bad, "batches": batches,
            "first_at": first_at, "done_at": done_at, "cpu_s": cpu, "vmhwm_kib": hwm,
        }
        if args.latency:
            out["latency_ms_histogram"] = {str(k): v for k, v in sorted(hist.items())}
        print(json.dumps(out), flush=True)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
