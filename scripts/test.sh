#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, unit and property tests, the
# Prometheus alerting rules (promtool), the Helm chart and container image checks, then the
# end-to-end suites against a real Kafka-compatible broker (Tansu) and a real InfluxDB 1.6.7.
# Installs what it needs (Debian packages, PyPI wheels, crates) and stops the services it started.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -k dead_letter  extra arguments go to pytest
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

step() { printf '\n=== %s\n' "$*" >&2; }

step "build prerequisites"
scripts/install-prerequisites.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "unit and property tests"
cargo test --locked

step "Prometheus alerting rules (promtool check rules, promtool test rules)"
command -v promtool >/dev/null || {
    echo "test.sh: promtool not found; scripts/install-prerequisites.sh installs it (Debian package prometheus)" >&2
    exit 1
}
promtool check rules config/prometheus/kafka-influx-sink.rules.yml
promtool test rules tests/prometheus/rules.test.yml

step "build the sink binary"
cargo build --locked --bin kafka-influx-sink
export KIS_SINK_BIN=$REPO_ROOT/target/debug/kafka-influx-sink

step "python environment"
PYTHON=$(scripts/python-env.sh)

step "Helm chart and container image (tests/helm: render and lint with the Helm SDK, Kubernetes and CRD schemas, promtool, check-config, hadolint)"
"$PYTHON" -m pytest tests/helm -p no:cacheprovider -q

step "service stack (Tansu, InfluxDB 1.6.7)"
started_stack=false
if ! scripts/stack.sh status >/dev/null 2>&1; then
    started_stack=true
fi
scripts/stack.sh start
if $started_stack; then
    # Quietly, so that the test runner's summary stays the last line of the output.
    trap 'scripts/stack.sh stop >/dev/null 2>&1 || true' EXIT
fi

step "end-to-end suites"
"$PYTHON" -m pytest tests/e2e -v -p no:cacheprovider "$@"
