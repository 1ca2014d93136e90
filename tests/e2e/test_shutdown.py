"""Shutdown while a batch cannot be written (its database does not exist), on the real stack.

- SIGTERM: the sink keeps trying for at most `shutdown.timeout_ms`, then exits 0 having
  committed nothing it did not write.
- A second signal: the sink exits at once (status 130), also committing nothing.
"""

from __future__ import annotations

import signal
import time

import requests

from conftest import committed_offsets, create_topic, sink_overrides, unique
from test_metrics_health import free_port, produce_generators, wait_until


def start_blocked_sink(kafka, make_sink, name: str, timeout_ms: int):
    topic, group, port = unique(f"e2e-{name}"), unique(f"e2e-{name}-group"), free_port()
    create_topic(kafka, topic, 2)
    create_topic(kafka, f"{topic}.dlq", 1)
    produce_generators(kafka, topic)
    missing_database = unique("e2e_never_created").replace("-", "_")
    sink = make_sink(sink_overrides(topic=topic, group=group, database=missing_database, extra={
        "KIS_SHUTDOWN__TIMEOUT_MS": str(timeout_ms),
        "KIS_METRICS__ENABLED": "true",
        "KIS_METRICS__LISTEN": f"127.0.0.1:{port}",
        "KIS_INFLUXDB__RETRY_MAX_BACKOFF_MS": "500",
    }), name=name).start()

    def refused() -> bool:
        try:
            return "database not found" in requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).text
        except requests.RequestException:
            return False

    wait_until(refused, 60, "the sink to hit the missing database", sink)
    return sink, topic, group


def test_sigterm_gives_up_after_the_shutdown_timeout(kafka, make_sink):
    sink, topic, group = start_blocked_sink(kafka, make_sink, "term", timeout_ms=3000)
    started = time.monotonic()
    sink.proc.send_signal(signal.SIGTERM)
    exit_code = sink.proc.wait(30)
    elapsed = time.monotonic() - started
    assert exit_code == 0, sink.log_tail()
    assert 2.5 <= elapsed < 15, f"exited {elapsed:.1f}s after SIGTERM with a 3 s shutdown timeout"
    assert all(offset is None for offset in committed_offsets(kafka, group, topic).values())
    assert "stays uncommitted" in sink.log_text()


def test_second_signal_exits_at_once(kafka, make_sink):
    sink, topic, group = start_blocked_sink(kafka, make_sink, "twice", timeout_ms=120_000)
    sink.proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    assert sink.proc.poll() is None, "still draining after the first signal"
    started = time.monotonic()
    sink.proc.send_signal(signal.SIGINT)
    exit_code = sink.proc.wait(10)
    assert exit_code == 130, f"exit code {exit_code}; log:\n{sink.log_tail()}"
    assert time.monotonic() - started < 5
    assert all(offset is None for offset in committed_offsets(kafka, group, topic).values())
