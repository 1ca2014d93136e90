"""The rendered configuration passes the sink's own `check-config`, run the way the pod would
run it: the container's files and environment are rebuilt from the rendered Deployment (its
volume mounts, the ConfigMap and Secret items they project, its env), not from a list kept here,
so a wrong path or a missing mount fails the test. Credentials the chart stores are taken from
its rendered Secret; those from existing Secrets get stand-ins (a real throwaway certificate
where the sink parses one)."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import CHART_DIR, VALUES_FILES, render, rendered

# The values files' own credential values: none may reach a ConfigMap.
SECRET_VALUES = {
    "sasl-tls": ["apiv3_not-a-real-token-0123456789"],
    "mtls-inline-secrets": ["influx-v1-password-value", "registry-bearer-token-value"],
    "sasl-plain-inline": ["sasl-plain-password-value"],
}


@dataclass
class Pod:
    config: Path
    env: dict[str, str]
    # What the secret files hold: the sink reads them and must never print them.
    file_secrets: list[str]


def self_signed() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tests-helm stand-in")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


CERT_PEM, KEY_PEM = self_signed()


def secret_value(result, secret_name: str, key: str) -> str:
    """The chart's own Secret's value, else a stand-in shaped like what the key holds."""
    for secret in result.of_kind("Secret"):
        if secret["metadata"]["name"] == secret_name:
            assert key in secret["data"], f"Secret {secret_name} has no key {key}"
            return base64.b64decode(secret["data"][key]).decode()
    if key.endswith((".crt", ".pem")):
        return CERT_PEM
    if key.endswith(".key"):
        return KEY_PEM
    return f"user:stand-in-{secret_name}-{key}" if "user-info" in key else f"stand-in-{secret_name}-{key}"


def materialise(result, root: Path) -> Pod:
    spec = result.pod_spec()
    container = result.container()
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    file_secrets: list[str] = []
    mounts: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        local = root / mount["name"]
        local.mkdir()
        mounts[mount["mountPath"]] = local
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            config_map = result.named("ConfigMap", volume["configMap"]["name"])
            for name, text in config_map["data"].items():
                (local / name).write_text(text)
        elif "projected" in volume:
            for source in volume["projected"]["sources"]:
                secret = source["secret"]
                for item in secret["items"]:
                    path = local / item["path"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    value = secret_value(result, secret["name"], item["key"])
                    path.write_text(value + "\n")
                    file_secrets.append(value.strip())
        else:
            pytest.fail(f"volume {mount['name']}: kind not handled by this test: {volume}")

    def local(container_path: str) -> str:
        for mount_path, folder in sorted(mounts.items(), key=lambda item: -len(item[0])):
            if container_path.startswith(mount_path + "/"):
                return str(folder / container_path[len(mount_path) + 1 :])
        raise AssertionError(f"{container_path} is on no volume mount")

    args = container["args"]
    assert args[0] == "run"
    config = Path(local(args[args.index("--config") + 1]))
    # Point the container paths the config names at the rebuilt files.
    text = config.read_text()
    for mount_path in sorted(mounts, key=len, reverse=True):
        text = text.replace(f'"{mount_path}/', f'"{mounts[mount_path]}/')
    config.write_text(text)

    env = {}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secret_value(result, ref["name"], ref["key"])
    return Pod(config=config, env=env, file_secrets=file_secrets)


def check_config(sink_bin: Path, pod: Pod) -> subprocess.CompletedProcess:
    # The runner's own KIS_…__… variables must not leak into the check.
    base = {name: value for name, value in os.environ.items() if not (name.startswith("KIS_") and "__" in name)}
    return subprocess.run(
        [str(sink_bin), "check-config", "--config", str(pod.config)],
        env={**base, **pod.env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", VALUES_FILES)
def test_rendered_config_passes_check_config(name, sink_bin, tmp_path):
    result = rendered(name)
    pod = materialise(result, tmp_path)
    checked = check_config(sink_bin, pod)
    assert checked.returncode == 0, checked.stderr
    effective = tomllib.loads(checked.stdout)
    # The sink listens where the probes, the Service and the ServiceMonitor look.
    port = {p["name"]: p["containerPort"] for p in result.container()["ports"]}["metrics"]
    assert effective["metrics"] == {"enabled": True, "listen": f"0.0.0.0:{port}"}
    # The kubelet waits longer than the sink's own shutdown bound.
    assert result.pod_spec()["terminationGracePeriodSeconds"] * 1000 > effective["shutdown"]["timeout_ms"]
    # Credentials read from files are redacted in the output.
    for value in pod.file_secrets:
        assert value not in checked.stdout
    if "token_file" in effective["influxdb"]:
        assert effective["influxdb"]["token"] == "<redacted>"


def test_check_config_rejects_what_the_chart_must_not_produce(sink_bin, tmp_path):
    # The harness can fail: a config the sink refuses exits 2.
    pod = materialise(rendered("defaults"), tmp_path)
    pod.config.write_text(pod.config.read_text().replace("[batch]", "[batch]\nmax_recods = 1"))
    checked = check_config(sink_bin, pod)
    assert checked.returncode == 2
    assert "max_recods" in checked.stderr


def test_kafka_security_reaches_librdkafka():
    text = rendered("sasl-tls").named("ConfigMap", "kafka-influx-sink-config")["data"]["config.toml"]
    properties = tomllib.loads(text)["kafka"]["properties"]
    assert properties == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "kafka-influx-sink",
        "ssl.ca.location": "/var/run/secrets/kafka-influx-sink/kafka/ca.crt",
        "session.timeout.ms": 30000,
    }
    env = {variable["name"]: variable for variable in rendered("sasl-tls").container()["env"]}
    assert env["KIS_KAFKA__PROPERTIES__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "kafka-influx-sink", "key": "password"}
    mtls = tomllib.loads(rendered("mtls-inline-secrets").named("ConfigMap", "kafka-influx-sink-config")["data"]["config.toml"])
    assert mtls["kafka"]["properties"] == {
        "security.protocol": "SSL",
        "ssl.ca.location": "/var/run/secrets/kafka-influx-sink/kafka/ca.crt",
        "ssl.certificate.location": "/var/run/secrets/kafka-influx-sink/kafka/user.crt",
        "ssl.key.location": "/var/run/secrets/kafka-influx-sink/kafka/user.key",
    }


@pytest.mark.parametrize("name", sorted(SECRET_VALUES))
def test_no_secret_value_in_any_config_map(name):
    result = rendered(name)
    config_maps = json.dumps([doc for doc in result.docs if doc["kind"] == "ConfigMap"])
    secrets = [base64.b64decode(value).decode() for doc in result.of_kind("Secret") for value in doc["data"].values()]
    for value in SECRET_VALUES[name]:
        assert value not in config_maps
        assert value in secrets, f"{value} should be stored in the chart's Secret"
        # Nor anywhere else in plain text (env values, annotations, the TriggerAuthentication).
        plain = json.dumps([doc for doc in result.docs if doc["kind"] != "Secret"])
        assert value not in plain


def test_check_config_output_redacts_the_sasl_password(sink_bin, tmp_path):
    pod = materialise(rendered("sasl-plain-inline"), tmp_path)
    checked = check_config(sink_bin, pod)
    assert checked.returncode == 0, checked.stderr
    assert "sasl-plain-password-value" not in checked.stdout


def test_schema_covers_every_key_the_sink_prints(sink_bin, tmp_path):
    """values.schema.json closes each `config` section; a key the sink knows (check-config
    prints every key it has a value for) but the schema lacks would be refused at install."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())["properties"]["config"]["properties"]
    chart_owned = {
        "influxdb": {"token", "token_file", "password", "password_file", "ca_file"},
        "schema_registry": {"basic_auth_user_info", "basic_auth_user_info_file", "bearer_token", "bearer_token_file", "ca_file"},
    }
    missing = []
    for name in VALUES_FILES:
        folder = tmp_path / name
        folder.mkdir()
        checked = check_config(sink_bin, materialise(rendered(name), folder))
        assert checked.returncode == 0, checked.stderr
        for section, table in tomllib.loads(checked.stdout).items():
            if section == "metrics":
                continue
            assert section in schema, section
            for key, value in table.items():
                if key in chart_owned.get(section, set()):
                    continue
                if key not in schema[section]["properties"]:
                    missing.append(f"{section}.{key}")
                elif isinstance(value, dict) and key != "properties":
                    nested = schema[section]["properties"][key]["properties"]
                    missing += [f"{section}.{key}.{inner}" for inner in value if inner not in nested]
    assert sorted(set(missing)) == []


def test_chart_keys_the_schema_refuses_in_config():
    for bad in [
        {"config": {"influxdb": {"token": "x"}}},
        {"config": {"influxdb": {"token_file": "/x"}}},
        {"config": {"schema_registry": {"bearer_token": "x"}}},
        {"config": {"metrics": {"listen": "0.0.0.0:1"}}},
        {"config": {"kafka": {"properties": {"sasl.password": "x"}}}},
        {"config": {"kafka": {"properties": {"security.protocol": "SSL"}}}},
        {"config": {"influxdb": {"ca_file": "/x"}}},
        {"config": {"kafka": {"sasl_password": "x"}}},
        {"config": {"kafka": {"security_protocol": "SSL"}}},
    ]:
        with pytest.raises(Exception) as refused:
            render(bad)
        assert "schema" in str(refused.value), (bad, refused.value)
