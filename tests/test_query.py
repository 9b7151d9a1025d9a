"""`erp query`: SQL over one tenant's events only. Attempts to reach another
tenant's files (paths, ../, globs, ATTACH, COPY, settings, extensions) must fail,
and the lake must be unchanged afterwards."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erp.cli.main import app
from erp.core.ingest import ingest
from erp.core.lake import Lake
from erp.reports.query import QueryError, run_query
from tests.conftest import NOW, event, make_config, write_ndjson


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    cfg = make_config(tmp_path, **{"ingest.workers": 1})
    recs = [event(tenant_id="acme", event_type="page_view", user_id=f"u{i}") for i in range(3)]
    recs += [event(tenant_id="globex", event_type="secret", user_id="spy", properties={"card": "4111"})
             for _ in range(5)]
    ingest(cfg, [str(write_ndjson(tmp_path / "in.ndjson", recs))], now=NOW)
    return tmp_path / "lake"


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def test_events_view_holds_only_the_tenant(lake):
    r = run_query(Lake(str(lake)), "acme", "SELECT tenant_id, event_type, count(*) FROM events GROUP BY ALL")
    assert r.rows == [["acme", "page_view", 3]]
    assert r.columns == ["tenant_id", "event_type", "count_star()"]
    r = run_query(Lake(str(lake)), "initech", "SELECT count(*) FROM events")
    assert r.rows == [[0]]


def test_limit_truncates(lake):
    r = run_query(Lake(str(lake)), "acme", "SELECT * FROM range(10)", limit=4)
    assert len(r.rows) == 4 and r.truncated


ATTACKS = [
    "SELECT * FROM read_parquet('{lake}/events/tenant_id=globex/*/*.parquet')",
    "SELECT * FROM read_parquet('{lake}/events/**/*.parquet')",
    "SELECT * FROM read_parquet('{lake}/events/tenant_id=acme/../tenant_id=globex/*/*.parquet')",
    "SELECT * FROM read_parquet('{lake}/events/tenant_id=acme/*/../../tenant_id=globex/*/*.parquet')",
    "SELECT * FROM parquet_scan(['{acme_file}', '{globex_file}'])",
    "SELECT * FROM read_parquet('{globex_file}')",
    "SELECT * FROM read_csv('{lake}/_state/ledger/*', auto_detect=true)",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM glob('{lake}/events/*')",
    "ATTACH '{lake}/x.duckdb' AS x",
    "COPY (SELECT 1) TO '{lake}/leak.csv'",
    "COPY events TO '{acme_file}' (FORMAT parquet, USE_TMP_FILE false)",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET enable_external_access",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT * FROM read_json_auto('file://{lake}/events/tenant_id=globex')",
    "CREATE OR REPLACE VIEW events AS SELECT * FROM read_parquet('{globex_file}')",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_other_tenants_files_are_unreachable(lake, attack):
    acme_file = next((lake / "events/tenant_id=acme").rglob("*.parquet"))
    globex_file = next((lake / "events/tenant_id=globex").rglob("*.parquet"))
    before = snapshot(lake)
    sql = attack.format(lake=lake, acme_file=acme_file, globex_file=globex_file)
    with pytest.raises(QueryError):
        run_query(Lake(str(lake)), "acme", sql)
    assert snapshot(lake) == before
    # and the connection still sees only acme afterwards
    assert run_query(Lake(str(lake)), "acme", "SELECT count(*) FROM events").rows == [[3]]


def test_no_secret_value_is_reachable_through_settings(lake):
    r = run_query(Lake(str(lake)), "acme", "SELECT value FROM duckdb_settings() WHERE name IN "
                  "('allowed_paths', 'allowed_directories', 'enable_external_access')")
    assert "globex" not in json.dumps(r.rows)


def test_cli(lake, clean_env):
    res = CliRunner().invoke(app, ["query", "--tenant", "acme", "--lake", str(lake), "--json",
                                   "SELECT count(DISTINCT user_id) AS n FROM events"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"] == [[3]]
    res = CliRunner().invoke(app, ["query", "--tenant", "acme", "--lake", str(lake),
                                   f"SELECT * FROM read_parquet('{lake}/events/tenant_id=globex/*/*.parquet')"])
    assert res.exit_code == 1 and "Permission Error" in res.stderr
    res = CliRunner().invoke(app, ["query", "--tenant", "../globex", "--lake", str(lake), "SELECT 1"])
    assert res.exit_code == 1 and "invalid tenant id" in res.stderr
    res = CliRunner().invoke(app, ["query", "--tenant", "acme", "--lake", str(lake), "SELEC nonsense"])
    assert res.exit_code == 1 and "the query failed" in res.stderr
