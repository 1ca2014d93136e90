#!/usr/bin/env bash
# The demo, from a fresh machine: builds the sink, starts a local Kafka-compatible broker (Tansu)
# and InfluxDB 1.6.7, simulates a fleet of emergency generators (with a few bad records), runs the
# sink, then prints what landed in InfluxDB and what was dead-lettered, and stops what it started.
#
# By default the generators publish the way the source scenario's producers do: Confluent's
# JSONSerializer framing with the schema registered in a Schema Registry. No real registry can be
# installed here, so the demo runs the registry stand-in from the test suite
# (tests/e2e/schema_registry_standin.py), which serves the same REST API.
#
# Environment: DEMO_SECONDS (20), DEMO_GENERATORS (12), DEMO_RATE (records/s, 60),
# DEMO_INVALID_RATIO (0.02), DEMO_FORMAT (json-sr; also json, avro-sr, avro: see
# `kafka-influx-sink simulate --help`); KIS_STACK_DIR, KIS_KAFKA_PORT, KIS_INFLUX_PORT as for
# scripts/stack.sh.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

SECONDS_TO_RUN=${DEMO_SECONDS:-20}
GENERATORS=${DEMO_GENERATORS:-12}
RATE=${DEMO_RATE:-60}
INVALID_RATIO=${DEMO_INVALID_RATIO:-0.02}
FORMAT=${DEMO_FORMAT:-json-sr}
CONFIG=config/local.toml
TOPIC=emergency_generator
DLQ_TOPIC=$TOPIC.dlq
DATABASE=generators
BROKERS=127.0.0.1:${KIS_KAFKA_PORT:-19092}
INFLUX=http://127.0.0.1:${KIS_INFLUX_PORT:-18086}
LOG_DIR=${KIS_STACK_DIR:-$REPO_ROOT/.stack}/logs
# The sink and simulator follow the ports above (config/local.toml holds the defaults).
export KIS_KAFKA__BROKERS=$BROKERS KIS_INFLUXDB__URL=$INFLUX
# Each demo run gets its own consumer group, so it reads exactly this run's records.
GROUP=demo-$(date +%s)

say() { printf '\n==> %s\n' "$*" >&2; }

say "installing prerequisites"
scripts/install-prerequisites.sh

say "building kafka-influx-sink (release)"
cargo build --locked --release --bin kafka-influx-sink
SINK=$REPO_ROOT/target/release/kafka-influx-sink

PYTHON=$(scripts/python-env.sh)

say "starting a fresh local stack (Tansu on $BROKERS, InfluxDB 1.6.7 on $INFLUX)"
# Tansu keeps topics in memory: a restart gives the demo empty topics.
scripts/stack.sh stop >/dev/null 2>&1 || true
scripts/stack.sh start
sink_pid=""
registry_pid=""
cleanup() {
    if [[ -n $sink_pid ]] && kill -0 "$sink_pid" 2>/dev/null; then
        kill -TERM "$sink_pid" 2>/dev/null || true
        wait "$sink_pid" 2>/dev/null || true
    fi
    if [[ -n $registry_pid ]]; then
        kill -TERM "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    scripts/stack.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "creating topics $TOPIC (6 partitions), $DLQ_TOPIC and database $DATABASE"
"$PYTHON" scripts/kafka_admin.py create-topic "$TOPIC" --partitions 6 --brokers "$BROKERS"
"$PYTHON" scripts/kafka_admin.py create-topic "$DLQ_TOPIC" --partitions 1 --brokers "$BROKERS"
curl -fsS -XPOST "$INFLUX/query" --data-urlencode "q=DROP DATABASE $DATABASE" >/dev/null
curl -fsS -XPOST "$INFLUX/query" --data-urlencode "q=CREATE DATABASE $DATABASE" >/dev/null

mkdir -p "$LOG_DIR"
simulator_format_args=(--format "$FORMAT")
case $FORMAT in
    json) ;;
    avro)
        # Raw Avro carries no schema: the sink reads it with the local one.
        export KIS_SCHEMA__FORMAT=avro KIS_SCHEMA__AVRO_SCHEMA_FILE=$REPO_ROOT/schemas/generator.avsc
        ;;
    json-sr | avro-sr)
        say "starting the Schema Registry stand-in (tests/e2e/schema_registry_standin.py)"
        "$PYTHON" tests/e2e/schema_registry_standin.py --port 0 >"$LOG_DIR/demo-registry.out" 2>"$LOG_DIR/demo-registry.log" &
        registry_pid=$!
        registry_url=""
        for _ in $(seq 1 100); do
            registry_url=$(sed -n 's/^listening on //p' "$LOG_DIR/demo-registry.out" 2>/dev/null || true)
            [[ -n $registry_url ]] && break
            kill -0 "$registry_pid" 2>/dev/null || break
            sleep 0.1
        done
        if [[ -z $registry_url ]]; then
            echo "demo: the Schema Registry stand-in did not start; see $LOG_DIR/demo-registry.log" >&2
            exit 1
        fi
        export KIS_SCHEMA_REGISTRY__URL=$registry_url
        simulator_format_args+=(--registry-url "$registry_url")
        say "Schema Registry stand-in on $registry_url; the simulator registers the schema under $TOPIC-value"
        ;;
    *)
        echo "demo: DEMO_FORMAT must be json, json-sr, avro-sr or avro, not '$FORMAT'" >&2
        exit 2
        ;;
esac

say "starting the sink (group $GROUP); log: $LOG_DIR/demo-sink.log"
KIS_KAFKA__GROUP_ID=$GROUP KIS_LOG__FORMAT=text "$SINK" run --config "$CONFIG" >"$LOG_DIR/demo-sink.log" 2>&1 &
sink_pid=$!

say "simulating $GENERATORS generators at $RATE records/s for ${SECONDS_TO_RUN}s as $FORMAT (${INVALID_RATIO} of records invalid on purpose)"
KIS_LOG__FORMAT=text "$SINK" simulate --config "$CONFIG" --generators "$GENERATORS" --rate "$RATE" \
    --duration "$SECONDS_TO_RUN" --invalid-ratio "$INVALID_RATIO" --key uuid "${simulator_format_args[@]}" \
    >"$LOG_DIR/demo-simulator.json" 2>"$LOG_DIR/demo-simulator.log"

say "waiting until the sink has committed every record"
"$PYTHON" scripts/demo_report.py wait-committed --group "$GROUP" --topic "$TOPIC" --brokers "$BROKERS" --timeout 60

say "stopping the sink (SIGTERM: flush, commit, leave the group)"
kill -TERM "$sink_pid"
wait "$sink_pid"
sink_pid=""

"$PYTHON" scripts/demo_report.py report --influx "$INFLUX" --database "$DATABASE" --brokers "$BROKERS" \
    --topic "$TOPIC" --dlq-topic "$DLQ_TOPIC" --group "$GROUP" --produced "$LOG_DIR/demo-simulator.json"
