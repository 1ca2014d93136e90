#!/usr/bin/env python3
"""The end-to-end benchmark's driver (started by scripts/bench/run.sh, which builds the sink and
starts the bench stack first). See scripts/bench/README.md for what each run measures.

Runs, in order, against one topic preloaded with --records simulator records:
  preload          the sink's own simulator, --rate 0, --generators G, uuid keys, CreateTime
  tansu-read       consume-only librdkafka reader: what Tansu can feed
  sink-discard-raw the sink -> discard endpoint, gzip off (its bodies are captured for replay)
  sink-discard-gz  the sink -> discard endpoint, gzip on
  discard-capacity the captured bodies replayed into the discard endpoint, gzip, concurrency 2
  baseline-discard the Python baseline -> discard endpoint, gzip on
  sink-influx      the sink -> InfluxDB 1.6.7, gzip on
  influx-ceiling   the captured bodies replayed into InfluxDB, gzip, same concurrency
                   (the two in turn, --influx-pairs times: sink-influx-2, influx-ceiling-2, ...;
                   every other pair runs the ceiling first; each database is dropped once counted)
  baseline-influx  the Python baseline -> InfluxDB 1.6.7, gzip on
  latency-*        a steady producer at half the measured rate for --latency-seconds, into a
                   fresh topic, while the sink / baseline consumes it (discard and InfluxDB)
Prints a table and writes results.json into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import kafka_admin  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PROCS: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------------------------

def spawn(name: str, cmd: list[str], out_dir: Path, env: dict | None = None, stdout_pipe: bool = False) -> subprocess.Popen:
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    err = open(out_dir / f"{name}.log", "wb")
    out = subprocess.PIPE if stdout_pipe else open(out_dir / f"{name}.out", "wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=full_env, start_new_session=True, cwd=REPO)
    proc.bench_name = name  # type: ignore[attr-defined]
    PROCS.append(proc)
    return proc


def stop(proc: subprocess.Popen | None, timeout: float = 25.0) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{getattr(proc, 'bench_name', proc.pid)} ignored SIGTERM for {timeout:.0f}s: SIGKILL")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)
    if proc in PROCS:
        PROCS.remove(proc)
    return proc.returncode


def stop_all() -> None:
    # Newest first: a sink stops before the endpoint it writes to, so it does not spend its
    # shutdown deadline retrying a batch into an endpoint already gone (and get SIGKILLed).
    for proc in reversed(list(PROCS)):
        stop(proc, timeout=10)


def read_json_line(proc: subprocess.Popen, want: str | None, timeout: float) -> dict:
    """Next JSON line on proc's stdout (with "event" == want, when given)."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.bench_name} exited with {proc.returncode} (see its log)")  # type: ignore[attr-defined]
            time.sleep(0.05)
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if want is None or obj.get("event") == want:
            return obj
    raise TimeoutError(f"no {want or 'JSON'} line from {proc.bench_name} within {timeout:.0f}s")  # type: ignore[attr-defined]


# --- /proc measurements -----------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def wait_until_quiet(pid: int, cores: float = 0.05, window: float = 2.0, timeout: float = 120.0) -> float:
    """Waits until `pid` used less than `cores` over `window` seconds (or `timeout` passed) and
    returns the seconds waited: influxd goes on compacting what the run before wrote, which
    would otherwise weigh on whichever InfluxDB run comes next."""
    start = time.monotonic()
    while True:
        # influxd has no children: an empty map spares the scan of /proc.
        before, t0 = tree_cpu(pid, {}), time.monotonic()
        time.sleep(window)
        after, t1 = tree_cpu(pid, {}), time.monotonic()
        if (after - before) / (t1 - t0) < cores or t1 - start >= timeout:
            return t1 - start


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat(int(entry))
            if f:
                kids.setdefault(int(f[1]), []).append(int(entry))
    return kids


def tree_cpu(pid: int, kids: dict[int, list[int]] | None = None) -> float:
    """CPU seconds (utime+stime, plus reaped children's) of pid and every descendant."""
    kids = kids if kids is not None else children_map()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        f = _stat(p)
        if f:
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        todo.extend(kids.get(p, []))
    return total / TICK


