"""Configuration: precedence (flag > ERP_* env > erp.yaml > shipped defaults),
provenance in ``erp config show``, errors that name the file, line, key and
valid choices, tenants.yaml validation and event schemas with per-tenant overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erp.cli.main import app
from erp.core.config import load_config, shipped
from erp.core.errors import ConfigError


def load(cwd: Path, env: dict | None = None, flags: dict | None = None, config: Path | None = None):
    return load_config(config, flags=flags, env=env or {}, cwd=cwd)


def config_error(cwd: Path, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load(cwd, **kw)
    return exc.value


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def shipped_line(key: str) -> int:
    """The line of a top-level or ``section.key`` in the shipped erp.yaml."""
    lines = shipped("config", "erp.yaml").read_text().splitlines()
    *section, name = key.split(".")
    start = 0
    if section:
        start = next(i for i, l in enumerate(lines) if l.startswith(section[0] + ":"))
    return next(i for i, l in enumerate(lines) if i > start and l.strip().startswith(name + ":")) + 1


# --- precedence and provenance -----------------------------------------------------------

def test_shipped_defaults_alone(tmp_path):
    cfg = load(tmp_path)
    assert cfg.project_file is None
    assert cfg.settings.lake == str(tmp_path / "lake")  # relative paths resolve against the working folder
    assert cfg.settings.ingest.max_line_bytes == 1024 * 1024
    assert cfg.sources["ingest.max_line_bytes"] == f"shipped defaults (erp/config/erp.yaml):{shipped_line('ingest.max_line_bytes')}"
    assert cfg.tenants == {}  # no tenants.yaml: any valid tenant id
    assert {e for _, e in cfg.schemas} == {"purchase", "conversion"}  # the shipped schemas


def test_precedence_flag_over_env_over_file_over_defaults(tmp_path):
    write(tmp_path / "erp.yaml", "# project\nlake: from-file\ningest:\n  workers: 3\n  commit_events: 1000\n"
                                 "  chunk_bytes: 2MiB\n")
    env = {"ERP_INGEST__WORKERS": "5", "ERP_INGEST__COMMIT_EVENTS": "2000", "ERP_LAKE": "from-env"}
    cfg = load(tmp_path, env=env, flags={"ingest.commit_events": 3000})
    s = cfg.settings
    assert (s.ingest.commit_events, cfg.sources["ingest.commit_events"]) == (3000, "command-line flag")
    assert (s.ingest.workers, cfg.sources["ingest.workers"]) == (5, "env ERP_INGEST__WORKERS")
    assert (s.lake, cfg.sources["lake"]) == (str(tmp_path / "from-env"), "env ERP_LAKE")
    assert (s.ingest.chunk_bytes, cfg.sources["ingest.chunk_bytes"]) == (2 * 1024**2, f"{tmp_path / 'erp.yaml'}:6")
    assert cfg.sources["ingest.max_line_bytes"].startswith("shipped defaults")
    # without the env, the file wins over the shipped default
    cfg = load(tmp_path)
    assert (cfg.settings.lake, cfg.sources["lake"]) == (str(tmp_path / "from-file"), f"{tmp_path / 'erp.yaml'}:2")
    assert (cfg.settings.ingest.workers, cfg.sources["ingest.workers"]) == (3, f"{tmp_path / 'erp.yaml'}:4")


def test_relative_paths_resolve_against_the_file_that_sets_them(tmp_path):
    project = write(tmp_path / "proj" / "erp.yaml", "lake: data/lake\ntenants_file: conf/tenants.yaml\n")
    write(tmp_path / "proj" / "conf" / "tenants.yaml", "tenants:\n  - tenant_id: acme\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    cfg = load(other, config=project)
    assert cfg.settings.lake == str(tmp_path / "proj" / "data" / "lake")
    assert list(cfg.tenants) == ["acme"]
    # a URL is left alone
    write(tmp_path / "proj" / "erp.yaml", "lake: s3://bucket/prefix\n")
    assert load(other, config=project).settings.lake == "s3://bucket/prefix"


def test_defaults_the_project_file_leaves_unset_sit_beside_it(tmp_path):
    # erp.yaml sets only the lake; tenants.yaml, schemas/ and reports/ are found next to it,
    # not in whatever directory cron happens to run in
    project = write(tmp_path / "proj" / "erp.yaml", "lake: lake\n")
    write(tmp_path / "proj" / "tenants.yaml", "tenants:\n  - tenant_id: acme\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    cfg = load(other, config=project)
    assert list(cfg.tenants) == ["acme"]
    assert cfg.settings.tenants_file == str(tmp_path / "proj" / "tenants.yaml")
    assert cfg.settings.reports_dir == str(tmp_path / "proj" / "reports")
    # without a project file they stay relative to the working directory
    assert load(other).settings.tenants_file == str(other / "tenants.yaml")


def test_erp_config_env_names_the_project_file(tmp_path):
    project = write(tmp_path / "conf" / "prod.yaml", "ingest:\n  workers: 1\n")
    cfg = load(tmp_path, env={"ERP_CONFIG": str(project)})
    assert cfg.project_file == project and cfg.settings.ingest.workers == 1


def test_env_values_are_parsed_as_text(tmp_path):
    cfg = load(tmp_path, env={"ERP_DEFAULTS__ANONYMIZE_IP": "false", "ERP_INGEST__CHUNK_BYTES": "4MiB",
                              "ERP_DEFAULTS__RETENTION_DAYS": "90", "ERP_STORAGE_OPTIONS": '{"anon": true}'})
    assert cfg.settings.defaults.anonymize_ip is False
    assert cfg.settings.ingest.chunk_bytes == 4 * 1024**2
    assert cfg.settings.defaults.retention_days == 90
    assert cfg.settings.storage_options == {"anon": True}


def test_config_show_prints_every_value_and_its_source(clean_env, monkeypatch):
    tmp = clean_env
    write(tmp / "erp.yaml", "lake: mylake\ningest:\n  workers: 3\n")
    write(tmp / "tenants.yaml", "tenants:\n  - tenant_id: acme\n    name: Acme\n    retention_days: 30\n")
    monkeypatch.setenv("ERP_INGEST__COMMIT_EVENTS", "1234")
    res = CliRunner().invoke(app, ["config", "show", "--json", "--lake", "flaglake"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    st = out["settings"]
    assert out["project_file"] == str(tmp / "erp.yaml")
    assert st["lake"] == {"value": str(tmp / "flaglake"), "source": "command-line flag"}
    assert st["ingest.commit_events"] == {"value": "1234", "source": "env ERP_INGEST__COMMIT_EVENTS"}
    assert st["ingest.workers"] == {"value": "3", "source": f"{tmp / 'erp.yaml'}:3"}
    assert st["ingest.max_line_bytes"]["source"] == \
        f"shipped defaults (erp/config/erp.yaml):{shipped_line('ingest.max_line_bytes')}"
    assert set(st) >= {"lake", "spool", "tenants_file", "schemas_dir", "storage_options", "defaults.timezone",
                       "ingest.chunk_bytes", "ingest.target_file_bytes"}
    assert [t["tenant_id"] for t in out["tenants"]] == ["acme"] and out["tenants"][0]["retention_days"] == 30
    # the human table says the same (a wide terminal, so no cell wraps)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERP_")}
    env.update(COLUMNS="400", ERP_INGEST__COMMIT_EVENTS="1234")
    proc = subprocess.run([sys.executable, "-m", "erp.cli.main", "config", "show"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in proc.stdout.splitlines() if line.count("│") >= 4}
    assert rows["ingest.workers"] == ["3", f"{tmp / 'erp.yaml'}:3"]
    assert rows["ingest.commit_events"] == ["1234", "env ERP_INGEST__COMMIT_EVENTS"]
    assert rows["lake"] == [str(tmp / "mylake"), f"{tmp / 'erp.yaml'}:1"]


def test_config_show_hides_secrets(clean_env):
    write(clean_env / "erp.yaml", "lake: s3://b/p\nstorage_options:\n  key: AKIAEXAMPLE\n  secret: hunter2\n"
                                  "  endpoint_url: http://127.0.0.1:9000\n")
    res = CliRunner().invoke(app, ["config", "show", "--json"])
    assert res.exit_code == 0, res.output
    assert "hunter2" not in res.stdout and "AKIAEXAMPLE" not in res.stdout
    assert "http://127.0.0.1:9000" in res.stdout


# --- errors: file, line, key, valid choices --------------------------------------------------

def test_unknown_key_names_file_line_and_valid_keys(tmp_path):
    write(tmp_path / "erp.yaml", "lake: l\ningest:\n  workers: 1\n  workres: 3\n")
    e = config_error(tmp_path)
    assert f"{tmp_path / 'erp.yaml'}:4" in e.message and "ingest.workres" in e.message
    assert "workers" in e.hint and "chunk_bytes" in e.hint
    write(tmp_path / "erp.yaml", "laek: l\n")
    e = config_error(tmp_path)
    assert f"{tmp_path / 'erp.yaml'}:1" in e.message and "'laek'" in e.message and "lake" in e.hint


@pytest.mark.parametrize("text, key, words", [
    ("ingest:\n  workers: many\n", "ingest.workers", ["whole number", "'many'"]),
    ("ingest:\n  workers: -1\n", "ingest.workers", ["out of range", "0 (one per core)"]),
    ("ingest:\n  commit_events: 0\n", "ingest.commit_events", ["out of range", "at least 1"]),
    ("ingest:\n  chunk_bytes: 0\n", "ingest.chunk_bytes", ["out of range"]),
    ("ingest:\n  chunk_bytes: 12 parsecs\n", "ingest.chunk_bytes", ["not a size", "512MiB"]),
    ("ingest:\n  skew_threshold_seconds: soon\n", "ingest.skew_threshold_seconds", ["a number"]),
    ("defaults:\n  timezone: Mars/Base\n", "defaults.timezone", ["unknown timezone", "Europe/Berlin"]),
    ("defaults:\n  plan_tier: gold\n", "defaults.plan_tier", ["gold", "free, pro, enterprise"]),
    ("defaults:\n  anonymize_ip: maybe\n", "defaults.anonymize_ip", ["true or false"]),
    ("defaults:\n  retention_days: -3\n", "defaults.retention_days", ["out of range", ">= 1"]),
    ("ingest: 5\n", "ingest", ["expected a mapping"]),
])
def test_bad_values_name_file_line_key_and_valid_choices(tmp_path, text, key, words):
    write(tmp_path / "erp.yaml", "lake: l\n" + text)
    e = config_error(tmp_path)
    assert str(tmp_path / "erp.yaml") in e.message and key in e.message
    if key != "ingest":
        assert "erp.yaml:3:" in e.message  # the line of the value
    shown = e.message + " " + (e.hint or "")
    for w in words:
        assert w in shown


def test_bad_env_value_names_the_variable(tmp_path):
    e = config_error(tmp_path, env={"ERP_INGEST__WORKERS": "abc"})
    assert "ERP_INGEST__WORKERS" in e.message and "whole number" in e.message and "'abc'" in e.message


def test_broken_yaml_names_the_line(tmp_path):
    write(tmp_path / "erp.yaml", "lake: l\ningest:\n  workers: [1\n")
    e = config_error(tmp_path)
    assert str(tmp_path / "erp.yaml") in e.message and "not valid YAML" in e.message and e.hint


def test_missing_explicit_config_file(tmp_path):
    e = config_error(tmp_path, config=tmp_path / "nope.yaml")
    assert "nope.yaml" in e.message and "not found" in e.message


def test_a_bad_config_exits_1_on_the_cli_with_the_message(clean_env):
    write(clean_env / "erp.yaml", "ingest:\n  commit_events: lots\n")
    res = CliRunner().invoke(app, ["config", "show"])
    assert res.exit_code == 1
    assert "erp.yaml:2" in res.stderr and "ingest.commit_events" in res.stderr
    res = CliRunner().invoke(app, ["config", "show", "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False and out["error"] == "ConfigError" and out["key"] == "ingest.commit_events"


# --- tenants.yaml -------------------------------------------------------------------------------

def test_tenants_yaml_loads_with_defaults(tmp_path):
    write(tmp_path / "erp.yaml", "defaults:\n  timezone: Europe/Berlin\n  retention_days: 400\n")
    write(tmp_path / "tenants.yaml", "tenants:\n  - tenant_id: acme\n    name: Acme\n    plan_tier: pro\n"
                                     "    storage_quota: 10GiB\n    anonymize_ip: false\n"
                                     "  - tenant_id: globex\n    timezone: UTC\n    retention_days: null\n")
    cfg = load(tmp_path)
    acme, globex = cfg.tenants["acme"], cfg.tenants["globex"]
    assert (acme.name, acme.plan_tier, acme.storage_quota, acme.anonymize_ip) == ("Acme", "pro", 10 * 1024**3, False)
    assert (acme.timezone, acme.retention_days) == ("Europe/Berlin", 400)  # from defaults
    assert (globex.timezone, globex.retention_days, globex.plan_tier) == ("UTC", None, "free")
    assert cfg.restrict_tenants
    # an unlisted tenant gets the defaults
    assert cfg.tenant("hooli").timezone == "Europe/Berlin"


def test_shipped_example_tenants_file_is_valid(tmp_path):
    cfg = load(tmp_path, flags={"tenants_file": str(shipped("config", "tenants.yaml"))})
    assert set(cfg.tenants) == {"acme", "globex", "initech"}
    assert cfg.tenants["acme"].key_matches("erp_demo_acme_key")
    assert not cfg.tenants["acme"].key_matches("erp_wrong")


@pytest.mark.parametrize("body, key, words", [
    ("  - tenant_id: acme\n    colour: red\n", "tenants[0].colour", ["unknown key", "retention_days"]),
    ("  - tenant_id: Acme\n", "tenants[0].tenant_id", ["invalid tenant_id", "^[a-z0-9]"]),
    ("  - tenant_id: '../x'\n", "tenants[0].tenant_id", ["invalid tenant_id"]),
    ("  - tenant_id: acme\n  - tenant_id: acme\n", "tenants[1].tenant_id", ["listed twice"]),
    ("  - tenant_id: acme\n    timezone: Nowhere/X\n", "tenants[0].timezone", ["unknown timezone"]),
    ("  - tenant_id: acme\n    retention_days: 0\n", "tenants[0].retention_days", [">= 1"]),
    ("  - tenant_id: acme\n    plan_tier: gold\n", "tenants[0].plan_tier", ["free, pro, enterprise"]),
    ("  - tenant_id: acme\n    storage_quota: lots\n", "tenants[0].storage_quota", ["not a size"]),
    ("  - tenant_id: acme\n    anonymize_ip: 'no'\n", "tenants[0].anonymize_ip", ["true or false"]),
    ("  - tenant_id: acme\n    api_keys:\n      - id: k\n        hash: erp_plaintext\n", "tenants[0].api_keys[0]",
     ["sha256:", "erp tenants key"]),
    ("  - just-a-name\n", "tenants[0]", ["expected a mapping"]),
])
def test_tenants_yaml_errors_name_file_line_and_key(tmp_path, body, key, words):
    write(tmp_path / "tenants.yaml", "tenants:\n" + body)
    e = config_error(tmp_path)
    assert str(tmp_path / "tenants.yaml") + ":" in e.message and key in e.message
    shown = e.message + " " + (e.hint or "")
    for w in words:
        assert w in shown


def test_tenants_yaml_unknown_key_points_at_its_line(tmp_path):
    write(tmp_path / "tenants.yaml", "tenants:\n  - tenant_id: acme\n    name: A\n    colour: red\n")
    assert "tenants.yaml:4:" in config_error(tmp_path).message


def test_tenants_yaml_must_hold_a_list_under_tenants(tmp_path):
    write(tmp_path / "tenants.yaml", "customers: []\n")
    e = config_error(tmp_path)
    assert "tenants" in e.message and "config/tenants.yaml" in e.hint
    write(tmp_path / "tenants.yaml", "")  # empty: no list
    assert load(tmp_path).tenants == {}


# --- event schemas ---------------------------------------------------------------------------

def test_schemas_with_per_tenant_overrides(tmp_path):
    write(tmp_path / "schemas" / "signup.json", json.dumps({"type": "object", "required": ["plan"]}))
    write(tmp_path / "schemas" / "tenants" / "globex" / "signup.json", json.dumps({"type": "object"}))
    write(tmp_path / "schemas" / "tenants" / "globex" / "refund.json", json.dumps({"required": ["amount"]}))
    cfg = load(tmp_path)
    assert set(cfg.schemas) == {(None, "signup"), ("globex", "signup"), ("globex", "refund")}
    assert cfg.schema_for("acme", "signup") == {"type": "object", "required": ["plan"]}
    assert cfg.schema_for("globex", "signup") == {"type": "object"}
    assert cfg.schema_for("acme", "refund") is None and cfg.schema_for("globex", "refund") is not None
    # a project schemas folder replaces the shipped ones
    assert cfg.schema_for("acme", "purchase") is None


@pytest.mark.parametrize("rel, text, words", [
    ("schemas/x.json", "{not json", ["not a readable JSON file"]),
    ("schemas/x.json", '{"type": 5}', ["not a valid JSON Schema"]),
    ("schemas/tenants/Bad/x.json", "{}", ["'Bad' is not a valid tenant id"]),
    ("schemas/tenants/..x/x.json", "{}", ["not a valid tenant id"]),
])
def test_bad_schema_files_name_the_file(tmp_path, rel, text, words):
    write(tmp_path / rel, text)
    e = config_error(tmp_path)
    assert str(tmp_path / Path(rel).parent) in e.message
    for w in words:
        assert w in e.message
