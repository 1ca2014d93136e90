"""`kafka-influx-sink simulate --format ...`: what the simulator writes, read back by others.

For each wire format (json, json-sr, avro-sr, avro) the simulator produces records, about 10 %
of them invalid on purpose, to a fresh topic on the local Tansu. The -sr formats register their
schema with the Schema Registry stand-in (tests/e2e/schema_registry_standin.py, in-process, with
basic auth). Then:

  1. Every record is read back and decoded by the real confluent-kafka client: `JSONDeserializer`
     and `AvroDeserializer` backed by a `SchemaRegistryClient` for the -sr formats, fastavro with
     schemas/generator.avsc for raw Avro, and strict JSON plus generator.schema.json for json.
     The records that decode to a full reading with a non-empty generatorID and finite numbers
     number exactly the simulator's `valid`; all others, its `invalid`. Keys are uuid4 strings.
  2. The registry holds the schema under `<topic>-value` (schemaType JSON for json-sr, omitted
     for Avro, as Confluent's serializers register them), and the simulator logged in.
  3. The sink reads the topic: InfluxDB holds `valid` points, the dead-letter topic `invalid`
     records, and the committed offsets equal the end offsets.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import uuid

import fastavro
import jsonschema
import pytest
import requests
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import (
    CONFIG_FILE,
    KAFKA_BROKERS,
    REPO_ROOT,
    create_topic,
    end_offsets,
    env_list,
    read_topic,
    sink_overrides,
    unique,
    wait_for_commits,
)
from schema_registry_standin import SchemaRegistryStandIn

AVSC_FILE = REPO_ROOT / "schemas" / "generator.avsc"
JSON_SCHEMA_FILE = REPO_ROOT / "schemas" / "generator.schema.json"
FIELDS = {"generatorID", "lat", "lon", "temperature", "pressure", "fuel"}
# A password with a colon: the user:password split must happen at the first one.
REGISTRY_USER, REGISTRY_PASSWORD = "sim-user", "pa:ss"
RECORDS = 400
INVALID_RATIO = 0.1


@pytest.fixture(scope="module")
def registry():
    with SchemaRegistryStandIn(basic_auth=f"{REGISTRY_USER}:{REGISTRY_PASSWORD}") as standin:
        yield standin


def simulate(sink_bin, topic: str, fmt: str, registry_url: str | None) -> dict:
    """Runs the simulator to completion; returns its summary."""
    args = [str(sink_bin), "simulate", "--config", str(CONFIG_FILE), "--topic", topic,
            "--format", fmt, "--count", str(RECORDS), "--rate", "0",
            "--invalid-ratio", str(INVALID_RATIO), "--seed", "7"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    env["KIS_KAFKA__BROKERS"] = env_list([KAFKA_BROKERS])
    env["KIS_LOG__LEVEL"] = "warn"
    if registry_url is not None:
        args += ["--registry-url", registry_url]
        # From the environment, as a deployment would pass a secret.
        env["KIS_REGISTRY_BASIC_AUTH"] = f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"
    p = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert p.returncode == 0, f"simulate exited {p.returncode}\n--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}"
    assert REGISTRY_PASSWORD not in p.stdout + p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 0 and summary["valid"] + summary["invalid"] == RECORDS, summary
    return summary


def strict_json(data: bytes):
    """RFC 8259 JSON: Python's json would otherwise accept NaN and Infinity."""
    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    return json.loads(data, parse_constant=refuse)


