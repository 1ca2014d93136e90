"""One drain of a preloaded topic by a sink binary, with its CPU split by thread.

A quick A/B tool between full runs of `run.sh`: it drains N records from the bench stack's
Tansu into `discard.py` (gzip on unless `--no-gzip`) and prints the drain rate, the sink's CPU
seconds per million records (user and system), its peak resident memory and the CPU of each of
its threads (the record loop is the thread named after the binary; `tokio-rt-worker` gzips and
sends; `rdk:broker*` are librdkafka's fetchers). Run two binaries in turn on the same topic:

    KIS_STACK_DIR=target/bench/stack KIS_KAFKA_PORT=29092 KIS_INFLUX_PORT=28086 \\
        KIS_INFLUX_RPC_PORT=28088 scripts/stack.sh start
    .venv/bin/python scripts/bench/drain.py --preload 2000000          # prints the topic
    for i in 1 2 3; do for b in /tmp/sink-a /tmp/sink-b; do
        .venv/bin/python scripts/bench/drain.py --topic TOPIC --records 2000000 --sink $b
    done; done

CPU is counted from the start of the process to the moment every offset is stored, as in
`run.sh`; start-up and the group join take a few hundredths of a second of it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import kafka_admin  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> dict[str, list[float]]:
    """User and system CPU seconds and the count of the threads of `pid`, by thread name."""
    out: dict[str, list[float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        entry = out.setdefault(name, [0.0, 0.0, 0])
        entry[0] += int(fields[11]) / TICK
        entry[1] += int(fields[12]) / TICK
        entry[2] += 1
    return out


def minor_faults(pid: int) -> int:
    """Page faults of `pid` so far that needed no disk read: each fresh page the allocator
    takes from the kernel is one, zeroed by the kernel on the faulting thread."""
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat.rsplit(")", 1)[1].split()[7])


def status_field(pid: int, name: str) -> str | None:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def preload_topic(sink: str, brokers: str, records: int, prefix: str) -> str:
    """A new 12-partition topic (and its dead-letter topic) holding `records` simulated
    generator records, 10,000 generators with uuid keys, as `run.sh` preloads them."""
    topic = f"{prefix}-{time.strftime('%H%M%S')}"
    kafka_admin.create_topic(brokers, topic, 12)
    kafka_admin.create_topic(brokers, topic + ".dlq", 1)
    done = subprocess.run(
        [sink, "simulate", "--config", str(HERE / "sink.toml"), "--topic", topic, "--rate", "0",
         "--count", str(records), "--generators", "10000", "--key", "uuid"],
        env={**os.environ, "KIS_KAFKA__BROKERS": brokers, "KIS_LOG__FORMAT": "text"}, capture_output=True)
    if done.returncode != 0:
        sys.exit(f"{prefix}: the preload failed: {done.stderr.decode()[-2000:]}")
    return topic


def start_discard(delay_ms: float) -> tuple[subprocess.Popen, int]:
    """`discard.py` on a free port, answering each write after `delay_ms`, and the port."""
    discard = subprocess.Popen([sys.executable, str(HERE / "discard.py"), "--port", "0", "--delay-ms", str(delay_ms)],
                               stdout=subprocess.PIPE)
    assert discard.stdout is not None
    return discard, int(discard.stdout.readline().decode().strip().rsplit(":", 1)[1])


def sink_env(brokers: str, topic: str, discard_port: int, gzip: bool, metrics: str, group_prefix: str) -> dict:
    """The environment of a sink draining `topic` under a new group into `discard.py`."""
    return {**os.environ, "KIS_KAFKA__BROKERS": brokers, "KIS_KAFKA__GROUP_ID": f"{group_prefix}-{time.time_ns()}",
            "KIS_KAFKA__TOPICS": topic, "KIS_INFLUXDB__URL": f"http://127.0.0.1:{discard_port}",
            "KIS_INFLUXDB__GZIP": "true" if gzip else "false", "KIS_METRICS__LISTEN": metrics,
            "KIS_LOG__FORMAT": "text"}


def wait_until_stored(sink: subprocess.Popen, metrics: str, records: int, timeout: float, poll_s: float,
                      who: str, log: Path) -> float:
    """Polls the sink's `/status` until it has stored `records` offsets; returns when it first
    reported partitions (assigned, about to read). Exits if the sink dies or takes too long."""
    started, first = time.monotonic(), None
    while True:
        time.sleep(poll_s)
        if sink.poll() is not None:
            sys.exit(f"{who}: the sink exited; see {log}")
        if time.monotonic() - started > timeout:
            sys.exit(f"{who}: not drained within {timeout:.0f}s")
        try:
            with urllib.request.urlopen(f"http://{metrics}/status", timeout=5) as resp:
                status = json.loads(resp.read())
        except OSError:
            continue
        if first is None and status.get("partitions"):
            first = time.monotonic()
        if sum((p.get("stored_offset") or 0) for p in status.get("partitions", [])) >= records:
            return first if first is not None else started


def drain(args: argparse.Namespace) -> None:
    discard, port = start_discard(args.delay_ms)
    log_path = REPO / "target" / "bench" / "drain.log"
    sink = subprocess.Popen([args.sink, "run", "--config", str(HERE / "sink.toml")],
                            env=sink_env(args.brokers, args.topic, port, args.gzip, args.metrics, "drain"),
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"))
    try:
        first = wait_until_stored(sink, args.metrics, args.records, args.timeout, 0.05, "drain", log_path)
        end = time.monotonic()
        per_thread = threads(sink.pid)
        hwm = status_field(sink.pid, "VmHWM")
        thp = status_field(sink.pid, "THP_enabled")
        faults = minor_faults(sink.pid)
    finally:
        if sink.poll() is None:
            sink.terminate()
            sink.wait(60)
        discard.terminate()
    user = sum(t[0] for t in per_thread.values())
    system = sum(t[1] for t in per_thread.values())
    print(f"{Path(args.sink).name}: {args.records / (end - first):,.0f} records/s, "
          f"{(user + system) / args.records * 1e6:.2f} CPU s per 1M (user {user:.2f} s, system {system:.2f} s), "
          f"peak RSS {hwm}, THP_enabled {thp}, {faults:,} page faults")
    for name, (u, s, count) in sorted(per_thread.items(), key=lambda item: -(item[1][0] + item[1][1])):
        if u + s >= 0.01:
            print(f"  {name:<20} x{count:<3} user {u:6.2f} s  system {s:6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sink", default=str(REPO / "target" / "release" / "kafka-influx-sink"))
    ap.add_argument("--topic", help="a preloaded topic to drain")
    ap.add_argument("--records", type=int, default=2_000_000, help="records in --topic")
    ap.add_argument("--preload", type=int, metavar="N", help="preload N records into a new topic and print its name")
    ap.add_argument("--brokers", default="127.0.0.1:29092")
    ap.add_argument("--metrics", default="127.0.0.1:29466")
    ap.add_argument("--no-gzip", dest="gzip", action="store_false")
    ap.add_argument("--delay-ms", type=float, default=0.0,
                    help="the endpoint answers each write this late: a slow server without its CPU")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    if args.preload:
        print(preload_topic(args.sink, args.brokers, args.preload, "drain"))
    elif args.topic:
        drain(args)
    else:
        ap.error("give --preload N or --topic")


if __name__ == "__main__":
    main()
