#!/usr/bin/env python3
"""Small Kafka admin CLI for the local stack (Tansu) and the e2e tests.

Run it with the project venv (scripts/python-env.sh prints its python):

    .venv/bin/python scripts/kafka_admin.py wait [--brokers B] [--timeout S]
    .venv/bin/python scripts/kafka_admin.py create-topic NAME --partitions N [--brokers B]
    .venv/bin/python scripts/kafka_admin.py offsets --group G --topic T [--brokers B] [--json]
    .venv/bin/python scripts/kafka_admin.py count TOPIC [--brokers B]

The default brokers are $KIS_BROKERS, else 127.0.0.1:$KIS_KAFKA_PORT (19092).

High watermarks are read from Fetch responses (a consumer reads each partition up to its
end), not from ListOffsets: Tansu 0.6.0 answers ListOffsets(latest) with the base offset of the
last record batch + 1, which is lower than the real end offset whenever that batch holds more
than one record.

The functions are importable (tests/e2e/conftest.py uses them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

try:  # confluent-kafka >= 2.0
    from confluent_kafka import ConsumerGroupTopicPartitions
except ImportError:  # pragma: no cover
    from confluent_kafka.admin import ConsumerGroupTopicPartitions  # type: ignore


def default_brokers() -> str:
    if os.environ.get("KIS_BROKERS"):
        return os.environ["KIS_BROKERS"]
    return "127.0.0.1:" + os.environ.get("KIS_KAFKA_PORT", "19092")


def admin_client(brokers: str, quiet: bool = False) -> AdminClient:
    # log_level 4: no "Purging 1 unserved events from background queue" notices on close.
    conf = {"bootstrap.servers": brokers, "socket.timeout.ms": 10000, "log_level": 4}
    if quiet:  # no librdkafka "Connect ... failed" lines while waiting for a broker
        conf["log_level"] = 0
    return AdminClient(conf)


def wait_ready(brokers: str, timeout: float = 60.0) -> dict:
    """Waits until the cluster answers a Metadata request; returns {broker_id: "host:port"}."""
    deadline = time.monotonic() + timeout
    last_err: Exception | None = None
    client = admin_client(brokers, quiet=True)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"Kafka at {brokers} did not answer a metadata request within {timeout:.0f}s: {last_err}")
        try:
            md = client.list_topics(timeout=min(5.0, max(remaining, 0.5)))
            if md.brokers:
                return {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
            last_err = RuntimeError("metadata lists no broker")
        except KafkaException as exc:
            last_err = exc
        time.sleep(0.3)


def partition_count(brokers: str, topic: str, timeout: float = 10.0) -> int | None:
    """Number of partitions of `topic`, or None when the topic does not exist."""
    # A Metadata request naming the topic would auto-create it on Tansu (librdkafka's admin and
    # producer handles set allow_auto_topic_creation): ask for all topics instead.
    md = admin_client(brokers).list_topics(timeout=timeout)
    tmd = md.topics.get(topic)
    if tmd is None or tmd.error is not None and tmd.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        return None
    if tmd.error is not None:
        raise KafkaException(tmd.error)
    return len(tmd.partitions)


def create_topic(brokers: str, name: str, partitions: int = 1, timeout: float = 30.0) -> bool:
    """Creates `name` with `partitions` partitions. Returns True when created, False when it already
    existed (then its partition count is left as it is). Waits until metadata shows it."""
    client = admin_client(brokers)
    created = True
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=timeout
    )
    try:
        futures[name].result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
        created = False
    deadline = time.monotonic() + timeout
    while True:
        n = partition_count(brokers, name)
        if n:
            return created
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} not visible in metadata {timeout:.0f}s after creation")
        time.sleep(0.2)


def watermarks(brokers: str, topic: str, timeout: float = 30.0) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} for every partition of `topic`; high read from Fetch responses."""
    n = partition_count(brokers, topic)
    if n is None:
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"topic {topic} does not exist"))
    client = admin_client(brokers)
    tps = [TopicPartition(topic, p) for p in range(n)]
    low = {tp.partition: f.result(timeout=timeout).offset
           for tp, f in client.list_offsets({tp: OffsetSpec.earliest() for tp in tps}).items()}
    # ListOffsets(latest) is only a lower bound on Tansu (see module doc): start one record
    # before it and read to the end of the partition.
    hint = {tp.partition: f.result(timeout=timeout).offset
            for tp, f in client.list_offsets({tp: OffsetSpec.latest() for tp in tps}).items()}
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": f"kafka-admin-watermarks-{uuid.uuid4()}",  # never joins: assign() only
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.max.bytes": 1048576,
        "max.partition.fetch.bytes": 262144,
    })
    ends: dict[int, int] = {}
    try:
        consumer.assign([TopicPartition(topic, p, max(hint[p] - 1, low[p], 0)) for p in range(n)])
        deadline = time.monotonic() + timeout
        while len(ends) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read to the end of {topic} partitions "
                                   f"{sorted(set(range(n)) - set(ends))} within {timeout:.0f}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                continue
            if err.code() == KafkaError._PARTITION_EOF:
                ends[msg.partition()] = msg.offset()
            elif err.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                raise KafkaException(err)
    finally:
        consumer.close()
    return {p: (low[p], ends[p]) for p in range(n)}


