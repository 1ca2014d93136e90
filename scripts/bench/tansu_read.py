#!/usr/bin/env python3
"""Tansu's delivery ceiling: a consume-only librdkafka reader, no processing.

Assigns every partition of --topic from offset 0 (no group join, nothing committed) and reads
until --count records have arrived, touching nothing but the message count. librdkafka is
configured as the sink configures it by default (prefetch capped at 16 MiB and refilled after
10 ms, fetches of up to 8 MiB per partition and 16 MiB in all), so this is what the broker can
feed one consumer of that kind on this machine. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import Counter

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--queued-kbytes", type=int, default=16384)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--fetch-wait-ms", type=int, help="fetch.wait.max.ms (librdkafka default 500)")
    # The sink's defaults (connector/src/source.rs); librdkafka's own are 1000, 1 MiB and 50 MiB.
    ap.add_argument("--fetch-queue-backoff-ms", type=int, default=10)
    ap.add_argument("--max-partition-fetch-bytes", type=int, default=8 * 1024 * 1024)
    ap.add_argument("--fetch-max-bytes", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--latency", action="store_true",
                    help="also record arrival minus the record's CreateTime (ms histogram): Tansu's delivery delay")
    args = ap.parse_args()

    conf = {
        "bootstrap.servers": args.brokers,
        "group.id": f"bench-tansu-read-{uuid.uuid4()}",  # assign() only: never joins
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "queued.max.messages.kbytes": args.queued_kbytes,
        "fetch.queue.backoff.ms": args.fetch_queue_backoff_ms,
        "max.partition.fetch.bytes": args.max_partition_fetch_bytes,
        "fetch.max.bytes": args.fetch_max_bytes,
    }
    if args.fetch_wait_ms is not None:
        conf["fetch.wait.max.ms"] = args.fetch_wait_ms
    consumer = Consumer(conf)
    hist: Counter[int] = Counter()
    consumer.assign([TopicPartition(args.topic, p, 0) for p in range(args.partitions)])
    n = 0
    nbytes = 0
    first_at = None
    deadline = time.monotonic() + args.timeout
    try:
        while n < args.count:
            if time.monotonic() > deadline:
                print(f"tansu_read: only {n} of {args.count} records within {args.timeout:.0f}s", file=sys.stderr)
                return 1
            msgs = consumer.consume(num_messages=10000, timeout=0.01 if args.latency else 0.5)
            now_ms = time.time() * 1000.0
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                n += 1
                nbytes += len(msg)
                if args.latency:
                    hist[int(now_ms - msg.timestamp()[1])] += 1
            if first_at is None and n:
                first_at = time.time()
        done_at = time.time()
    finally:
        consumer.close()
    with open("/proc/self/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    out = {"records": n, "bytes": nbytes, "first_at": first_at, "done_at": done_at, "cpu_s": cpu}
    if args.latency:
        out["latency_ms_histogram"] = {str(k): v for k, v in sorted(hist.items())}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
