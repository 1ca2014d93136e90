"""Every values combination renders, lints, and produces manifests that validate strictly:
built-in kinds against the Kubernetes schemas (kubernetes-validate, strict: unknown fields are
errors) for the oldest and newest Kubernetes the chart supports, custom resources against the
vendored CRD schemas in crds/ made strict the same way."""

from __future__ import annotations

import copy
import functools
import json

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from conftest import CHART_DIR, CRD_DIR, NAMESPACE, RELEASE, VALUES_DIR, VALUES_FILES, chart, load_values, render, rendered

# Chart.yaml says kubeVersion >=1.25; kubernetes-validate's newest schemas are 1.37.
KUBERNETES_VERSIONS = ["1.25", "1.37"]

CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule_v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication_v1alpha1.json",
}

# Rendered YAML must lint clean. Sequences under a key may sit at the key's indentation (what
# toYaml writes), alert runbooks are long single lines, and a Secret's base64 value (a CA
# bundle) cannot be broken.
YAMLLINT = YamlLintConfig(
    """
extends: default
rules:
  document-start: disable
  line-length: {max: 400, allow-non-breakable-inline-mappings: true}
  indentation: {spaces: consistent, indent-sequences: whatever}
  truthy: {check-keys: false}
"""
)


def test_every_combination_is_covered():
    # The combinations the issue names, plus the ones that add coverage.
    assert {"defaults", "keda", "hpa", "monitoring", "existing-secrets", "sasl-tls"} <= set(VALUES_FILES)


@pytest.mark.parametrize("name", VALUES_FILES)
def test_helm_lint_strict(name):
    report = helm_python.lint(str(CHART_DIR), load_values(name), strict=True, namespace="sinks")
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    problems = [message for message in report["messages"] if message["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", VALUES_FILES)
def test_builtin_kinds_validate_strictly(name, version):
    validated = []
    for doc in rendered(name).docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {error.message}")
        validated.append(doc["kind"])
    assert {"Deployment", "ConfigMap", "ServiceAccount", "Service", "PodDisruptionBudget"} <= set(validated)


def test_kubernetes_validation_can_fail():
    deployment = copy.deepcopy(rendered("defaults").one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def strict(schema):
    """Closes every object that lists its properties, as kubeconform's -strict does."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@functools.cache
def crd_validator(key) -> jsonschema.protocols.Validator:
    """A validator for the vendored schema of `key`, closed with `strict`.

    Kubernetes evaluates CRD patterns as Go (RE2) regexes; the one upstream pattern that is RE2
    but not Python syntax (PrometheusRule's `^(?i)(abort|warn)?$`) is on a field the chart
    never sets, and patterns are only compiled when a value reaches them.
    """
    schema = strict(json.loads((CRD_DIR / CRD_SCHEMAS[key]).read_text()))
    return jsonschema.Draft202012Validator(schema)


def crd_errors(doc) -> list[str]:
    validator = crd_validator((doc["apiVersion"], doc["kind"]))
    return [
        f"{doc['kind']}/{doc['metadata']['name']} at /{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


@pytest.mark.parametrize("key", list(CRD_SCHEMAS), ids=[kind for _, kind in CRD_SCHEMAS])
def test_custom_resources_validate_against_vendored_crds(key):
    docs = [
        doc
        for name in VALUES_FILES
        for doc in rendered(name).docs
        if (doc["apiVersion"], doc["kind"]) == key
    ]
    assert docs, f"no values file renders a {key[1]}: add one"
    assert [error for doc in docs for error in crd_errors(doc)] == []


def test_crd_validation_can_fail():
    monitor = copy.deepcopy(rendered("monitoring").one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    monitor["spec"]["endpoints"][0]["scheme"] = "ftp"
    errors = crd_errors(monitor)
    assert any("intervall" in error for error in errors), errors
    assert any("ftp" in error for error in errors), errors


@pytest.mark.parametrize("name", VALUES_FILES)
def test_every_rendered_kind_is_validated(name):
    builtin = {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"}
    custom = {kind for _, kind in CRD_SCHEMAS}
    assert rendered(name).kinds() <= builtin | custom


@pytest.mark.parametrize("name", VALUES_FILES)
def test_rendered_yaml_lints_clean(name):
    manifests = chart().render(load_values(name), name=RELEASE, namespace=NAMESPACE)
    # One stream, as `helm template` prints it: each template's output as its own document(s).
    text = "".join(
        f"---\n{text.strip()}\n" for path, text in sorted(manifests.items()) if text.strip() and not path.endswith("NOTES.txt")
    )
    problems = [f"{problem.line}:{problem.column} {problem.message}" for problem in linter.run(text, YAMLLINT)]
    assert problems == []


def test_values_files_lint_clean():
    for path in [CHART_DIR / "values.yaml", *sorted(VALUES_DIR.glob("*.yaml"))]:
        problems = [f"{path.name}:{p.line} {p.message}" for p in linter.run(path.read_text(), YAMLLINT)]
        assert problems == []


def test_values_yaml_is_documented_key_by_key():
    """Every leaf key of values.yaml has a `## @param <path>` line, and every such line names a
    key that exists, so the documentation cannot drift from the values."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    documented = {
        line.split()[2]
        for line in (CHART_DIR / "values.yaml").read_text().splitlines()
        if line.strip().startswith("## @param ")
    }

    def paths(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}{key}"
            yield path
            # Maps the chart passes through (securityContext, probes, resources) are
            # documented as a whole.
            if isinstance(value, dict) and value and path not in documented:
                yield from paths(value, f"{path}.")

    existing = set(paths(values))
    # A leaf is a scalar, a list, an empty map, or a map documented as a whole.
    leaves = {path for path in existing if path in documented or not _is_open_map(_get(values, path))}
    assert sorted(leaves - documented) == []
    assert sorted(documented - existing) == []


def _get(values, dotted):
    for part in dotted.split("."):
        values = values[part]
    return values


def _is_open_map(value):
    return isinstance(value, dict) and bool(value)


def test_schema_file_is_valid_json_schema():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    # The defaults satisfy it.
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))


def test_defaults_render_without_values():
    assert render().kinds() == rendered("defaults").kinds()


def test_readme_values_table_lists_every_documented_key():
    readme = (CHART_DIR.parents[1] / "README.md").read_text()
    assert "\n## Kubernetes (Helm)\n" in readme
    # From its heading to the next section of the same level.
    section = readme.split("\n## Kubernetes (Helm)\n", 1)[1].split("\n## ", 1)[0]
    table = {line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")}
    documented = {
        line.split()[2]
        for line in (CHART_DIR / "values.yaml").read_text().splitlines()
        if line.strip().startswith("## @param ")
    }
    assert sorted(documented ^ table) == []