def committed_offsets(brokers: str, group: str, topic: str, partitions: list[int] | None = None,
                      timeout: float = 30.0) -> dict[int, int | None]:
    """{partition: committed offset or None when the group has none for it}."""
    if partitions is None:
        n = partition_count(brokers, topic)
        if n is None:
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, f"topic {topic} does not exist"))
        partitions = list(range(n))
    client = admin_client(brokers)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    res = client.list_consumer_group_offsets([req], request_timeout=timeout)[group].result(timeout=timeout)
    out: dict[int, int | None] = {}
    for tp in res.topic_partitions:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[tp.partition] = tp.offset if tp.offset >= 0 else None
    return out


def count(brokers: str, topic: str, timeout: float = 30.0) -> int:
    return sum(high - low for low, high in watermarks(brokers, topic, timeout).values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def with_brokers(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--brokers", default=default_brokers(), help="bootstrap servers (default %(default)s)")
        return p

    p_wait = with_brokers(sub.add_parser("wait", help="wait until the brokers answer a metadata request"))
    p_wait.add_argument("--timeout", type=float, default=60.0)
    p_create = with_brokers(sub.add_parser("create-topic", help="create a topic (existing topic is OK)"))
    p_create.add_argument("name")
    p_create.add_argument("--partitions", type=int, default=1)
    p_off = with_brokers(sub.add_parser("offsets", help="committed offset and high watermark per partition"))
    p_off.add_argument("--group", required=True)
    p_off.add_argument("--topic", required=True)
    p_off.add_argument("--json", action="store_true", help="print one JSON object")
    p_count = with_brokers(sub.add_parser("count", help="number of records in a topic"))
    p_count.add_argument("topic")
    args = parser.parse_args(argv)

    try:
        if args.cmd == "wait":
            brokers = wait_ready(args.brokers, args.timeout)
            print("ok: " + ", ".join(f"{bid}={addr}" for bid, addr in sorted(brokers.items())))
        elif args.cmd == "create-topic":
            created = create_topic(args.brokers, args.name, args.partitions)
            n = partition_count(args.brokers, args.name)
            print(f"{'created' if created else 'exists'}: {args.name} ({n} partitions)")
        elif args.cmd == "offsets":
            marks = watermarks(args.brokers, args.topic)
            committed = committed_offsets(args.brokers, args.group, args.topic, sorted(marks))
            rows = [{"partition": p, "committed": committed.get(p), "low": marks[p][0], "high": marks[p][1],
                     "lag": marks[p][1] - (committed.get(p) if committed.get(p) is not None else marks[p][0])}
                    for p in sorted(marks)]
            if args.json:
                print(json.dumps({"group": args.group, "topic": args.topic, "partitions": rows}))
            else:
                print(f"{'partition':>9} {'committed':>10} {'high':>10} {'lag':>8}")
                for r in rows:
                    c = "-" if r["committed"] is None else r["committed"]
                    print(f"{r['partition']:>9} {c:>10} {r['high']:>10} {r['lag']:>8}")
        elif args.cmd == "count":
            print(count(args.brokers, args.topic))
    except (KafkaException, TimeoutError) as exc:
        print(f"kafka_admin: {args.cmd} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
