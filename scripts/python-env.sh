#!/usr/bin/env bash
# Creates or updates the Python virtual environment used by the e2e tests and scripts/kafka_admin.py.
#
#   scripts/python-env.sh            create/update the venv; prints its python path on stdout
#
# Environment: KIS_VENV (default <repo>/.venv), KIS_PYTHON (interpreter for the venv, default python3).
# Re-running is quick: the venv records a hash of tests/requirements.txt and the interpreter version
# and only runs pip when they change.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${KIS_VENV:-$REPO_ROOT/.venv}
PYTHON=${KIS_PYTHON:-python3}
REQUIREMENTS=$REPO_ROOT/tests/requirements.txt
STAMP=$VENV/.kis-requirements.sha256

log() { printf 'python-env: %s\n' "$*" >&2; }
die() { printf 'python-env: ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
[[ -f $REQUIREMENTS ]] || die "$REQUIREMENTS not found"

want=$({
    # tests/requirements.txt includes the chart checks' pins (-r helm/requirements.txt).
    sha256sum "$REQUIREMENTS" "$REPO_ROOT/tests/helm/requirements.txt" | cut -d' ' -f1
    "$PYTHON" -c 'import sys; print(sys.version)'
} | sha256sum | cut -d' ' -f1)

if [[ -x $VENV/bin/python && -f $STAMP && $(<"$STAMP") == "$want" ]]; then
    log "venv $VENV is up to date"
    printf '%s\n' "$VENV/bin/python"
    exit 0
fi

if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    log "creating venv $VENV"
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 needs python3-venv for ensurepip.
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            log "python venv module incomplete; installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
            rm -rf "$VENV"
            "$PYTHON" -m venv "$VENV" || die "could not create venv $VENV"
        else
            die "could not create venv $VENV (is python3-venv installed?)"
        fi
    fi
fi

rm -f "$STAMP"
log "installing $(grep -cvE '^\s*(#|$)' "$REQUIREMENTS") pinned requirements"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=confluent-kafka \
    -r "$REQUIREMENTS" || die "pip install -r $REQUIREMENTS failed"
"$VENV/bin/python" -c 'import confluent_kafka, pytest, requests, helm_python, kubernetes_validate, yamllint' \
    || die "installed packages do not import"
printf '%s\n' "$want" >"$STAMP"
log "venv $VENV ready (confluent-kafka $("$VENV/bin/python" -c 'import confluent_kafka; print(confluent_kafka.__version__)'), librdkafka $("$VENV/bin/python" -c 'import confluent_kafka; print(confluent_kafka.libversion()[0])'))"
printf '%s\n' "$VENV/bin/python"
