"""An InfluxDB outage longer than max.poll.interval.ms, with a rebalance in the middle of it.

The database is missing (InfluxDB answers 404) while two sinks of one group are blocked on it;
the second joins mid-outage, so partitions are revoked and assigned while the first has paused
consumption. The sinks must keep their group membership (no MAXPOLL eviction, since they keep
polling while paused), commit nothing while nothing is durable, and once the database exists
every record must land exactly once with every offset committed.
"""

from __future__ import annotations

import time

from conftest import committed_offsets, create_topic, read_topic, sink_overrides, unique, wait_for_commits
from test_metrics_health import INVALID_VALUES, VALID, produce_generators

POLL_INTERVAL_MS = 7000


def test_outage_with_rebalance_keeps_membership_and_loses_nothing(kafka, influx, make_sink):
    topic, group = unique("e2e-outage"), unique("e2e-outage-group")
    create_topic(kafka, topic, 4)
    create_topic(kafka, f"{topic}.dlq", 1)
    ends = produce_generators(kafka, topic)
    database = unique("e2e_outage").replace("-", "_")  # created only after the outage
    overrides = sink_overrides(topic=topic, group=group, database=database, extra={
        "KIS_INFLUXDB__RETRY_MAX_BACKOFF_MS": "500",
        "KIS_KAFKA__PROPERTIES__MAX_POLL_INTERVAL_MS": str(POLL_INTERVAL_MS),
        "KIS_BATCH__MAX_RECORDS": "40",  # several batches, so records wait in librdkafka too
    })
    first = make_sink(overrides, name="outage-a").start()
    second = make_sink(overrides, name="outage-b")
    try:
        time.sleep(6)  # joined, blocked on the missing database, paused
        second.start()  # rebalance during the outage
        time.sleep(POLL_INTERVAL_MS / 1000 + 4)
        for sink in (first, second):
            sink.assert_alive()
        assert all(offset is None for offset in committed_offsets(kafka, group, topic).values()), (
            "offsets committed while nothing was durable")
        influx.create_database(database)
        wait_for_commits(kafka, group, topic, ends, [first, second], timeout=90)
    finally:
        for sink in (first, second):
            if sink.proc is not None:
                sink.stop()
    try:
        assert influx.count(database) == VALID
        letters = read_topic(kafka, f"{topic}.dlq")
        positions = {(int(dict(l["headers"])["__connect.errors.partition"]),
                      int(dict(l["headers"])["__connect.errors.offset"])) for l in letters}
        assert len(positions) == 2 * len(INVALID_VALUES), letters
        for sink in (first, second):
            log = sink.log_text()
            assert "MAXPOLL" not in log and "maximum poll interval" not in log.lower(), sink.log_tail(80)
        assert "partitions paused" in first.log_text()
    finally:
        influx.drop_database(database)