def decoder(fmt: str, topic: str, registry: SchemaRegistryStandIn):
    """The consumer side of `fmt`: bytes -> dict, raising on anything it cannot read."""
    ctx = SerializationContext(topic, MessageField.VALUE)
    if fmt in ("json-sr", "avro-sr"):
        client = SchemaRegistryClient({"url": registry.url,
                                       "basic.auth.user.info": f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"})
        if fmt == "json-sr":
            deserializer = JSONDeserializer(None, schema_registry_client=client)
        else:
            deserializer = AvroDeserializer(client)
        return lambda data: deserializer(data, ctx)
    if fmt == "avro":
        schema = fastavro.parse_schema(json.loads(AVSC_FILE.read_text()))

        def read_avro(data: bytes):
            buf = io.BytesIO(data)
            record = fastavro.schemaless_reader(buf, schema)
            assert not buf.read(), "bytes left after the record"
            return record
        return read_avro
    schema = json.loads(JSON_SCHEMA_FILE.read_text())

    def read_json(data: bytes):
        record = strict_json(data)
        jsonschema.validate(record, schema)
        return record
    return read_json


def is_valid_reading(record) -> bool:
    """What the sink will write: every field, a non-empty id, finite numbers (Confluent's Python
    JSONDeserializer lets NaN through; JSON and the sink do not)."""
    return (isinstance(record, dict) and set(record) == FIELDS and record["generatorID"] != ""
            and all(isinstance(record[f], (int, float)) and math.isfinite(record[f]) for f in FIELDS - {"generatorID"}))


@pytest.mark.parametrize("fmt", ["json", "json-sr", "avro-sr", "avro"])
def test_simulated_records_read_back_in_every_format(fmt, kafka, influx, influx_db, make_sink, sink_bin,
                                                     registry):
    topic = unique(f"sim-{fmt}")
    dlq = f"{topic}.dlq"
    create_topic(kafka, topic, 3)
    create_topic(kafka, dlq, 1)
    uses_registry = fmt.endswith("-sr")
    registry.clear_requests()

    summary = simulate(sink_bin, topic, fmt, registry.url if uses_registry else None)
    assert summary["invalid"] > 0, summary

    # 1. The real client reads exactly the valid records.
    decode = decoder(fmt, topic, registry)
    records = read_topic(kafka, topic)
    assert len(records) == RECORDS
    valid, invalid = 0, []
    for r in records:
        uuid.UUID(r["key"].decode())  # uuid4 keys, as the source scenario's producer
        try:
            record = decode(r["value"])
        except Exception as exc:  # noqa: BLE001  (any refusal is what an invalid record earns)
            invalid.append(f"{type(exc).__name__}: {exc}")
            continue
        if is_valid_reading(record):
            valid += 1
        else:
            invalid.append(f"decoded but not a valid reading: {record}")
    assert (valid, len(invalid)) == (summary["valid"], summary["invalid"]), (
        f"summary {summary}; decoded {valid} valid; invalid ones: {invalid[:10]}")

    # 2. What the registry saw.
    if uses_registry:
        registered = registry.requests(method="POST", path=f"/subjects/{topic}-value/versions")
        assert len(registered) == 1 and registered[0]["status"] == 200, registered
        assert all(r["authorization"] == "basic" for r in registry.requests())
        r = requests.get(f"{registry.url}/subjects/{topic}-value/versions/latest",
                         auth=(REGISTRY_USER, REGISTRY_PASSWORD), timeout=10)
        assert r.status_code == 200, r.text
        latest = r.json()
        # Confluent leaves schemaType out for Avro, the registry's default.
        assert latest.get("schemaType") == ("JSON" if fmt == "json-sr" else None), latest
        source = JSON_SCHEMA_FILE if fmt == "json-sr" else AVSC_FILE
        assert json.loads(latest["schema"]) == json.loads(source.read_text())
    else:
        assert registry.requests() == []

    # 3. The sink writes the valid ones and dead-letters the rest.
    database = influx_db("sim")
    group = unique("sim-group")
    extra = {"KIS_SCHEMA__AVRO_SCHEMA_FILE": str(AVSC_FILE)}
    if fmt == "avro":
        extra["KIS_SCHEMA__FORMAT"] = "avro"
    if uses_registry:
        extra["KIS_SCHEMA_REGISTRY__URL"] = registry.url
        extra["KIS_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO"] = f"{REGISTRY_USER}:{REGISTRY_PASSWORD}"
    sink = make_sink(sink_overrides(topic=topic, group=group, database=database, dlq=dlq, extra=extra),
                     name=f"sim-{fmt}")
    with sink:
        wait_for_commits(kafka, group, topic, end_offsets(kafka, topic), sink)
    assert influx.count(database) == summary["valid"]
    assert len(read_topic(kafka, dlq)) == summary["invalid"]
