"""The PrometheusRule carries the rules of config/prometheus/kafka-influx-sink.rules.yml: with
default values it is that file, so the file's own promtool unit tests pass against the rendered
rules; with other values the thresholds and durations follow them, and promtool accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, render, rendered

RULES_FILE = REPO / "config" / "prometheus" / "kafka-influx-sink.rules.yml"
RULE_TESTS = REPO / "tests" / "prometheus" / "rules.test.yml"

RULE_ON = {"metrics": {"prometheusRule": {"enabled": True}}}


def write_rules(rule: dict, folder: Path) -> Path:
    path = folder / "rendered.rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def rule_by_name(rule: dict, name: str) -> dict:
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            if item.get("alert") == name or item.get("record") == name:
                return item
    raise AssertionError(f"no rule {name}")


def test_default_rule_is_the_rules_file():
    rule = render(RULE_ON).one("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


def test_rules_file_unit_tests_pass_against_the_rendered_rule(promtool, tmp_path):
    rules = write_rules(render(RULE_ON).one("PrometheusRule"), tmp_path)
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [rules.name]
    test_file = tmp_path / "rules.test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", test_file.name], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.parametrize("values", ["monitoring", "defaults-with-rule"])
def test_promtool_check_rules(promtool, tmp_path, values):
    rule = render(RULE_ON).one("PrometheusRule") if values == "defaults-with-rule" else rendered(values).one("PrometheusRule")
    rules = write_rules(rule, tmp_path)
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 14 rules found" in result.stdout


def test_thresholds_and_durations_come_from_values():
    rule = rendered("monitoring").one("PrometheusRule")
    low = rule_by_name(rule, "GeneratorFuelLow")
    assert low["for"] == "10m"
    assert low["annotations"]["description"].endswith("for more than 10 minutes.")
    running_out = rule_by_name(rule, "GeneratorFuelRunningOut")
    assert "6 * 3600" in running_out["expr"]
    assert running_out["annotations"]["summary"].endswith("within 6 hours")
    assert "> 1800" in rule_by_name(rule, "GeneratorSilent")["expr"]
    down = rule_by_name(rule, "KafkaInfluxSinkDown")
    assert down["for"] == "3m"
    assert down["annotations"]["description"].endswith("for 3 minutes.")
    assert "kis_consumer_lag > 50000" in rule_by_name(rule, "KafkaInfluxSinkConsumerLagGrowing")["expr"]
    assert rule_by_name(rule, "KafkaInfluxSinkWritesFailing")["expr"].rstrip().endswith("> 0.2")
    # Extra labels reach every alert, without displacing its severity.
    alerts = [item for group in rule["spec"]["groups"] for item in group["rules"] if "alert" in item]
    assert len(alerts) == 11
    assert all(item["labels"]["team"] == "fleet" and item["labels"]["severity"] for item in alerts)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_job_defaults_to_the_service_a_servicemonitor_scrapes():
    # A ServiceMonitor without jobLabel names the job after the Service.
    result = render({"metrics": {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}}, release="fleet")
    service = result.one("Service")["metadata"]["name"]
    assert service == "fleet-kafka-influx-sink"
    assert "jobLabel" not in result.one("ServiceMonitor")["spec"]
    rule = result.one("PrometheusRule")
    assert rule_by_name(rule, "KafkaInfluxSinkDown")["expr"] == f'up{{job="{service}"}} == 0'
    assert rule_by_name(rule, "KafkaInfluxSinkTargetMissing")["expr"] == f'absent(up{{job="{service}"}})'


def test_groups_can_be_switched_off():
    fuel_only = render({"metrics": {"prometheusRule": {"enabled": True, "health": {"enabled": False}}}})
    assert [group["name"] for group in fuel_only.one("PrometheusRule")["spec"]["groups"]] == ["kafka-influx-sink-fuel"]


def test_monitoring_resources_follow_values_only():
    # Offline rendering cannot see the cluster's CRDs: values alone decide.
    assert not {"ServiceMonitor", "PrometheusRule"} & rendered("defaults").kinds()
    assert {"ServiceMonitor", "PrometheusRule"} <= rendered("monitoring").kinds()