def vmhwm_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine since boot.

    Stolen time (the hypervisor running someone else on this VM's cores) is neither busy nor
    idle for anything here: it is reported apart, as it explains runs minutes apart that differ.
    """
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = vals[:8]
    return (user + nice + system + irq + softirq) / TICK, steal / TICK


class Sampler:
    """Samples the CPU seconds of named process trees every 100 ms, for utilisation per window."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.samples: list[tuple[float, dict[str, float], float, float]] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def watch(self, name: str, pid: int) -> None:
        with self.lock:
            self.pids[name] = pid

    def unwatch(self, name: str) -> None:
        with self.lock:
            self.pids.pop(name, None)

    def _run(self) -> None:
        while not self.stopped.wait(0.1):
            self.sample()

    def sample(self) -> None:
        kids = children_map()
        with self.lock:
            pids = dict(self.pids)
        now = time.time()
        cpus = {name: tree_cpu(pid, kids) for name, pid in pids.items()}
        busy, stolen = machine_cpu()
        with self.lock:
            self.samples.append((now, cpus, busy, stolen))
            if len(self.samples) > 200_000:
                del self.samples[: len(self.samples) // 2]

    def utilisation(self, t0: float, t1: float) -> dict[str, float]:
        """Cores used by each watched process (and 'machine') between t0 and t1."""
        with self.lock:
            inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        (a_t, a, a_busy, a_stolen), (b_t, b, b_busy, b_stolen) = inside[0], inside[-1]
        span = b_t - a_t
        out = {name: round((b[name] - a[name]) / span, 2) for name in b if name in a}
        out["machine"] = round((b_busy - a_busy) / span, 2)
        out["stolen"] = round((b_stolen - a_stolen) / span, 2)
        return out

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(2)


# --- HTTP helpers -----------------------------------------------------------------------------

def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def influx_query(influx: str, q: str, db: str | None = None) -> dict:
    params = {"q": q}
    if db:
        params["db"] = db
    req = urllib.request.Request(f"{influx}/query", data=urllib.parse.urlencode(params).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def drop_bench_databases(influx: str) -> list[str]:
    """Drops every database a bench run made (`bench_*`) and returns their names: a run stopped
    half way leaves its database behind, which the next run's influxd would carry."""
    series = influx_query(influx, "SHOW DATABASES")["results"][0].get("series", [])
    names = [row[0] for row in (series[0].get("values", []) if series else []) if row[0].startswith("bench_")]
    for name in names:
        drop_database(influx, name)
    return names


def influx_count(influx: str, db: str, measurement: str) -> int:
    res = influx_query(influx, f'SELECT count("fuel") FROM "{measurement}"', db)
    try:
        return int(res["results"][0]["series"][0]["values"][0][1])
    except (KeyError, IndexError):
        return 0


def drop_database(influx: str, db: str) -> None:
    influx_query(influx, f'DROP DATABASE "{db}"')


def fresh_database(influx: str, db: str) -> None:
    drop_database(influx, db)
    influx_query(influx, f'CREATE DATABASE "{db}"')


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_from_metrics(text: str, name: str) -> list[tuple[float, float]]:
    """[(upper bound in seconds, cumulative count)] of a Prometheus histogram."""
    out = []
    for m in re.finditer(rf'^{name}_bucket\{{[^}}]*le="([^"]+)"[^}}]*\}} (\S+)', text, re.M):
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        out.append((le, float(m.group(2))))
    return sorted(out)


def quantile_from_buckets(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Linear interpolation inside the bucket holding quantile q (Prometheus' method), in ms."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le * 1000
            return (prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)) * 1000
        prev_le, prev_c = le, c
    return None


def quantiles_from_ms_histogram(hist: dict[str, int], qs=(0.5, 0.99)) -> dict[str, float]:
    items = sorted((int(k), v) for k, v in hist.items())
    total = sum(v for _, v in items)
    out: dict[str, float] = {"n": total}
    for q in qs:
        rank, seen = q * total, 0
        for ms, v in items:
            seen += v
            if seen >= rank:
                out[f"p{round(q * 100)}"] = ms
                break
    if items:
        out["max"] = items[-1][0]
    return out


# --- the benchmark ----------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.brokers = args.brokers
        self.influx = args.influx
        self.sampler = Sampler()
        self.results: dict[str, dict] = {}
        self.tansu_pid = int(args.tansu_pid)
        self.influx_pid = int(args.influx_pid)
        self.sampler.watch("tansu", self.tansu_pid)
        self.sampler.watch("influxd", self.influx_pid)
        stamp = time.strftime("%H%M%S")
        self.topic = f"bench-{stamp}"
        self.capture = self.out / "captured-bodies.bin"
        self.metrics_port = args.metrics_port
        # The baseline and the Tansu reader fetch as the sink does.
        with open(HERE / "sink.toml", "rb") as fh:
            props = tomllib.load(fh)["kafka"].get("properties", {})
        self.fetch_wait = ["--fetch-wait-ms", str(props.get("fetch.wait.max.ms", 500))]

    # helpers
    def restart_stack(self) -> None:
        """A fresh, empty broker (memory storage) and a restarted InfluxDB, as run.sh started them."""
        if not self.a.stack_dir:
            return
        env = dict(os.environ)
        for cmd in ("stop", "start"):
            subprocess.run([str(REPO / "scripts" / "stack.sh"), cmd], env=env, check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run_dir = Path(self.a.stack_dir) / "run"
        self.tansu_pid = int((run_dir / "tansu.pid").read_text())
        self.influx_pid = int((run_dir / "influxd.pid").read_text())
        self.sampler.watch("tansu", self.tansu_pid)
        self.sampler.watch("influxd", self.influx_pid)
        kafka_admin.wait_ready(self.brokers, 60)

    def python(self, script: str) -> list[str]:
        return [self.a.python, str(HERE / script)]

    def create_topic(self, topic: str) -> None:
        kafka_admin.create_topic(self.brokers, topic, self.a.partitions)
        kafka_admin.create_topic(self.brokers, topic + ".dlq", 1)

    def start_discard(self, name: str, latency: bool = False, capture: bool = False) -> tuple[subprocess.Popen, str]:
        cmd = self.python("discard.py") + ["--port", "0"]
        if latency:
            cmd.append("--latency")
        if capture:
            self.capture.unlink(missing_ok=True)
            cmd += ["--capture", str(self.capture)]
        proc = spawn(f"{name}.discard", cmd, self.out, stdout_pipe=True)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            raise RuntimeError(f"discard endpoint did not start: {line!r}")
        self.sampler.watch("discard", proc.pid)
        return proc, m.group(1)

    def discard_stats(self, url: str) -> dict:
        return json.loads(http_get(url + "/stats")[1])

    def sink_env(self, group: str, topic: str, url: str, db: str, gzip: bool) -> dict:
        return {
            "KIS_KAFKA__BROKERS": self.brokers,
            "KIS_KAFKA__GROUP_ID": group,
            "KIS_KAFKA__TOPICS": topic,
            "KIS_INFLUXDB__URL": url,
            "KIS_INFLUXDB__DATABASE": db,
            "KIS_INFLUXDB__GZIP": "true" if gzip else "false",
            "KIS_INFLUXDB__WRITE_CONCURRENCY": str(self.a.concurrency),
            "KIS_METRICS__LISTEN": f"127.0.0.1:{self.metrics_port}",
        }

    def fresh_quiet_database(self, db: str) -> float:
        """An empty database `db`, once influxd is quiet; returns the seconds waited for that."""
        fresh_database(self.influx, db)
        return wait_until_quiet(self.influx_pid)

    def count_and_drop(self, db: str) -> tuple[int, int]:
        """The points and fuel alert points InfluxDB holds in `db`; then `db` is dropped. Each
        InfluxDB run then starts with influxd holding no earlier run's data (the bench's runs
        would otherwise leave up to seven databases of 2M points each behind, one more before
        each ceiling run than before the sink run it is compared with)."""
        points = influx_count(self.influx, db, "generator")
        alert_points = influx_count(self.influx, db, "generator_alerts")
        drop_database(self.influx, db)
        return points, alert_points

    def sink_status(self) -> dict | None:
        try:
            code, body = http_get(f"http://127.0.0.1:{self.metrics_port}/status", timeout=2)
        except OSError:
            return None
        return json.loads(body) if code == 200 else None

    def sink_metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)[1].decode()

    @staticmethod
    def offsets(status: dict, key: str) -> int:
        return sum((p.get(key) or 0) for p in status.get("partitions", []))

    @staticmethod
    def consumed(status: dict) -> int:
        return int(status.get("records_consumed") or 0)

    # -- runs --
    def preload(self) -> None:
        n = self.a.records
        self.create_topic(self.topic)
        log(f"preloading {n} records ({self.a.generators} generators, uuid keys) into {self.topic} "
            f"({self.a.partitions} partitions)")
        t0 = time.time()
        proc = spawn("preload", [self.a.sink, "simulate", "--config", str(HERE / "sink.toml"), "--topic", self.topic,
                                 "--rate", "0", "--count", str(n), "--generators", str(self.a.generators),
                                 "--key", "uuid"],
                     self.out, env={"KIS_KAFKA__BROKERS": self.brokers, "KIS_LOG__FORMAT": "text"}, stdout_pipe=True)
        self.sampler.watch("producer", proc.pid)
        cpu, hwm = 0.0, None
        while proc.poll() is None:
            cpu, hwm = tree_cpu(proc.pid) or cpu, vmhwm_mib(proc.pid) or hwm
            time.sleep(0.2)
        t1 = time.time()
        assert proc.stdout is not None
        summary = json.loads(proc.stdout.read().decode().strip().splitlines()[-1])
        stop(proc)
        self.sampler.unwatch("producer")
        if summary.get("valid") != n:
            raise RuntimeError(f"preload produced {summary}, wanted {n} valid records")
        count = kafka_admin.count(self.brokers, self.topic, timeout=120)
        if count != n:
            raise RuntimeError(f"topic {self.topic} holds {count} records, wanted {n}")
        secs = t1 - t0
        self.results["preload"] = {
            "records": n, "seconds": round(secs, 2), "records_per_s": round(n / secs),
            "cpu_s": round(cpu, 2), "cpu_s_per_M": round(cpu / n * 1e6, 2), "peak_rss_mib": hwm,
            "util": self.sampler.utilisation(t0, t1),
        }
        log(f"preload: {n} records in {secs:.1f}s ({n / secs:,.0f}/s); topic holds {count}")

    def tansu_read(self) -> None:
        n = self.a.records
        log("tansu-read: consume-only reader")
        proc = spawn("tansu-read", self.python("tansu_read.py") + [
            "--brokers", self.brokers, "--topic", self.topic, "--partitions", str(self.a.partitions),
            "--count", str(n)] + self.fetch_wait, self.out, stdout_pipe=True)
        self.sampler.watch("reader", proc.pid)
        res = read_json_line(proc, None, timeout=600)
        stop(proc)
        self.sampler.unwatch("reader")
        secs = res["done_at"] - res["first_at"]
        self.results["tansu-read"] = {
            "records": res["records"], "seconds": round(secs, 2), "records_per_s": round(res["records"] / secs),
            "cpu_s": round(res["cpu_s"], 2), "cpu_s_per_M": round(res["cpu_s"] / n * 1e6, 2),
            "util": self.sampler.utilisation(res["first_at"], res["done_at"]),
        }
        log(f"tansu-read: {res['records'] / secs:,.0f} records/s")

    def sink_drain(self, name: str, target: str, gzip: bool, capture: bool = False) -> None:
        """The sink drains the preloaded topic into `target` ("discard" or "influx")."""
        n = self.a.records
        disc = None
        if target == "discard":
            disc, url = self.start_discard(name, capture=capture)
            db = "bench"
        else:
            url, db = self.influx, f"bench_{name.replace('-', '_')}"
            quiet_wait = self.fresh_quiet_database(db)
        group = f"{name}-{time.time_ns()}"
        log(f"{name}: the sink drains {n} records into {target} (gzip {'on' if gzip else 'off'})")
        t_start = time.time()
        sink = spawn(f"{name}.sink", [self.a.sink, "run", "--config", str(HERE / "sink.toml")], self.out,
                     env=self.sink_env(group, self.topic, url, db, gzip))
        self.sampler.watch("sink", sink.pid)
        t_first = t_durable = t_committed = None
        cpu = hwm = None
        deadline = time.monotonic() + self.a.drain_timeout
        status: dict = {}
        progress, progress_at = -1, time.monotonic()
        while time.monotonic() < deadline:
            if time.monotonic() - progress_at > self.a.stall_timeout:
                raise RuntimeError(f"{name}: no progress for {self.a.stall_timeout:.0f}s: {json.dumps(status)[:1500]}")
            if sink.poll() is not None:
                raise RuntimeError(f"{name}: the sink exited with {sink.returncode}; see {self.out}/{name}.sink.log")
            status = self.sink_status() or {}
            now = time.time()
            stored = self.offsets(status, "stored_offset") if status else 0
            if stored != progress:
                progress, progress_at = stored, time.monotonic()
            if t_first is None and self.consumed(status) > 0:
                t_first = now
            if t_durable is None and status and self.offsets(status, "stored_offset") >= n:
                # The sink's own clock of the last batch made durable: exact whatever the polling.
                t_durable = status.get("last_durable_write") or now
                cpu, hwm = tree_cpu(sink.pid), vmhwm_mib(sink.pid)
            if t_durable is not None and self.offsets(status, "committed_offset") >= n:
                t_committed = now
                break
            # Often until the first record (the start of the clock), then seldom: each poll
            # costs the sink and this driver CPU that the ceiling's replay does not pay, on
            # the cores influxd shares.
            time.sleep(0.05 if t_first is None else 0.25)
        if status.get("git_sha"):
            self.results["build"] = {"git_sha": status["git_sha"], "version": status.get("version")}
        if t_durable is None or t_first is None:
            raise RuntimeError(f"{name}: not drained within {self.a.drain_timeout}s: {json.dumps(status)[:2000]}")
        metrics = self.sink_metrics()
        points = int(metric_sum(metrics, "kis_points_written_total"))
        dead = int(metric_sum(metrics, "kis_records_dead_lettered_total"))
        batches = int(metric_sum(metrics, "kis_batches_written_total"))
        writing_s = metric_sum(metrics, "kis_write_duration_seconds_sum")
        rc = stop(sink)
        self.sampler.unwatch("sink")
        secs = t_durable - t_first
        res = {
            "records": n, "points": points, "dead_lettered": dead, "batches": batches,
            "seconds": round(secs, 2), "join_s": round(t_first - t_start, 2),
            "commit_lag_s": round(t_committed - t_durable, 2) if t_committed else None,
            "records_per_s": round(n / secs), "points_per_s": round(points / secs),
            "cpu_s": round(cpu, 2), "cpu_s_per_M": round(cpu / n * 1e6, 2), "peak_rss_mib": round(hwm, 1),
            "util": self.sampler.utilisation(t_first, t_durable), "exit": rc,
            # How full the write slots were: time spent in write requests over the slots' time.
            "write_slots_busy": round(writing_s / (secs * self.a.concurrency), 2),
        }
        if disc is not None:
            st = self.discard_stats(url)
            res["lines_received"] = st["lines"]
            res["requests"] = st["requests"]
            res["discard_busy_s"] = st["busy_s"]
            res["wire_mib"] = round(st["bytes_in"] / 2**20, 1)
            stop(disc)
            self.sampler.unwatch("discard")
        else:
            res["influx_points"], res["influx_alert_points"] = self.count_and_drop(db)
            res["lines_received"] = res["influx_points"] + res["influx_alert_points"]
        if target == "influx":
            res["influxd_quiet_wait_s"] = round(quiet_wait, 1)
        self.results[name] = res
        log(f"{name}: {res['records_per_s']:,} records/s, {res['cpu_s_per_M']} CPU s/1M, "
            f"{res['peak_rss_mib']} MiB peak, {res['util']}")

    def baseline_drain(self, name: str, target: str) -> None:
        n = self.a.records
        disc = None
        if target == "discard":
            disc, url = self.start_discard(name)
            db = "bench"
        else:
            url, db = self.influx, f"bench_{name.replace('-', '_')}"
            quiet_wait = self.fresh_quiet_database(db)
        log(f"{name}: the Python baseline drains {n} records into {target} (gzip on)")
        proc = spawn(f"{name}.baseline", self.python("baseline.py") + [
            "--brokers", self.brokers, "--topic", self.topic, "--group", f"{name}-{time.time_ns()}",
            "--url", url, "--database", db, "--count", str(n)] + self.fetch_wait, self.out, stdout_pipe=True)
        self.sampler.watch("baseline", proc.pid)
        res = read_json_line(proc, "done", timeout=self.a.drain_timeout)
        stop(proc)
        self.sampler.unwatch("baseline")
        secs = res["done_at"] - res["first_at"]
        out = {
            "records": n, "points": res["written"], "seconds": round(secs, 2),
            "records_per_s": round(n / secs), "points_per_s": round(res["written"] / secs),
            "cpu_s": round(res["cpu_s"], 2), "cpu_s_per_M": round(res["cpu_s"] / n * 1e6, 2),
            "peak_rss_mib": round(res["vmhwm_kib"] / 1024, 1), "batches": res["batches"],
            "util": self.sampler.utilisation(res["first_at"], res["done_at"]),
        }
        if disc is not None:
            st = self.discard_stats(url)
            out["lines_received"] = st["lines"]
            out["discard_busy_s"] = st["busy_s"]
            stop(disc)
            self.sampler.unwatch("discard")
        else:
            out["influx_points"], _ = self.count_and_drop(db)
            out["lines_received"] = out["influx_points"]
            out["influxd_quiet_wait_s"] = round(quiet_wait, 1)
        self.results[name] = out
        log(f"{name}: {out['records_per_s']:,} records/s, {out['cpu_s_per_M']} CPU s/1M, {out['util']}")

    def check_capture(self) -> None:
        """Every captured line is its own point: distinct (series, timestamp) pairs."""
        keys = set()
        lines = 0
        with open(self.capture, "rb") as fh:
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    break
                body = fh.read(int.from_bytes(head, "big"))
                for line in body.splitlines():
                    if line:
                        lines += 1
                        series, _, rest = line.partition(b" ")
                        keys.add(series + b" " + rest.rsplit(b" ", 1)[-1])
        self.results["sink-discard-raw"]["distinct_points_in_capture"] = len(keys)
        self.results["sink-discard-raw"]["captured_lines"] = lines
        log(f"capture: {lines} lines, {len(keys)} distinct (series, time) points")

    def replay(self, name: str, target: str) -> None:
        disc = None
        if target == "discard":
            disc, base = self.start_discard(name)
            url = base + "/write?db=bench&precision=ns"
        else:
            db = f"bench_{name.replace('-', '_')}"
            quiet_wait = self.fresh_quiet_database(db)
            url = f"{self.influx}/write?db={db}&precision=ns"
        log(f"{name}: replaying the sink's captured requests into {target} (gzip, concurrency {self.a.concurrency})")
        proc = spawn(f"{name}.replay", self.python("replay.py") + [
            "--url", url, "--bodies", str(self.capture), "--concurrency", str(self.a.concurrency), "--gzip"],
            self.out, stdout_pipe=True)
        self.sampler.watch("replay", proc.pid)
        res = read_json_line(proc, None, timeout=self.a.drain_timeout)
        stop(proc)
        self.sampler.unwatch("replay")
        records = self.a.records
        lines = res["lines"]
        out = {
            "records": records, "lines": lines, "requests": res["requests"], "retries": res["retries"],
            "seconds": res["seconds"], "records_per_s": round(records / res["seconds"]),
            "lines_per_s": res["lines_per_s"],
            "util": self.sampler.utilisation(res["started_at"], res["done_at"]),
        }
        if disc is not None:
            st = self.discard_stats(base)
            out["discard_cpu_s"] = None
            out["discard_busy_s"] = st["busy_s"]
            stop(disc)
            self.sampler.unwatch("discard")
        else:
            out["influx_points"], out["influx_alert_points"] = self.count_and_drop(db)
            out["influxd_quiet_wait_s"] = round(quiet_wait, 1)
        self.results[name] = out
        log(f"{name}: {out['lines_per_s']:,} lines/s = {out['records_per_s']:,} records/s, {out['util']}")

    def latency(self, name: str, consumer: str, target: str, rate: int) -> None:
        """A steady producer at `rate` records/s; produce -> acknowledged latency."""
        count = int(rate * self.a.latency_seconds)
        topic = f"lat-{name}-{time.strftime('%H%M%S')}"
        self.create_topic(topic)
        disc = None
        if target == "discard":
            disc, url = self.start_discard(name, latency=True)
            db = "bench"
        elif target == "influx":
            url, db = self.influx, f"bench_{name.replace('-', '_')}"
            fresh_database(self.influx, db)
        else:
            url, db = "", ""
        log(f"{name}: {consumer} -> {target}, steady {rate:,} records/s for {self.a.latency_seconds:.0f}s")
        cons = None
        if consumer == "sink":
            cons = spawn(f"{name}.sink", [self.a.sink, "run", "--config", str(HERE / "sink.toml")], self.out,
                         env=self.sink_env(f"{name}-{time.time_ns()}", topic, url, db, True))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                st = self.sink_status() or {}
                if len(st.get("partitions", [])) >= self.a.partitions:
                    break
                if cons.poll() is not None:
                    raise RuntimeError(f"{name}: the sink exited; see its log")
                time.sleep(0.2)
            else:
                raise RuntimeError(f"{name}: the sink was not assigned {self.a.partitions} partitions in 60s")
        elif consumer == "reader":
            cons = spawn(f"{name}.reader", self.python("tansu_read.py") + [
                "--brokers", self.brokers, "--topic", topic, "--partitions", str(self.a.partitions),
                "--count", str(count), "--latency"] + self.fetch_wait, self.out, stdout_pipe=True)
        else:
            cons = spawn(f"{name}.baseline", self.python("baseline.py") + [
                "--brokers", self.brokers, "--topic", topic, "--group", f"{name}-{time.time_ns()}",
                "--url", url, "--database", db, "--count", str(count), "--latency"] + self.fetch_wait,
                self.out, stdout_pipe=True)
            read_json_line(cons, "assigned", timeout=60)
        self.sampler.watch(consumer, cons.pid)
        time.sleep(1.0)  # the first fetch requests are out
        t0 = time.time()
        prod = spawn(f"{name}.producer", [self.a.sink, "simulate", "--config", str(HERE / "sink.toml"), "--topic", topic,
                                          "--rate", str(rate), "--count", str(count), "--generators",
                                          str(self.a.generators), "--key", "uuid"],
                     self.out, env={"KIS_KAFKA__BROKERS": self.brokers, "KIS_LOG__FORMAT": "text"}, stdout_pipe=True)
        self.sampler.watch("producer", prod.pid)
        prod.wait(self.a.latency_seconds * 4 + 60)
        t_prod = time.time()
        assert prod.stdout is not None
        produced = json.loads(prod.stdout.read().decode().strip().splitlines()[-1])
        stop(prod)
        self.sampler.unwatch("producer")
        out: dict = {"rate_target": rate, "records": count, "produced": produced,
                     "producer_seconds": round(t_prod - t0, 2),
                     "producer_rate": round(count / (t_prod - t0))}
        if consumer == "sink":
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                st = self.sink_status() or {}
                if self.offsets(st, "stored_offset") >= count:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"{name}: the sink did not make {count} records durable")
            t1 = time.time()
            metrics = self.sink_metrics()
            buckets = histogram_from_metrics(metrics, "kis_end_to_end_latency_seconds")
            out["sink_histogram_ms"] = {
                "p50": round(quantile_from_buckets(buckets, 0.5) or 0, 1),
                "p99": round(quantile_from_buckets(buckets, 0.99) or 0, 1),
                "n": buckets[-1][1] if buckets else 0,
            }
            stop(cons)
        elif consumer == "reader":
            res = read_json_line(cons, None, timeout=180)
            t1 = time.time()
            out["reader_ms"] = quantiles_from_ms_histogram(res["latency_ms_histogram"])
            stop(cons)
        else:
            res = read_json_line(cons, "done", timeout=180)
            t1 = time.time()
            out["baseline_own_ms"] = quantiles_from_ms_histogram(res["latency_ms_histogram"])
            stop(cons)
        self.sampler.unwatch(consumer)
        out["util"] = self.sampler.utilisation(t0, t1)
        if disc is not None:
            st = self.discard_stats(url)
            out["discard_ms"] = quantiles_from_ms_histogram(st["latency_ms_histogram"])
            out["lines_received"] = st["lines"]
            out["discard_timeline"] = st.get("timeline")
            stop(disc)
            self.sampler.unwatch("discard")
        # The figure reported: the discard endpoint's exact arrival times when there is one;
        # into InfluxDB, the sink's histogram (bucket-interpolated) or the baseline's own clock.
        if "discard_ms" in out:
            out["p50_ms"], out["p99_ms"], out["latency_source"] = out["discard_ms"]["p50"], out["discard_ms"]["p99"], "discard endpoint"
        elif "sink_histogram_ms" in out:
            h = out["sink_histogram_ms"]
            out["p50_ms"], out["p99_ms"], out["latency_source"] = h["p50"], h["p99"], "kis_end_to_end_latency_seconds"
        elif "reader_ms" in out:
            b = out["reader_ms"]
            out["p50_ms"], out["p99_ms"], out["latency_source"] = b["p50"], b["p99"], "arrival at the reader"
        else:
            b = out["baseline_own_ms"]
            out["p50_ms"], out["p99_ms"], out["latency_source"] = b["p50"], b["p99"], "baseline's ack clock"
        if target == "influx":
            drop_database(self.influx, db)
        self.results[name] = out
        log(f"{name}: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms ({out['latency_source']}), "
            f"producer {out['producer_rate']:,}/s, {out['util']}")

    # -- all of it --
    def run(self) -> None:
        only = set(self.a.only.split(",")) if self.a.only else None

        def want(name: str) -> bool:
            return only is None or name in only or any(name.startswith(o.rstrip("*")) for o in only if o.endswith("*"))

        self.results["machine"] = machine_info()
        self.results["params"] = {"records": self.a.records, "partitions": self.a.partitions,
                                  "generators": self.a.generators, "concurrency": self.a.concurrency,
                                  "latency_seconds": self.a.latency_seconds}
        left = drop_bench_databases(self.influx)
        if left:
            log(f"dropped {len(left)} database(s) an earlier run left in InfluxDB: {', '.join(left)}")
        self.preload()
        if want("tansu-read"):
            self.tansu_read()
        self.sink_drain("sink-discard-raw", "discard", gzip=False, capture=True)
        self.check_capture()
        if want("sink-discard-gz"):
            self.sink_drain("sink-discard-gz", "discard", gzip=True)
        if want("discard-capacity"):
            self.replay("discard-capacity", "discard")
        if want("baseline-discard"):
            self.baseline_drain("baseline-discard", "discard")
        # InfluxDB's speed next to the same load moves by a tenth from one run to the next here;
        # the pairs, in turn, give the ratio's spread and a median that moves less. Every other
        # pair runs the ceiling first, so that influxd drifting faster or slower over the run
        # favours neither side.
        for index, (sink_run, ceiling_run) in enumerate(pair_names(self.a.influx_pairs)):
            runs = [("sink-influx", lambda: self.sink_drain(sink_run, "influx", gzip=True)),
                    ("influx-ceiling", lambda: self.replay(ceiling_run, "influx"))]
            for kind, run in runs if index % 2 == 0 else reversed(runs):
                if want(kind):
                    run()
        if want("baseline-influx"):
            self.baseline_drain("baseline-influx", "influx")
        self.save()
        # Half of each measured rate, and a low fixed rate Tansu sustains easily, where the
        # sink's own share of the latency shows next to Tansu's delivery delay.
        low = self.a.latency_low_rate
        for lat, (consumer, target, base) in {
            "latency-tansu-read": ("reader", "none", "sink-discard-gz"),
            "latency-sink-discard": ("sink", "discard", "sink-discard-gz"),
            "latency-baseline-discard": ("baseline", "discard", "baseline-discard"),
            "latency-sink-influx": ("sink", "influx", "sink-influx"),
            "latency-baseline-influx": ("baseline", "influx", "baseline-influx"),
            "latency-low-tansu-read": ("reader", "none", None),
            "latency-low-sink-discard": ("sink", "discard", None),
        }.items():
            if not want(lat):
                continue
            if self.a.latency_rate:
                rate = self.a.latency_rate
            elif base is None:
                rate = low
            elif base in self.results:
                rate = int(self.results[base]["records_per_s"] * 0.5 / 1000) * 1000 or 1000
            else:
                continue
            if rate > 0:
                # Each latency run on an empty broker: what earlier runs left in Tansu's memory
                # storage never weighs on it.
                self.restart_stack()
                try:
                    self.latency(lat, consumer, target, rate)
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    # One latency run that cannot finish (a broker that cannot take the rate on
                    # a busy machine, say) is reported as such; the others still run.
                    log(f"{lat}: failed: {error}")
                    stop_all()
                    self.results[lat] = {"rate_target": rate, "error": str(error)[:300]}
                self.save()
        self.save()

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")


def machine_info() -> dict:
    model = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        mem_kib = int(fh.readline().split()[1])
    load = open("/proc/loadavg").read().split()[:3]
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem_kib / 2**20, 1),
            "kernel": os.uname().release, "loadavg_at_start": load}


# --- the report -------------------------------------------------------------------------------

def fmt(v, spec=",.0f") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def pair_names(count: int) -> list[tuple[str, str]]:
    """The runs of `count` InfluxDB pairs: (sink-influx, influx-ceiling), then with -2, -3..."""
    return [(f"sink-influx{suffix}", f"influx-ceiling{suffix}")
            for suffix in ["" if i == 1 else f"-{i}" for i in range(1, count + 1)]]


def pairs_run(r: dict) -> list[tuple[str, str]]:
    """The InfluxDB pairs `r` has a sink run of, in the order run."""
    return pair_names(len([k for k in r if k.startswith("sink-influx")]))


def measured_pairs(r: dict) -> list[tuple[str, str]]:
    """The InfluxDB pairs of `r` whose both runs finished, in the order run."""
    pairs = []
    for sink_run, ceiling_run in pairs_run(r):
        if r.get(sink_run, {}).get("records_per_s") and r.get(ceiling_run, {}).get("records_per_s"):
            pairs.append((sink_run, ceiling_run))
    return pairs


def pair_ratios(r: dict) -> list[float]:
    """sink / ceiling of each measured InfluxDB pair."""
    return [r[s]["records_per_s"] / r[c]["records_per_s"] for s, c in measured_pairs(r)]


def influxd_share(r: dict, sink_run: str = "sink-influx", ceiling_run: str = "influx-ceiling") -> str | None:
    """Splits sink / ceiling into the cores influxd had and the lines it wrote per core-second.

    On a machine this small the sink and Tansu run on the cores InfluxDB would otherwise use, and
    the replay does not (it needs no broker and sends pre-encoded bodies): this tells that part
    apart from InfluxDB doing more work per line next to the sink.
    """
    sink, ceiling = r.get(sink_run), r.get(ceiling_run)
    if not sink or not ceiling:
        return None
    try:
        sink_cores, ceiling_cores = sink["util"]["influxd"], ceiling["util"]["influxd"]
        sink_lines_s = sink["lines_received"] / sink["seconds"]
        ceiling_lines_s = ceiling["lines"] / ceiling["seconds"]
        sink_per_core, ceiling_per_core = sink_lines_s / sink_cores, ceiling_lines_s / ceiling_cores
    except (KeyError, ZeroDivisionError, TypeError):
        return None
    others = {k: v for k, v in sink["util"].items() if k not in ("influxd", "machine", "stolen") and v >= 0.01}
    return (f"influxd used {sink_cores:.2f} cores next to the sink ({', '.join(f'{k} {v:.2f}' for k, v in others.items())}) "
            f"and {ceiling_cores:.2f} alone: {sink_cores / ceiling_cores:.2f}; it wrote {sink_per_core:,.0f} lines per "
            f"core-second next to the sink and {ceiling_per_core:,.0f} alone: {sink_per_core / ceiling_per_core:.2f}; "
            f"the product is the pair's sink / ceiling ratio; the sink's write slots were busy "
            f"{sink.get('write_slots_busy', float('nan')):.0%} of the time")


def report(results: dict) -> str:
    r = results
    out = []
    m = r.get("machine", {})
    p = r.get("params", {})
    out.append(f"machine: {m.get('nproc')} cores, {m.get('cpu')}, {m.get('mem_gib')} GiB; "
               f"load average at start {' '.join(m.get('loadavg_at_start', []))}")
    if r.get("build"):
        out.append(f"sink build: {r['build'].get('version')} at git sha {r['build'].get('git_sha')}")
    out.append(f"data: {p.get('records'):,} simulator records, {p.get('partitions')} partitions, "
               f"{p.get('generators'):,} generators, uuid keys, CreateTime; write concurrency {p.get('concurrency')}")
    out.append("")
    head = f"{'run':<19} {'records/s':>10} {'points/s':>10} {'lines in':>10} {'CPU s/1M':>9} {'peak RSS':>9}  busy cores during the run"
    out.append(head)
    out.append("-" * len(head) + "-" * 20)
    rows = ["preload", "tansu-read", "sink-discard-raw", "sink-discard-gz", "discard-capacity", "baseline-discard",
            *[run for pair in pairs_run(r) for run in pair],
            "baseline-influx"]
    for name in rows:
        x = r.get(name)
        if not x:
            continue
        util = ", ".join(f"{k} {v:.2f}" for k, v in sorted(x.get("util", {}).items(), key=lambda kv: -kv[1]) if v >= 0.01)
        lines = x.get("lines_received", x.get("lines"))
        rss = x.get("peak_rss_mib")
        out.append(f"{name:<19} {fmt(x.get('records_per_s')):>10} {fmt(x.get('points_per_s')):>10} "
                   f"{fmt(lines):>10} {fmt(x.get('cpu_s_per_M'), '.2f'):>9} "
                   f"{(fmt(rss, '.0f') + ' MiB') if rss else '-':>9}  {util}")
    out.append("")
    lat_rows = [k for k in r if k.startswith("latency-")]
    if lat_rows:
        out.append(f"{'latency run':<25} {'rate':>8} {'achieved':>9} {'p50 ms':>7} {'p99 ms':>7}  source; busy cores")
        for name in lat_rows:
            x = r[name]
            if "error" in x:
                out.append(f"{name:<25} {fmt(x['rate_target']):>8}  failed: {x['error'][:120]}")
                continue
            extra = ""
            if "sink_histogram_ms" in x and x.get("latency_source") != "kis_end_to_end_latency_seconds":
                h = x["sink_histogram_ms"]
                extra = f" (sink histogram: p50 {h['p50']}, p99 {h['p99']})"
            out.append(f"{name:<25} {fmt(x['rate_target']):>8} {fmt(x['producer_rate']):>9} {fmt(x['p50_ms']):>7} "
                       f"{fmt(x['p99_ms']):>7}  {x['latency_source']}{extra}; "
                       + ", ".join(f"{k} {v:.2f}" for k, v in sorted(x.get("util", {}).items(), key=lambda kv: -kv[1]) if v >= 0.01))
        out.append("")

    def ratio(a, b, key="records_per_s"):
        try:
            return r[a][key] / r[b][key]
        except (KeyError, ZeroDivisionError, TypeError):
            return None

    out.append("ratios")
    pairs = pair_ratios(r)
    checks = [
        (f"sink / InfluxDB ceiling, median of {len(pairs)} pair(s)", statistics.median(pairs) if pairs else None,
         ">= 0.90"),
        ("sink / baseline, discard, gzip (records/s)", ratio("sink-discard-gz", "baseline-discard"), ""),
        ("sink / baseline, InfluxDB (records/s)", ratio("sink-influx", "baseline-influx"), ""),
        ("sink CPU / baseline CPU per record, discard, gzip", ratio("sink-discard-gz", "baseline-discard", "cpu_s_per_M"), "<= 0.20"),
        ("sink / Tansu's delivery ceiling (discard, gzip)", ratio("sink-discard-gz", "tansu-read"), ""),
        ("sink / discard endpoint capacity (discard, gzip)", ratio("sink-discard-gz", "discard-capacity"), ""),
    ]
    for label, v, goal in checks:
        out.append(f"  {label:<52} {fmt(v, '.2f'):>6}  {('goal ' + goal) if goal else ''}")
    if len(pairs) > 1:
        out.append(f"  (each pair, in the order run: {', '.join(f'{v:.2f}' for v in pairs)})")
    gz = r.get("sink-discard-gz", {})
    goals = [
        ("records/s into the discard endpoint, gzip on", gz.get("records_per_s"), ">= 400,000"),
        ("peak RSS draining the backlog (max over sink runs), MiB",
         max((r[k]["peak_rss_mib"] for k in r if k in ("sink-discard-raw", "sink-discard-gz") or k.startswith("sink-influx")
              if r[k].get("peak_rss_mib")), default=None),
         "<= 256"),
        ("p99 produce->acknowledged at half load, sink -> discard, ms", r.get("latency-sink-discard", {}).get("p99_ms"), "<= 250"),
        ("p99 produce->acknowledged at half load, sink -> InfluxDB, ms", r.get("latency-sink-influx", {}).get("p99_ms"), "<= 250"),
    ]
    out.append("goals")
    for label, v, goal in goals:
        out.append(f"  {label:<62} {fmt(v):>8}  goal {goal}")
    raw = r.get("sink-discard-raw", {})
    if "distinct_points_in_capture" in raw:
        out.append("")
        out.append(f"points: the sink's {raw['captured_lines']:,} lines (readings + fuel alert points) are "
                   f"{raw['distinct_points_in_capture']:,} distinct (series, time) points; "
                   f"records {raw['records']:,}, reading points written {raw['points']:,}")
    shares = [(s, influxd_share(r, s, c)) for s, c in measured_pairs(r)]
    if shares:
        out.append("")
        for sink_run, share in shares:
            if share:
                out.append(f"InfluxDB, {sink_run} and its ceiling: {share}")
    for k in [*[run for pair in measured_pairs(r) for run in pair], "baseline-influx"]:
        if k in r and "influx_points" in r[k]:
            out.append(f"  {k}: InfluxDB holds {r[k]['influx_points']:,} generator points"
                       + (f" + {r[k]['influx_alert_points']:,} alert points" if r[k].get('influx_alert_points') else "")
                       + (f"; influxd was quiet {r[k]['influxd_quiet_wait_s']} s after the run before"
                          if "influxd_quiet_wait_s" in r[k] else ""))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sink")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--brokers")
    ap.add_argument("--influx")
    ap.add_argument("--tansu-pid")
    ap.add_argument("--influx-pid")
    ap.add_argument("--out")
    ap.add_argument("--stack-dir", help="KIS_STACK_DIR of the bench stack: restarted (emptied) before each latency run")
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--generators", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=2, help="the sink's influxdb.write_concurrency, and the replay's")
    ap.add_argument("--influx-pairs", type=int, default=3,
                    help="times the sink -> InfluxDB run and InfluxDB's ceiling are measured, in turn")
    ap.add_argument("--latency-seconds", type=float, default=25.0)
    ap.add_argument("--latency-low-rate", type=int, default=5000, help="records/s of the latency-low-* runs (0: none)")
    ap.add_argument("--latency-rate", type=int, help="records/s of every latency run (default: half the measured rate)")
    ap.add_argument("--drain-timeout", type=float, default=600.0)
    ap.add_argument("--stall-timeout", type=float, default=45.0, help="fail a run whose sink makes no progress this long")
    ap.add_argument("--metrics-port", type=int, default=29464)
    ap.add_argument("--only", help="comma-separated runs after the preload and the raw sink run (prefix* allowed)")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="only print the table of an earlier results.json")
    args = ap.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return 0
    missing = [n for n in ("sink", "brokers", "influx", "tansu_pid", "influx_pid", "out") if not getattr(args, n)]
    if missing:
        ap.error("required: " + ", ".join("--" + n.replace("_", "-") for n in missing))

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bench = Bench(args)
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        bench.save()
        return 130
    finally:
        stop_all()
        bench.sampler.close()
        bench.save()
    print(report(bench.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
