"""`kafka-influx-sink check-config`: effective configuration, errors naming the key, redaction.

These need no running service. Assertions are loose about wording except for the key names."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import CONFIG_FILE, REPO_ROOT, SCHEMA_FILE, env_list


def check_config(sink_bin: Path, config: Path = CONFIG_FILE, env: dict[str, str] | None = None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    full_env.update(env or {})
    p = subprocess.run([str(sink_bin), "check-config", "--config", str(config)], capture_output=True,
                       text=True, env=full_env, cwd=REPO_ROOT, timeout=30)
    return p.returncode, p.stdout, p.stderr


def describe(rc, out, err) -> str:
    return f"exit code {rc}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


@pytest.fixture
def config_copy(tmp_path):
    """config/local.toml copied to tmp_path with its relative schema path made absolute;
    edit(fn) rewrites the copy's text."""
    text = CONFIG_FILE.read_text()
    text, n = re.subn(r'(?m)^json_schema_file\s*=.*$', f'json_schema_file = "{SCHEMA_FILE}"', text)
    assert n == 1, "config/local.toml has no json_schema_file line to rewrite"
    path = tmp_path / "local.toml"
    path.write_text(text)

    def edit(fn) -> Path:
        path.write_text(fn(path.read_text()))
        return path

    return path, edit


def test_check_config_accepts_local_config(sink_bin):
    rc, out, err = check_config(sink_bin)
    assert rc == 0, describe(rc, out, err)
    both = out + err
    for needle in ("generator", "generatorID", "127.0.0.1:19092", "max_records"):
        assert needle in both, f"effective config lacks {needle!r}:\n{describe(rc, out, err)}"


def test_check_config_accepts_the_copy_too(sink_bin, config_copy):
    path, _ = config_copy
    rc, out, err = check_config(sink_bin, path)
    assert rc == 0, describe(rc, out, err)


def test_unknown_key_is_rejected_with_its_name(sink_bin, config_copy):
    path, edit = config_copy
    edit(lambda t: re.sub(r"(?m)^\[batch\]\s*$", "[batch]\nmax_recs = 5", t, count=1))
    assert "max_recs = 5" in path.read_text()
    rc, out, err = check_config(sink_bin, path)
    assert rc != 0, describe(rc, out, err)
    assert "batch.max_recs" in out + err, describe(rc, out, err)


@pytest.mark.parametrize("value", ["0", "abc", "-5"])
def test_bad_value_from_env_is_rejected_with_its_name(sink_bin, value):
    rc, out, err = check_config(sink_bin, env={"KIS_BATCH__MAX_RECORDS": value})
    assert rc != 0, describe(rc, out, err)
    assert "batch.max_records" in out + err, describe(rc, out, err)


def test_env_override_is_applied(sink_bin):
    rc, out, err = check_config(sink_bin, env={"KIS_BATCH__MAX_RECORDS": "1234",
                                               "KIS_KAFKA__TOPICS": env_list(["t-one", "t-two"]),
                                               "KIS_INFLUXDB__DATABASE": "db_from_env"})
    assert rc == 0, describe(rc, out, err)
    both = out + err
    for needle in ("1234", "t-one", "t-two", "db_from_env"):
        assert needle in both, f"override {needle!r} not in the effective config:\n{describe(rc, out, err)}"


def test_password_is_never_printed(sink_bin):
    secret = "s3cr3t-value"
    rc, out, err = check_config(sink_bin, env={"KIS_INFLUXDB__USERNAME": "e2e-user",
                                               "KIS_INFLUXDB__PASSWORD": secret})
    assert secret not in out and secret not in err, f"password printed:\n{describe(rc, out, err)}"
    assert rc == 0, describe(rc, out, err)


def test_password_is_not_printed_in_errors_either(sink_bin):
    secret = "s3cr3t-value"
    rc, out, err = check_config(sink_bin, env={"KIS_INFLUXDB__USERNAME": "e2e-user",
                                               "KIS_INFLUXDB__PASSWORD": secret,
                                               "KIS_BATCH__MAX_RECORDS": "0"})
    assert rc != 0, describe(rc, out, err)
    assert secret not in out and secret not in err, f"password printed:\n{describe(rc, out, err)}"
