"""Whole-sink instruction profile: the sink under callgrind, draining records from Tansu.

Wall-clock timings on a shared VM move by a factor of two from run to run; instruction counts
do not. This preloads N generator records into a 12-partition topic of the bench stack's Tansu
(127.0.0.1:29092, started by `scripts/stack.sh` with the bench's ports), runs the release sink
under `valgrind --tool=callgrind` into `discard.py` until every offset is stored, stops it,
and prints the instructions per record of the functions that matter, with their callees.

    KIS_STACK_DIR=target/bench/stack KIS_KAFKA_PORT=29092 KIS_INFLUX_PORT=28086 \\
        KIS_INFLUX_RPC_PORT=28088 scripts/stack.sh start
    .venv/bin/python scripts/bench/profile.py --records 100000
    .venv/bin/python scripts/bench/profile.py --report target/bench/callgrind.out \\
        --records 100000 --function 'Pipeline::take_ready'

Start-up and the group join are in the totals (small next to 100,000 records); the per-function
figures are not affected by them.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
from drain import preload_topic, sink_env, start_discard, wait_until_stored  # noqa: E402  (beside this file)

SINK = REPO / "target" / "release" / "kafka-influx-sink"
DEFAULT_FUNCTIONS = ["Pipeline::take_ready", "Pipeline::complete", "write::gzip", "rd_kafka_broker_thread_main"]


def costs(path: Path, pattern: str, caller_side: bool) -> tuple[int, collections.Counter, collections.Counter]:
    """Self cost of functions matching `pattern`, and inclusive costs of their callees (or,
    with `caller_side`, of the calls into them by each caller), with call counts."""
    names: dict[str, str] = {}
    fn = cfn = None
    pending_call = False
    calls_count = 0
    own = 0
    inclusive: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()

    def named(kind: str, line: str) -> str:
        match = re.match(kind + r"=\((\d+)\)(?: (.*))?", line)
        assert match
        if match.group(2):
            names[match.group(1)] = match.group(2)
        return names.get(match.group(1), match.group(1))

    with open(path) as fh:
        for line in fh:
            if line.startswith("fn="):
                fn = named("fn", line)
                continue
            if line.startswith("cfn="):
                cfn = named("cfn", line)
                continue
            if line.startswith("calls="):
                pending_call, calls_count = True, int(line.split("=")[1].split()[0])
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                parts = line.split()
                if len(parts) >= 2 and fn:
                    cost = int(parts[1])
                    if caller_side and pending_call and cfn and pattern in cfn:
                        inclusive[fn] += cost
                        calls[fn] += calls_count
                    elif not caller_side and pattern in fn:
                        if pending_call and cfn:
                            inclusive[cfn] += cost
                            calls[cfn] += calls_count
                        elif not pending_call:
                            own += cost
                pending_call = False
    return own, inclusive, calls


def report(path: Path, records: int, functions: list[str], callers: list[str]) -> None:
    total = 0
    with open(path) as fh:
        for line in fh:
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    print(f"{path}: {total:,} instructions, {total / records:,.0f} per record (start-up included)")
    for pattern in functions:
        own, inclusive, calls = costs(path, pattern, caller_side=False)
        print(f"\n{pattern}: self {own / records:,.0f} per record; callees, inclusive, per record:")
        for name, cost in inclusive.most_common(15):
            print(f"  {cost / records:>9,.0f}  calls/record {calls[name] / records:>6.2f}  {name[:120]}")
    for pattern in callers:
        _, inclusive, calls = costs(path, pattern, caller_side=True)
        print(f"\ncallers of {pattern}, inclusive, per record:")
        for name, cost in inclusive.most_common(12):
            print(f"  {cost / records:>9,.0f}  calls/record {calls[name] / records:>6.2f}  {name[:120]}")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(args: argparse.Namespace) -> Path:
    topic = args.topic
    if not topic:
        topic = preload_topic(str(SINK), args.brokers, args.records, "profile")
        print(f"profile: preloaded {args.records} records into {topic}", file=sys.stderr)
    discard, port = start_discard(0)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               str(SINK), "run", "--config", str(HERE / "sink.toml")]
    sink = subprocess.Popen(command, env=sink_env(args.brokers, topic, port, args.gzip, args.metrics, "profile"),
                            stdout=subprocess.DEVNULL, stderr=open(out.with_suffix(".log"), "wb"))
    started = time.monotonic()
    try:
        wait_until_stored(sink, args.metrics, args.records, args.timeout, 0.5, "profile", out.with_suffix(".log"))
        cpu = cpu_seconds(sink.pid)
    finally:
        if sink.poll() is None:
            sink.send_signal(signal.SIGTERM)
            sink.wait(180)
        discard.terminate()
    print(f"profile: drained in {time.monotonic() - started:.1f}s under valgrind ({cpu:.1f} CPU s)", file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--topic", help="an already preloaded topic of --records records (default: preload a new one)")
    ap.add_argument("--brokers", default="127.0.0.1:29092")
    ap.add_argument("--metrics", default="127.0.0.1:29465", help="the profiled sink's metrics address")
    ap.add_argument("--no-gzip", dest="gzip", action="store_false")
    ap.add_argument("--out", default=str(REPO / "target" / "bench" / "callgrind.out"))
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--report", metavar="OUT", help="only report on an existing callgrind output")
    ap.add_argument("--function", action="append", help="functions (substring) to break down; repeatable")
    ap.add_argument("--callers-of", action="append", default=[], help="functions whose callers to list")
    args = ap.parse_args()
    out = Path(args.report) if args.report else profile(args)
    report(out, args.records, args.function or DEFAULT_FUNCTIONS, args.callers_of)
    return 0


if __name__ == "__main__":
    sys.exit(main())
