"""`erp report`, `erp reports validate/list` and `erp rollup` through the CLI runner:
exit codes, JSON output, error messages, and the shipped example definitions on the
bundled sample data."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erp.cli.main import app
from erp.core.config import shipped
from tests.conftest import write_ndjson
from tests.report_data import FIXED

REPORT = """\
id: kpis
title: KPIs
tenants: [acme]
range: {since: 2026-11-01, until: 2026-11-02}
widgets:
  - {id: events, type: metric, title: Events}
  - {id: users, type: metric, title: Users, measure: users}
  - {id: daily, type: time_series, title: Daily, interval: day}
  - {id: types, type: table, title: Types, by: event_type, limit: 2}
"""


def records():
    out = []
    for i, r in enumerate(FIXED):
        rec = {"event_id": f"fx-{i}", "tenant_id": "acme", "event_type": r["event_type"],
               "timestamp": r["timestamp"]}
        for k in ("user_id", "anonymous_id", "session_id"):
            if r.get(k):
                rec[k] = r[k]
        props = dict(r.get("properties") or {})
        if r.get("page_path"):
            props["page_url"] = "https://x.example" + r["page_path"]
        if props:
            rec["properties"] = props
        out.append(rec)
    return out


@pytest.fixture
def project(clean_env: Path) -> Path:
    (clean_env / "erp.yaml").write_text("lake: lake\nreports_dir: reports\ningest:\n  workers: 1\n"
                                        "defaults:\n  retention_days: null\n")
    (clean_env / "tenants.yaml").write_text(
        "tenants:\n  - {tenant_id: acme, name: Acme, timezone: America/New_York}\n"
        "  - {tenant_id: globex, name: Globex, timezone: UTC}\n")
    (clean_env / "reports").mkdir()
    (clean_env / "reports" / "kpis.yaml").write_text(REPORT)
    src = write_ndjson(clean_env / "fixed.ndjson", records())
    res = CliRunner().invoke(app, ["ingest", str(src), "--json"])
    assert res.exit_code == 0, res.output
    return clean_env


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_report_json_matches_hand_computed_values(project):
    res = run("report", "kpis", "--tenant", "acme", "--json", "--now", "2026-11-10T00:00:00Z")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert list(data) == ["report_id", "report_name", "tenant_id", "range", "widgets"]
    assert data["range"] == {"since": "2026-11-01", "until": "2026-11-02", "timezone": "America/New_York",
                             "start_utc": "2026-11-01T04:00:00Z", "end_utc": "2026-11-03T05:00:00Z",
                             "complete": True}
    w = {x["widget_id"]: x for x in data["widgets"]}
    assert [x["widget_id"] for x in data["widgets"]] == ["events", "users", "daily", "types"]
    assert (w["events"]["data"]["value"], w["events"]["data"]["previous"]) == (6, 2)
    assert (w["users"]["data"]["value"], w["users"]["data"]["previous"]) == (3, 2)
    assert w["daily"]["data"]["series"][0]["values"] == [4, 2]
    assert [r["keys"] for r in w["types"]["data"]["rows"]] == [["page_view"], ["purchase"]]
    assert w["types"]["type"] == "table" and w["types"]["title"] == "Types"
    # the same after a rollup (the engine may now read it): same bytes
    assert run("rollup", "--json").exit_code == 0
    again = run("report", "kpis", "--tenant", "acme", "--json", "--now", "2026-11-10T00:00:00Z")
    assert again.stdout == res.stdout


def test_report_terminal_output_and_range_flags(project):
    res = run("report", "kpis", "--tenant", "acme", "--since", "2026-11-02", "--until", "2026-11-02",
              "--now", "2026-11-10T00:00:00Z")
    assert res.exit_code == 0, res.output
    assert "KPIs" in res.stdout and "Events: 2" in res.stdout and "2026-11-02" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["report", "nope", "--tenant", "acme"], "no report with id 'nope'; defined: kpis"),
    (["report", "kpis", "--tenant", "globex"], "not enabled for tenant 'globex'"),
    (["report", "kpis", "--tenant", "../acme"], "invalid tenant id"),
    (["report", "kpis", "--tenant", "umbrella"], "unknown tenant 'umbrella'"),
    (["report", "kpis", "--tenant", "acme", "--since", "2026-13-01"], "--since: '2026-13-01' is not a date"),
    (["report", "kpis", "--tenant", "acme", "--since", "2026-11-05", "--until", "2026-11-01"], "before it starts"),
    (["report", "kpis"], "--tenant is required"),
])
def test_report_errors_exit_1_with_a_message(project, args, message):
    res = run(*args)
    assert res.exit_code == 1
    assert message in res.stderr.replace("\n", " ")


def test_report_error_as_json(project):
    res = run("report", "nope", "--tenant", "acme", "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["error"] == "ConfigError"


def test_validate_lists_every_invalid_file(project):
    (project / "reports" / "bad.yaml").write_text(
        "id: bad\ntitle: Bad\nwidgets:\n  - {id: a, type: metric}\n  - {id: b, type: time_series, interval: weekly}\n")
    (project / "reports" / "worse.yaml").write_text("id: worse\ntitle: W\nrange: last_week\nwidgets: []\n")
    res = run("reports", "validate", "--json")
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["valid"] == ["kpis"]
    msgs = [e["message"] for e in out["errors"]]
    assert any("bad.yaml: widgets[1].interval: 'weekly' is not one of hour, day, week, month" in m for m in msgs)
    assert any("worse.yaml: range: 'last_week' is not a range" in m for m in msgs)
    res = run("reports", "validate")
    assert res.exit_code == 1 and "1 valid, 2 invalid" in res.stdout


def test_list_json(project):
    res = run("reports", "list", "--json")
    assert res.exit_code == 0
    (r,) = json.loads(res.stdout)["reports"]
    assert (r["id"], r["tenants"], r["range"]) == ("kpis", ["acme"], {"since": "2026-11-01", "until": "2026-11-02"})
    assert [w["type"] for w in r["widgets"]] == ["metric", "metric", "time_series", "table"]


def test_rollup_cli_is_incremental(project):
    first = json.loads(run("rollup", "--json").stdout)
    assert first["partitions_rebuilt"] == first["partitions_checked"] > 0
    second = run("rollup", "--json")
    assert second.exit_code == 0 and json.loads(second.stdout)["partitions_rebuilt"] == 0
    assert "up to date" in run("rollup").stdout
    assert json.loads(run("rollup", "--full", "--json").stdout)["partitions_rebuilt"] == first["partitions_rebuilt"]
    assert run("rollup", "--since", "yesterday").exit_code == 1


def test_help_has_examples():
    for cmd in (["report"], ["rollup"], ["query"], ["reports", "validate"], ["reports", "list"]):
        res = run(*cmd, "--help")
        assert res.exit_code == 0 and "Example:" in res.stdout, cmd


def test_shipped_examples_validate_and_work_on_sample_data(clean_env):
    res = run("reports", "validate", "--json")
    assert res.exit_code == 0, res.output
    assert sorted(json.loads(res.stdout)["valid"]) == ["conversion", "engagement", "traffic"]
    sample = shipped("sample_data", "events.ndjson")
    assert run("ingest", str(sample), "--lake", "lake", "--workers", "1", "--json").exit_code == 0
    values = {}
    for rid in ("traffic", "conversion", "engagement"):
        res = run("report", rid, "--tenant", "acme", "--lake", "lake", "--since", "2026-09-01",
                  "--until", "2026-09-30", "--json", "--now", "2026-10-15T00:00:00Z")
        assert res.exit_code == 0, res.output
        data = json.loads(res.stdout)
        values[rid] = {w["widget_id"]: w["data"] for w in data["widgets"]}
    assert values["traffic"]["page_views"]["value"] > 0
    assert values["traffic"]["top_pages"]["rows"]
    assert values["conversion"]["revenue"]["value"] > 0
    assert values["conversion"]["plans"]["rows"]
    assert values["engagement"]["clicks"]["rows"]
