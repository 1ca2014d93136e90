"""What the chart promises beyond valid manifests: restricted security defaults, probes on the
sink's endpoints, configuration changes that roll the pods, scaling that never runs both
autoscalers and never passes the partition count, and values that are refused at render time
with a message naming the fix."""

from __future__ import annotations

import base64

import pytest

from conftest import RENDER_REFUSED, VALUES_FILES, load_values, merged, render, rendered

POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}


@pytest.mark.parametrize("name", VALUES_FILES)
def test_restricted_security_context_by_default(name):
    result = rendered(name)
    assert result.pod_spec()["securityContext"] == POD_SECURITY
    assert result.container()["securityContext"] == CONTAINER_SECURITY
    assert result.pod_spec()["automountServiceAccountToken"] is False
    assert result.one("ServiceAccount")["automountServiceAccountToken"] is False
    assert result.pod_spec()["serviceAccountName"] == result.one("ServiceAccount")["metadata"]["name"]


def test_probes_on_the_sink_endpoints():
    container = rendered("defaults").container()
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert container["args"] == ["run", "--config", "/etc/kafka-influx-sink/config.toml"]
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}


def test_service_scrapes_unready_pods_and_matches_the_monitor():
    result = rendered("monitoring")
    service = result.one("Service")
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = result.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = result.one("ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def checksum(values: dict) -> str:
    return render(values).one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_checksum_changes_with_the_config_only():
    base = checksum({})
    assert checksum({"config": {"batch": {"max_records": 1000}}}) != base
    assert checksum({"schemaFiles": {"extra.avsc": '{"type": "string"}'}}) != base
    # Settings outside the ConfigMap leave it alone.
    assert checksum({"replicaCount": 1, "resources": {"requests": {"cpu": "1"}}}) == base


def test_chart_secret_change_rolls_the_pods():
    def annotations(token):
        values = {"influxdb": {"token": {"existingSecret": "", "value": token}}}
        return render(values).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    first, second = annotations("token-one"), annotations("token-two")
    assert first["checksum/config"] == second["checksum/config"]
    assert first["checksum/secret"] != second["checksum/secret"]
    assert "checksum/secret" not in rendered("defaults").one("Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_keda_replaces_the_hpa():
    result = rendered("keda")
    assert "HorizontalPodAutoscaler" not in result.kinds()
    assert "replicas" not in result.one("Deployment")["spec"]
    scaled = result.one("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == result.one("Deployment")["metadata"]["name"]
    assert scaled["spec"]["maxReplicaCount"] == 12  # kafka.partitions
    triggers = scaled["spec"]["triggers"]
    assert [trigger["metadata"]["topic"] for trigger in triggers] == ["emergency_generator", "backup_generator"]
    for trigger in triggers:
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["bootstrapServers"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
        assert trigger["metadata"]["consumerGroup"] == "kafka-influx-sink"
        assert trigger["metadata"]["lagThreshold"] == "2000"
        assert trigger["metadata"]["allowIdleConsumers"] == "false"
        assert "authenticationRef" not in trigger
    assert "TriggerAuthentication" not in result.kinds()


def test_hpa_on_cpu_capped_at_partitions():
    result = rendered("hpa")
    assert not {"ScaledObject", "TriggerAuthentication"} & result.kinds()
    hpa = result.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert "replicas" not in result.one("Deployment")["spec"]


def test_both_autoscalers_are_refused():
    values = merged(load_values("keda"), {"autoscaling": {"hpa": {"enabled": True}}})
    with pytest.raises(RENDER_REFUSED, match="autoscaling"):
        render(values)


def test_trigger_authentication_for_sasl_and_tls():
    result = rendered("sasl-tls")
    auth = result.one("TriggerAuthentication")
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    credentials = "kafka-influx-sink-credentials"
    assert refs == {
        "tls": (credentials, "keda-tls"),
        "sasl": (credentials, "keda-sasl"),
        "username": (credentials, "keda-username"),
        "password": ("kafka-influx-sink", "password"),  # the Strimzi KafkaUser's Secret
        "ca": ("fleet-cluster-ca-cert", "ca.crt"),
    }
    secret = result.named("Secret", credentials)["data"]
    decoded = {key: base64.b64decode(value).decode() for key, value in secret.items()}
    assert decoded["keda-sasl"] == "scram_sha512"
    assert decoded["keda-tls"] == "enable"
    assert decoded["keda-username"] == "kafka-influx-sink"
    assert result.one("ScaledObject")["spec"]["triggers"][0]["authenticationRef"] == {"name": auth["metadata"]["name"]}


def test_mutual_tls_mounts_the_client_certificate():
    result = rendered("mtls-inline-secrets")
    sources = result.pod_spec()["volumes"][1]["projected"]["sources"]
    client = [source["secret"] for source in sources if source["secret"]["name"] == "kafka-influx-sink-user"]
    assert client == [{"name": "kafka-influx-sink-user", "items": [
        {"key": "user.crt", "path": "kafka/user.crt"}, {"key": "user.key", "path": "kafka/user.key"}]}]
    assert result.pod_spec()["volumes"][1]["projected"]["defaultMode"] == 0o440
    assert result.one("PodDisruptionBudget")["spec"] == {
        "minAvailable": 2, "selector": result.one("PodDisruptionBudget")["spec"]["selector"]}
    spread = result.pod_spec()["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"] == result.one("Deployment")["spec"]["selector"]["matchLabels"]


def test_pdb_allows_draining_a_single_replica():
    assert rendered("defaults").one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_replicas_capped_at_partitions():
    assert render({"kafka": {"partitions": 8}, "autoscaling": {"keda": {"enabled": True}}}).one("ScaledObject")["spec"]["maxReplicaCount"] == 8
    explicit = {"kafka": {"partitions": 8}, "autoscaling": {"maxReplicas": 5, "keda": {"enabled": True}}}
    assert render(explicit).one("ScaledObject")["spec"]["maxReplicaCount"] == 5
    assert render({"kafka": {"partitions": 3}, "replicaCount": 3}).one("Deployment")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    "values, message",
    [
        ({"kafka": {"partitions": 4}, "autoscaling": {"maxReplicas": 5, "keda": {"enabled": True}}}, "exceeds kafka.partitions"),
        ({"kafka": {"partitions": 4}, "autoscaling": {"maxReplicas": 5, "hpa": {"enabled": True}}}, "exceeds kafka.partitions"),
        ({"kafka": {"partitions": 2}, "replicaCount": 3}, "exceeds kafka.partitions"),
        ({"autoscaling": {"keda": {"enabled": True}}}, "needs kafka.partitions"),
        ({"kafka": {"partitions": 4}, "autoscaling": {"minReplicas": 0, "hpa": {"enabled": True}}}, "only KEDA scales to zero"),
        ({"kafka": {"partitions": 4}, "resources": {"requests": {"cpu": None}}, "autoscaling": {"hpa": {"enabled": True}}}, "resources.requests.cpu"),
        ({"terminationGracePeriodSeconds": 20}, "must be longer than config.shutdown.timeout_ms"),
        ({"config": {"shutdown": {"timeout_ms": 30000}}}, "must be longer than config.shutdown.timeout_ms"),
        ({"influxdb": {"token": {"existingSecret": ""}}}, "needs a token"),
        ({"kafka": {"authentication": {"type": "scram-sha-512", "passwordSecret": {"secretName": "u"}}}}, "needs kafka.authentication.username"),
        ({"kafka": {"authentication": {"type": "scram-sha-512", "username": "u"}}}, "passwordSecret"),
        ({"kafka": {"authentication": {"type": "tls"}}}, "certificateAndKey"),
        ({"schemaRegistry": {"basicAuth": {"value": "u:p"}}}, "config.schema_registry.url"),
        ({"influxdb": {"password": {"value": "p"}}}, "config.influxdb.username"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"replicas": 2}, "replicas"),
        ({"config": {"batch": {"max_records": 0}}}, "max_records"),
        ({"config": {"influxdb": {"api": "v4"}}}, "api"),
        ({"config": {"dead_letter": {"policy": "drop"}}}, "policy"),
        ({"kafka": {"authentication": {"type": "gssapi"}}}, "type"),
        ({"metrics": {"prometheusRule": {"fuel": {"lowFor": "five minutes"}}}}, "lowFor"),
        ({"image": {"digest": "latest"}}, "digest"),
    ],
)
def test_bad_values_are_refused(values, message):
    with pytest.raises(RENDER_REFUSED) as refused:
        render(values)
    assert message in str(refused.value)


def test_grace_period_may_be_raised_with_the_timeout():
    result = render({"config": {"shutdown": {"timeout_ms": 45000}}, "terminationGracePeriodSeconds": 60})
    assert result.pod_spec()["terminationGracePeriodSeconds"] == 60


def test_image_reference():
    assert rendered("defaults").container()["image"] == "kafka-influx-sink:0.1.0"
    digest = "sha256:" + "a" * 64
    assert render({"image": {"repository": "registry.example/kis", "tag": "1.2.3", "digest": digest}}).container()["image"] == f"registry.example/kis@{digest}"


def test_labels_follow_the_recommended_set():
    labels = rendered("defaults").one("Deployment")["metadata"]["labels"]
    for key in ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by", "app.kubernetes.io/component", "helm.sh/chart"]:
        assert key in labels
    selector = rendered("defaults").one("Deployment")["spec"]["selector"]["matchLabels"]
    # The selector never holds labels that change between releases (version, chart).
    assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


def test_notes_tell_how_to_check_health_and_find_metrics():
    notes = rendered("defaults").notes
    for expected in ["rollout status deployment/kafka-influx-sink", "/readyz", "/status", "/metrics", "port-forward",
                     "create secret generic influxdb-auth"]:
        assert expected in notes
    assert "kubectl -n sinks get scaledobject/kafka-influx-sink" in rendered("keda").notes
    assert "ServiceMonitor kafka-influx-sink" in rendered("monitoring").notes


def test_comma_separated_brokers_and_topics_reach_keda():
    triggers = rendered("influxdb2-schema-file").one("ScaledObject")["spec"]["triggers"]
    assert [trigger["metadata"]["topic"] for trigger in triggers] == ["generators-north", "generators-south"]
    assert {trigger["metadata"]["bootstrapServers"] for trigger in triggers} == {"kafka-a:9092,kafka-b:9092"}


def test_schema_files_sit_next_to_the_config():
    config_map = rendered("influxdb2-schema-file").named("ConfigMap", "kafka-influx-sink-config")
    assert set(config_map["data"]) == {"config.toml", "generator.schema.json"}
    assert 'json_schema_file = "generator.schema.json"' in config_map["data"]["config.toml"]
    assert 'tags = ["generatorID", { name = "site", path = "/meta/site" }, { from = "topic", name = "topic" }]' in config_map["data"]["config.toml"]
