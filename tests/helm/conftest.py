"""Shared pieces of the chart and image checks.

The chart is rendered offline with the real Helm SDK (PyPI `helm-python-sdk`): no cluster, so
`.Capabilities.APIVersions` knows no CRDs, and the chart switches its CRD-based resources by
values alone. Each file in values/ is one combination of values; `rendered(name)` renders it
once per session.

Every tool these checks need is required: a missing Python package stops collection with an
ImportError naming the requirements file, and a missing binary (promtool, hadolint, the sink)
fails the tests that need it. Nothing is skipped.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

try:
    import helm_python
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        "tests/helm needs the Helm SDK: pip install -r tests/helm/requirements.txt"
    ) from error

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "helm" / "kafka-influx-sink"
VALUES_DIR = Path(__file__).resolve().parent / "values"
CRD_DIR = Path(__file__).resolve().parent / "crds"

# With this release name the fullname is the chart name, so the rules' default job is
# "kafka-influx-sink", the job config/prometheus/kafka-influx-sink.rules.yml and its tests use.
RELEASE = "kafka-influx-sink"
NAMESPACE = "sinks"

VALUES_FILES = sorted(path.stem for path in VALUES_DIR.glob("*.yaml"))

# The errors a refused render raises: values.schema.json (HelmValuesError) or a template's
# `fail` (HelmRenderError).
RENDER_REFUSED = (helm_python.HelmValuesError, helm_python.HelmRenderError)


@dataclass
class Rendered:
    """One render of the chart: its manifests, parsed, and NOTES.txt."""

    docs: list[dict] = field(default_factory=list)
    notes: str = ""

    def of_kind(self, kind: str) -> list[dict]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0]

    def named(self, kind: str, name: str) -> dict:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"no {kind} named {name} rendered; have {self.names(kind)}")

    def names(self, kind: str) -> list[str]:
        return [doc["metadata"]["name"] for doc in self.of_kind(kind)]

    def kinds(self) -> set[str]:
        return {doc["kind"] for doc in self.docs}

    def container(self) -> dict:
        containers = self.pod_spec()["containers"]
        assert len(containers) == 1, containers
        return containers[0]

    def pod_spec(self) -> dict:
        return self.one("Deployment")["spec"]["template"]["spec"]


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(str(CHART_DIR))


def load_values(name: str) -> dict:
    return yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text()) or {}


def render(values: dict | None = None, *, release: str = RELEASE) -> Rendered:
    """Renders the chart with `values` over its defaults; refusals raise RENDER_REFUSED."""
    manifests = chart().render(values or {}, name=release, namespace=NAMESPACE)
    result = Rendered()
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            result.notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                result.docs.append(doc)
    return result


@functools.cache
def rendered(name: str) -> Rendered:
    """The render of values/<name>.yaml, cached for the session (treat it as read-only)."""
    return render(load_values(name))


def merged(*layers: dict) -> dict:
    """Deep-merges value layers, later ones winning, as `helm -f a -f b` does."""
    result: dict = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


def venv_or_path_tool(name: str) -> str:
    """A console script of this interpreter's environment, else one on PATH; fails if neither."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.fail(
            f"{name} not found next to {sys.executable} nor on PATH; "
            "install tests/helm/requirements.txt into this environment",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail(
            "promtool not found; scripts/install-prerequisites.sh installs it (Debian package prometheus)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def hadolint() -> str:
    return venv_or_path_tool("hadolint")


@pytest.fixture(scope="session")
def sink_bin() -> Path:
    path = Path(os.environ.get("KIS_SINK_BIN", REPO / "target" / "debug" / "kafka-influx-sink"))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"sink binary {path} not found: build it (cargo build --bin kafka-influx-sink) "
            "or point KIS_SINK_BIN at it",
            pytrace=False,
        )
    return path
