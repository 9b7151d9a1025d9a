"""Storage quotas: a tenant whose stored events have reached ``storage_quota``
gets its new events rejected (``quota_exceeded``, kept in _rejected/), other
tenants are untouched, and ``--rescan`` after raising the quota lands them
exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import NOW, event, read_events, read_rejected, reason_codes, write_ndjson
from erp.core.config import load_config
from erp.core.ingest import ingest


def project(tmp_path: Path, acme_quota: str, default_quota: str = "null") -> Path:
    (tmp_path / "erp.yaml").write_text(f"lake: lake\ndefaults:\n  storage_quota: {default_quota}\n")
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n"
        f"  - tenant_id: acme\n    storage_quota: {acme_quota}\n    retention_days: 3650\n"
        "  - tenant_id: globex\n    retention_days: 3650\n")
    return tmp_path / "erp.yaml"


def load(path: Path):
    return load_config(path, env={}, cwd=path.parent)


def stored_bytes(lake: Path, tenant: str) -> int:
    return sum(f.stat().st_size for f in (lake / "events" / f"tenant_id={tenant}").rglob("*.parquet"))


def test_a_tenant_over_its_quota_is_rejected_and_others_are_not(tmp_path):
    conf = project(tmp_path, acme_quota="1KiB")
    lake = tmp_path / "lake"
    first = write_ndjson(tmp_path / "day1.ndjson",
                         [event(tenant_id="acme", event_id=f"a{i}") for i in range(50)]
                         + [event(tenant_id="globex", event_id=f"g{i}") for i in range(5)])
    r1 = ingest(load(conf), [str(first)], now=NOW, workers=1)
    # the quota is checked when a run begins: the first run may go past it
    assert (r1.accepted, r1.rejected) == (55, 0)
    assert stored_bytes(lake, "acme") >= 1024

    second = write_ndjson(tmp_path / "day2.ndjson",
                          [event(tenant_id="acme", event_id=f"b{i}") for i in range(3)]
                          + [event(tenant_id="globex", event_id=f"h{i}") for i in range(4)])
    r2 = ingest(load(conf), [str(second)], now=NOW, workers=2)
    assert (r2.accepted, r2.rejected) == (4, 3)
    assert r2.tenant("acme").rejected_by_reason["quota_exceeded"] == 3
    rejected = [rec for rec in read_rejected(lake) if "quota_exceeded" in reason_codes(rec)]
    assert sorted(json.loads(rec["raw"])["event_id"] for rec in rejected) == ["b0", "b1", "b2"]
    assert all(rec["source"] == str(second) for rec in rejected)
    assert len(list((lake / "_rejected" / "tenant_id=acme").rglob("*.ndjson"))) == 1
    events = read_events(lake)
    assert sorted(events.filter(events["tenant_id"] == "globex")["event_id"].to_list()) == \
        sorted([f"g{i}" for i in range(5)] + [f"h{i}" for i in range(4)])

    # raise the quota; the ledger says day2 is done, --rescan reads it again:
    # the rejected events land, the accepted ones are not doubled
    project(tmp_path, acme_quota="10MiB")
    proc = subprocess.run([sys.executable, "-m", "erp.cli.main", "ingest", str(second), "--config", str(conf),
                           "--rescan", "--json", "--workers", "1"], capture_output=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    r3 = json.loads(proc.stdout)
    assert (r3["accepted"], r3["duplicates"], r3["rejected"]) == (3, 4, 0)
    events = read_events(lake)
    assert events.height == 55 + 4 + 3
    assert events["event_id"].n_unique() == events.height


def test_the_default_quota_applies_to_tenants_tenants_yaml_does_not_list(tmp_path):
    (tmp_path / "erp.yaml").write_text("lake: lake\ndefaults:\n  storage_quota: 1KiB\n")
    conf = tmp_path / "erp.yaml"  # no tenants.yaml: any valid tenant, with the defaults
    src = write_ndjson(tmp_path / "a.ndjson", [event(tenant_id="newco", event_id=f"n{i}") for i in range(40)])
    assert ingest(load(conf), [str(src)], now=NOW, workers=1).accepted == 40
    more = write_ndjson(tmp_path / "b.ndjson", [event(tenant_id="newco", event_id="late"),
                                                 event(tenant_id="other", event_id="o1")])
    r = ingest(load(conf), [str(more)], now=NOW, workers=1)
    assert (r.accepted, r.rejected) == (1, 1)
    assert r.tenant("newco").rejected_by_reason["quota_exceeded"] == 1


def test_no_quota_means_no_limit(tmp_path):
    conf = project(tmp_path, acme_quota="null")
    for day in range(3):
        src = write_ndjson(tmp_path / f"d{day}.ndjson", [event(event_id=f"x{day}-{i}") for i in range(30)])
        r = ingest(load(conf), [str(src)], now=NOW, workers=1)
        assert (r.accepted, r.rejected) == (30, 0)
