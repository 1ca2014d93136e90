#!/usr/bin/env python3
"""Demo helpers: wait until the sink committed everything, then print what landed where.

    demo_report.py wait-committed --group G --topic T --brokers B [--timeout S]
    demo_report.py report --influx URL --database DB --brokers B --topic T --dlq-topic D \
        --group G --produced SIMULATOR_SUMMARY.json
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import uuid

import requests
from confluent_kafka import Consumer, KafkaError, TopicPartition

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import kafka_admin  # noqa: E402  (sibling script)


def wait_committed(brokers: str, group: str, topic: str, timeout: float) -> int:
    """Polls until the group's committed offsets equal the end offsets of every partition."""
    deadline = time.monotonic() + timeout
    while True:
        ends = {p: high for p, (_, high) in kafka_admin.watermarks(brokers, topic).items()}
        committed = kafka_admin.committed_offsets(brokers, group, topic, list(ends))
        behind = {p: (committed.get(p), end) for p, end in ends.items() if (committed.get(p) or 0) < end}
        if not behind:
            print(f"all {sum(ends.values())} records of {topic} committed by group {group}", file=sys.stderr)
            return 0
        if time.monotonic() > deadline:
            print(f"timed out: partitions behind (committed, end): {behind}", file=sys.stderr)
            return 1
        time.sleep(1)


def influx_query(url: str, database: str, query: str) -> list[dict]:
    response = requests.get(f"{url}/query", params={"db": database, "q": query, "epoch": "ms"}, timeout=30)
    response.raise_for_status()
    result = response.json()["results"][0]
    if "error" in result:
        raise RuntimeError(result["error"])
    return result.get("series", [])


def dead_letters(brokers: str, topic: str) -> list[dict]:
    """Reads the whole dead-letter topic; returns each record's error headers."""
    ends = kafka_admin.watermarks(brokers, topic)
    wanted = sum(high - low for low, high in ends.values())
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"demo-report-{uuid.uuid4()}",
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in ends.items()])
    letters: list[dict] = []
    deadline = time.monotonic() + 30
    try:
        while len(letters) < wanted and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or (message.error() and message.error().code() == KafkaError._PARTITION_EOF):
                continue
            if message.error():
                raise RuntimeError(message.error())
            headers = {key: (value or b"").decode("utf-8", "replace") for key, value in (message.headers() or [])}
            letters.append(headers)
    finally:
        consumer.close()
    return letters


def report(args: argparse.Namespace) -> int:
    produced = json.loads(open(args.produced, encoding="utf-8").read())
    series = influx_query(
        args.influx,
        args.database,
        # One selector plus plain fields returns the selected point's own time and values.
        "SELECT last(fuel) AS fuel, temperature, pressure FROM generator GROUP BY generatorID",
    )
    rows = []
    for one in series:
        columns, values = one["columns"], one["values"][0]
        row = dict(zip(columns, values))
        row["generatorID"] = one["tags"]["generatorID"]
        rows.append(row)
    rows.sort(key=lambda row: int(row["generatorID"].split("-")[-1]) if row["generatorID"].split("-")[-1].isdigit() else 0)
    count_series = influx_query(args.influx, args.database, "SELECT count(fuel) FROM generator")
    written = count_series[0]["values"][0][1] if count_series else 0
    letters = dead_letters(args.brokers, args.dlq_topic)
    ends = kafka_admin.watermarks(args.brokers, args.topic)
    committed = kafka_admin.committed_offsets(args.brokers, args.group, args.topic, list(ends))

    print()
    print(f"Latest reading per generator (InfluxDB database '{args.database}', measurement 'generator')")
    print()
    header = f"{'generator':<10} {'fuel':>9} {'temperature':>12} {'pressure':>9}  {'time (UTC)':<23}"
    print(header)
    print("-" * len(header))
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["time"] / 1000)) + f".{row['time'] % 1000:03d}"
        print(f"{row['generatorID']:<10} {row['fuel']:>9.2f} {row['temperature']:>12.2f} {row['pressure']:>9.2f}  {when:<23}")
    # Fuel alerts the sink wrote next to the readings (measurement generator_alerts).
    alert_series = influx_query(
        args.influx,
        args.database,
        "SELECT count(fuel) AS alerts, last(fuel) AS fuel, last(threshold) AS threshold "
        "FROM generator_alerts GROUP BY generator, level",
    )
    if alert_series:
        print()
        print("Fuel alerts (measurement 'generator_alerts': readings below a threshold)")
        print()
        header = f"{'generator':<10} {'level':<9} {'alerts':>7} {'last fuel':>10} {'threshold':>10}"
        print(header)
        print("-" * len(header))
        for one in sorted(alert_series, key=lambda s: (s["tags"]["level"], s["tags"]["generator"])):
            row = dict(zip(one["columns"], one["values"][0]))
            print(f"{one['tags']['generator']:<10} {one['tags']['level']:<9} {row['alerts']:>7} "
                  f"{row['fuel']:>10.2f} {row['threshold']:>10.2f}")
    print()
    valid, invalid = produced["valid"], produced["invalid"]
    print(f"records produced      {valid + invalid:>7}  ({valid} valid, {invalid} invalid on purpose)")
    print(f"points in InfluxDB    {written:>7}")
    print(f"dead-lettered         {len(letters):>7}  (topic {args.dlq_topic})")
    reasons = collections.Counter(
        (letter.get("__connect.errors.stage", "?"), letter.get("__connect.errors.exception.class.name", "?"))
        for letter in letters
    )
    for (stage, reason), number in sorted(reasons.items()):
        print(f"    {stage:<9} {reason:<20} {number:>5}")
    committed_total = sum(offset or 0 for offset in committed.values())
    end_total = sum(high for _, high in ends.values())
    print(f"committed offsets     {committed_total:>7}  of {end_total} records in {args.topic}")
    ok = written == valid and len(letters) == invalid and committed_total == end_total
    print()
    print("every record accounted for: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait-committed", help="wait until the group committed every record")
    wait.add_argument("--brokers", required=True)
    wait.add_argument("--group", required=True)
    wait.add_argument("--topic", required=True)
    wait.add_argument("--timeout", type=float, default=60)
    rep = sub.add_parser("report", help="print the latest readings and the record accounting")
    for name in ("--influx", "--database", "--brokers", "--topic", "--dlq-topic", "--group", "--produced"):
        rep.add_argument(name, required=True)
    args = parser.parse_args()
    if args.command == "wait-committed":
        return wait_committed(args.brokers, args.group, args.topic, args.timeout)
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
