"""The container image definition. No container engine runs here, so the image is never built:
hadolint lints the Dockerfile, and these tests check the essentials the chart relies on."""

from __future__ import annotations

import json
import re
import subprocess

from conftest import REPO, rendered

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(index for index, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing(hadolint):
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout or "[]") == []


def test_hadolint_can_fail(hadolint, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([hadolint, "--format", "json", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert {"DL3007", "DL3008"} <= {finding["code"] for finding in json.loads(result.stdout)}


def test_multi_stage_build_with_the_bundled_librdkafka():
    steps = instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2
    assert froms[0].startswith("rust:")
    build = " ".join(rest for word, rest in steps if word == "RUN")
    assert "cargo build --release --locked --bin kafka-influx-sink" in build
    # Nothing is fetched outside the build's own dependency resolution.
    assert not any(word == "ADD" for word, _ in steps)


def test_runtime_is_minimal_non_root_and_runs_the_binary():
    stage = final_stage()
    base = stage[0][1]
    assert base.startswith("gcr.io/distroless/")
    users = [rest for word, rest in stage if word == "USER"]
    assert users, "the runtime stage must set USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so the kubelet can verify runAsNonRoot, and the uid the chart runs as.
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    pod = rendered("defaults").pod_spec()["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))
    entrypoint = json.loads(next(rest for word, rest in stage if word == "ENTRYPOINT"))
    copied = [rest.split()[-1] for word, rest in stage if word == "COPY"]
    assert entrypoint == [copied[-1]] and entrypoint[0].endswith("/kafka-influx-sink")
    cmd = json.loads(next(rest for word, rest in stage if word == "CMD"))
    assert cmd == rendered("defaults").container()["args"]
    assert [rest for word, rest in stage if word == "EXPOSE"] == ["9464"]
    # The runtime stage writes nothing: no RUN, no VOLUME (readOnlyRootFilesystem holds).
    assert not any(word in {"RUN", "VOLUME"} for word, _ in stage)


def test_dockerignore_sends_only_what_the_build_copies():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    sources = set()
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            sources.update(rest.split()[:-1])
    assert sources == allowed
    for source in sources:
        assert (REPO / source).exists(), source
    assert "**/target/" in patterns
