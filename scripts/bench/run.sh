#!/usr/bin/env bash
# The end-to-end benchmark (issue 7), in one command:
#
#   scripts/bench/run.sh
#
# Builds the release binary, starts a private stack (Tansu + InfluxDB 1.6.7 on their own ports
# and data dir, never the test suite's), preloads a topic of 12 partitions with 2,000,000
# simulator records, then measures the sink into a discard endpoint (gzip off and on), the sink
# into InfluxDB next to InfluxDB's own ceiling, the Python baseline into both, Tansu's delivery
# ceiling, and produce -> acknowledged latency at half of each measured rate. Prints a table and
# the ratios; results.json, report.txt and every process's log go to $BENCH_DIR.
# scripts/bench/README.md explains each figure.
#
# Environment:
#   BENCH_RECORDS (2000000), BENCH_PARTITIONS (12), BENCH_GENERATORS (10000),
#   BENCH_LATENCY_SECONDS (25), BENCH_ONLY (comma-separated runs after the preload and the
#   raw sink run, e.g. "sink-discard-gz,baseline-discard,latency-sink*"; default all),
#   BENCH_DIR (<repo>/target/bench), BENCH_KAFKA_PORT (29092), BENCH_INFLUX_PORT (28086),
#   BENCH_METRICS_PORT (29464), BENCH_LATENCY_RATE (records/s of the latency runs; default half
#   of each measured rate), BENCH_LATENCY_LOW_RATE (5000; 0 skips the latency-low-* runs),
#   BENCH_CONCURRENCY (2: the sink's influxdb.write_concurrency and the replay's),
#   BENCH_INFLUX_PAIRS (3: the sink -> InfluxDB run and InfluxDB's ceiling, measured in turn),
#   BENCH_SKIP_BUILD=1 (use the existing release binary),
#   BENCH_SINK (a kafka-influx-sink binary to measure instead of target/release's; no build).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Relative to where the script was called from.
BENCH_SINK=${BENCH_SINK:+$(readlink -f "$BENCH_SINK")}
cd "$REPO_ROOT"

BENCH_DIR=${BENCH_DIR:-$REPO_ROOT/target/bench}
export KIS_STACK_DIR=$BENCH_DIR/stack
export KIS_KAFKA_PORT=${BENCH_KAFKA_PORT:-29092}
export KIS_INFLUX_PORT=${BENCH_INFLUX_PORT:-28086}
export KIS_INFLUX_RPC_PORT=$((KIS_INFLUX_PORT + 2))
METRICS_PORT=${BENCH_METRICS_PORT:-29464}
SINK=${BENCH_SINK:-$REPO_ROOT/target/release/kafka-influx-sink}
RUN_DIR=$BENCH_DIR/run-$(date +%Y%m%d-%H%M%S)

say() { printf '\n==> %s\n' "$*" >&2; }

say "prerequisites"
scripts/install-prerequisites.sh
if [[ ${BENCH_SKIP_BUILD:-0} != 1 && -z ${BENCH_SINK:-} ]]; then
    say "building the release binary"
    cargo build --release --locked --bin kafka-influx-sink
fi
[[ -x $SINK ]] || { echo "bench: $SINK missing" >&2; exit 1; }
PYTHON=$(scripts/python-env.sh)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n ${driver_pid:-} ]] && kill -0 "$driver_pid" 2>/dev/null; then
        kill -TERM "$driver_pid" 2>/dev/null || true
        wait "$driver_pid" 2>/dev/null || true
    fi
    scripts/stack.sh stop >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting the bench stack (Tansu 127.0.0.1:$KIS_KAFKA_PORT, InfluxDB 127.0.0.1:$KIS_INFLUX_PORT, $KIS_STACK_DIR)"
# Memory storage: a restart gives an empty broker, so every run starts from the same state.
scripts/stack.sh stop >/dev/null 2>&1 || true
scripts/stack.sh start
tansu_pid=$(<"$KIS_STACK_DIR/run/tansu.pid")
influx_pid=$(<"$KIS_STACK_DIR/run/influxd.pid")

mkdir -p "$RUN_DIR"
say "running the benchmark; logs and results in $RUN_DIR"
"$PYTHON" scripts/bench/driver.py \
    --sink "$SINK" --python "$PYTHON" \
    --brokers "127.0.0.1:$KIS_KAFKA_PORT" --influx "http://127.0.0.1:$KIS_INFLUX_PORT" \
    --tansu-pid "$tansu_pid" --influx-pid "$influx_pid" --metrics-port "$METRICS_PORT" \
    --out "$RUN_DIR" --stack-dir "$KIS_STACK_DIR" \
    --records "${BENCH_RECORDS:-2000000}" --partitions "${BENCH_PARTITIONS:-12}" \
    --generators "${BENCH_GENERATORS:-10000}" --latency-seconds "${BENCH_LATENCY_SECONDS:-25}" \
    --latency-low-rate "${BENCH_LATENCY_LOW_RATE:-5000}" --concurrency "${BENCH_CONCURRENCY:-2}" \
    --influx-pairs "${BENCH_INFLUX_PAIRS:-3}" \
    ${BENCH_ONLY:+--only "$BENCH_ONLY"} ${BENCH_LATENCY_RATE:+--latency-rate "$BENCH_LATENCY_RATE"} >"$RUN_DIR/report.txt" &
driver_pid=$!
wait "$driver_pid"
driver_pid=""
cat "$RUN_DIR/report.txt"
ln -sfn "$RUN_DIR" "$BENCH_DIR/latest"
echo "results: $RUN_DIR/results.json" >&2
