#!/usr/bin/env python3
"""Tansu's delivery ceiling: a consume-only librdkafka reader, no processing.

Assigns every partition of --topic from offset 0 (no group join, nothing committed) and reads
until --count records have arrived, touching nothing but the message count. librdkafka is
configured as the sink configures it (prefetch capped at --queued-kbytes, 16 MiB), so this is
what the broker can feed one consumer of that kind on this machine. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--queued-kbytes", type=int, default=16384)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"bench-tansu-read-{uuid.uuid4()}",  # assign() only: never joins
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "queued.max.messages.kbytes": args.queued_kbytes,
    })
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
            msgs = consumer.consume(num_messages=10000, timeout=0.5)
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)
                n += 1
                nbytes += len(msg)
            if first_at is None and n:
                first_at = time.time()
        done_at = time.time()
    finally:
        consumer.close()
    with open("/proc/self/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    print(json.dumps({"records": n, "bytes": nbytes, "first_at": first_at, "done_at": done_at, "cpu_s": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
