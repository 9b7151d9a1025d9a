"""Rollups: totals equal raw counts, incremental equals full, the engine gives the
same numbers from rollups as from raw events, stale rollups are never used."""

from __future__ import annotations

import random
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from erp.core.config import Config
from erp.core.ingest import ingest
from erp.core.lake import Lake
from erp.core.rollup import read_watermark, rollup
from erp.reports.definitions import parse_report
from erp.reports.engine import compute_report
from erp.reports.source import LakeSource
from tests.conftest import make_config, read_events, write_ndjson

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
TYPES = ["page_view", "click", "signup", "purchase"]
DEVICES = ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
           "Version/17.0 Mobile/15E148 Safari/604.1",
           "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0.0.0 Safari/537.36", None]


def events(seed: int, n: int, tenants=("acme", "globex"), start="2026-10-30", days=4) -> list[dict]:
    rng = random.Random(seed)
    t0 = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    out = []
    for i in range(n):
        ts = t0 + timedelta(seconds=rng.randrange(days * 86400))
        rec = {"event_id": f"s{seed}-{i}", "tenant_id": rng.choice(tenants), "event_type": rng.choice(TYPES),
               "timestamp": ts.isoformat().replace("+00:00", "Z")}
        who = rng.random()
        if who < 0.5:
            rec["user_id"] = f"u{rng.randrange(15)}"
        elif who < 0.85:
            rec["anonymous_id"] = f"a{rng.randrange(15)}"
        if rng.random() < 0.8:
            rec["session_id"] = f"s{rng.randrange(25)}"
        meta = {}
        ua = rng.choice(DEVICES)
        if ua:
            meta["user_agent"] = ua
        if rng.random() < 0.7:
            meta["country"] = rng.choice(["DE", "US", "FR"])
        if meta:
            rec["metadata"] = meta
        if rec["event_type"] == "purchase":
            rec["properties"] = {"revenue": rng.choice([1, 2.5, 10])}
        out.append(rec)
    return out


@pytest.fixture
def ny_cfg(tmp_path: Path) -> Config:
    proj = tmp_path / "erp.yaml"
    proj.write_text("defaults:\n  timezone: America/New_York\n  retention_days: null\ntenants_file: tenants.yaml\n")
    (tmp_path / "tenants.yaml").write_text("tenants: []\n")
    return make_config(tmp_path, config_file=proj, **{"ingest.workers": 1})


def load(cfg: Config, tmp_path: Path, name: str, recs: list[dict]) -> None:
    r = ingest(cfg, [str(write_ndjson(tmp_path / f"{name}.ndjson", recs))], now=NOW)
    assert r.rejected == 0, r.to_dict()


def tables(lake: Path) -> dict[str, pl.DataFrame]:
    """The rollup tables as the watermark lists them (what readers use)."""
    lk = Lake(str(lake))
    wm = read_watermark(lk)
    out = {}
    for table, keys in (("hourly", ["tenant_id", "date", "hour", "event_type", "device_type", "country"]),
                        ("user_days", ["tenant_id", "date", "user_key"])):
        frames = []
        for t, days in wm["tenants"].items():
            for d, entry in days.items():
                for rel in entry[table]:
                    frames.append(pl.read_parquet(lk.path(rel), hive_partitioning=False).with_columns(
                        tenant_id=pl.lit(t), date=pl.lit(date.fromisoformat(d))))
        out[table] = pl.concat(frames).select(*keys, pl.exclude(keys)).sort(keys, nulls_last=True)
    return out


def raw_hourly(lake: Path) -> pl.DataFrame:
    ev = read_events(lake).with_columns(user_key=pl.coalesce("user_id", "anonymous_id"))
    return (ev.group_by("tenant_id", "date", pl.col("timestamp").dt.hour().cast(pl.Int8).alias("hour"),
                        "event_type", "device_type", "country")
            .agg(pl.len().cast(pl.Int64).alias("events"),
                 pl.col("user_key").drop_nulls().n_unique().cast(pl.Int64).alias("users"),
                 pl.col("session_id").drop_nulls().n_unique().cast(pl.Int64).alias("sessions")))


def test_rollup_totals_equal_raw_counts(ny_cfg, tmp_path):
    load(ny_cfg, tmp_path, "a", events(1, 600))
    r = rollup(ny_cfg)
    assert r.partitions_rebuilt == r.partitions_checked == 8  # 2 tenants x 4 days
    lake = tmp_path / "lake"
    got = tables(lake)
    raw = raw_hourly(lake)
    keys = ["tenant_id", "date", "hour", "event_type", "device_type", "country"]
    assert got["hourly"]["events"].sum() == 600
    assert got["hourly"].sort(keys, nulls_last=True).equals(raw.select(got["hourly"].columns)
                                                           .sort(keys, nulls_last=True))
    ev = read_events(lake).with_columns(user_key=pl.coalesce("user_id", "anonymous_id"))
    ud = got["user_days"]
    assert ud["events"].sum() == ev["user_key"].drop_nulls().len()
    one = ud.filter(pl.col("user_key") == "u3").sort("tenant_id", "date").row(0, named=True)
    mine = ev.filter((pl.col("tenant_id") == one["tenant_id"]) & (pl.col("date") == one["date"])
                     & (pl.col("user_key") == "u3"))
    assert (one["events"], one["first_seen"], one["last_seen"]) == (
        mine.height, mine["timestamp"].min(), mine["timestamp"].max())
    assert one["sessions"] == mine["session_id"].drop_nulls().n_unique()


def test_incremental_equals_full_and_noop_reads_nothing(ny_cfg, tmp_path):
    load(ny_cfg, tmp_path, "a", events(2, 400))
    first = rollup(ny_cfg)
    assert first.partitions_rebuilt == 8
    assert rollup(ny_cfg).partitions_rebuilt == 0  # nothing new
    # late events for one old date of acme, a new date, and a new tenant
    late = [e for e in events(3, 200, tenants=("acme",), start="2026-10-31", days=1)]
    late += events(4, 50, tenants=("initech",), start="2026-11-05", days=1)
    late += events(5, 50, tenants=("globex",), start="2026-11-06", days=1)
    load(ny_cfg, tmp_path, "b", late)
    inc = rollup(ny_cfg)
    assert inc.rebuilt == {"acme": ["2026-10-31"], "globex": ["2026-11-06"], "initech": ["2026-11-05"]}
    incremental = tables(tmp_path / "lake")
    full = rollup(ny_cfg, full=True)
    assert full.partitions_rebuilt == 10  # 8 + globex 11-06 + initech 11-05
    again = tables(tmp_path / "lake")
    for t in ("hourly", "user_days"):
        assert incremental[t].equals(again[t]), t
    assert incremental["hourly"]["events"].sum() == 700
    # old rollup files were replaced, not kept next to the new ones
    files = sorted((tmp_path / "lake/rollups/hourly/tenant_id=acme/date=2026-10-31").iterdir())
    assert len(files) == 1


def test_vanished_partition_drops_its_rollup(ny_cfg, tmp_path):
    load(ny_cfg, tmp_path, "a", events(6, 100))
    rollup(ny_cfg)
    shutil.rmtree(tmp_path / "lake/events/tenant_id=acme/date=2026-10-30")
    r = rollup(ny_cfg)
    assert r.partitions_removed == 1 and r.partitions_rebuilt == 0
    assert not list((tmp_path / "lake/rollups/hourly/tenant_id=acme").glob("date=2026-10-30/*"))
    assert "2026-10-30" not in read_watermark(Lake(str(tmp_path / "lake")))["tenants"]["acme"]


REPORT = {
    "id": "t", "title": "T", "range": {"since": "2026-10-31", "until": "2026-11-02"},
    "widgets": [
        {"id": "n", "type": "metric", "filters": [{"event_type": ["page_view", "click"]}]},
        {"id": "all", "type": "metric"},
        {"id": "d", "type": "time_series", "interval": "day",
         "series": [{"label": "pv", "filters": [{"event_type": "page_view"}]}, {"label": "all"}]},
        {"id": "h", "type": "time_series", "interval": "hour", "series": [{"label": "all"}]},
        {"id": "w", "type": "time_series", "interval": "week", "series": [{"label": "u", "measure": "users"}]},
        {"id": "tb", "type": "table", "by": "event_type"},
    ]}


def test_report_from_rollups_equals_raw_across_dst(ny_cfg, tmp_path):
    load(ny_cfg, tmp_path, "a", events(7, 800))
    rollup(ny_cfg)
    report = parse_report(REPORT, "t.yaml")
    lake = Lake(str(tmp_path / "lake"))
    src = LakeSource(lake, "acme")
    # the rollup really answers here (New York offsets are whole hours)
    assert src.hourly_counts(datetime(2026, 10, 31, 4, tzinfo=timezone.utc),
                             datetime(2026, 11, 3, 5, tzinfo=timezone.utc)) is not None
    with_rollups = compute_report(ny_cfg, lake, report, "acme", now=NOW)
    raw = compute_report(ny_cfg, lake, report, "acme", now=NOW, use_rollups=False)
    assert with_rollups == raw
    assert len(raw["widgets"][3]["data"]["buckets"]) == 24 + 25 + 24  # Oct 31, Nov 1 (fall back), Nov 2
    assert raw["widgets"][1]["data"]["value"] == sum(raw["widgets"][2]["data"]["series"][1]["values"])


def test_stale_rollups_are_not_used(ny_cfg, tmp_path):
    load(ny_cfg, tmp_path, "a", events(8, 300))
    rollup(ny_cfg)
    report = parse_report(REPORT, "t.yaml")
    lake = Lake(str(tmp_path / "lake"))
    before = compute_report(ny_cfg, lake, report, "acme", now=NOW)
    load(ny_cfg, tmp_path, "b", events(9, 100, tenants=("acme",), start="2026-11-01", days=1))
    src = LakeSource(lake, "acme")
    assert src.hourly_counts(datetime(2026, 10, 31, 4, tzinfo=timezone.utc),
                             datetime(2026, 11, 3, 5, tzinfo=timezone.utc)) is None
    after = compute_report(ny_cfg, lake, report, "acme", now=NOW)
    assert after == compute_report(ny_cfg, lake, report, "acme", now=NOW, use_rollups=False)
    added = read_events(tmp_path / "lake").filter(pl.col("event_id").str.starts_with("s9-")
                                                  & (pl.col("timestamp") >= datetime(2026, 10, 31, 4, tzinfo=timezone.utc))
                                                  & (pl.col("timestamp") < datetime(2026, 11, 3, 5, tzinfo=timezone.utc)))
    assert after["widgets"][1]["data"]["value"] == before["widgets"][1]["data"]["value"] + added.height


def test_small_batches_give_the_same_tables(ny_cfg, tmp_path):
    load(ny_cfg, tmp_path, "a", events(10, 500, tenants=("acme", "globex", "initech")))
    rollup(ny_cfg)
    one_batch = tables(tmp_path / "lake")
    from erp.core.rollup import rollup_lake

    r = rollup_lake(Lake(str(tmp_path / "lake")), full=True, batch_bytes=1)  # one date per scan and commit
    assert r.partitions_rebuilt == 12
    split = tables(tmp_path / "lake")
    for t in ("hourly", "user_days"):
        assert one_batch[t].equals(split[t]), t
    assert len(list((tmp_path / "lake/rollups/hourly").rglob("*.parquet"))) == 12


def test_distinct_users_from_user_days_equal_raw_in_utc(cfg_factory, tmp_path):
    cfg = cfg_factory(**{"ingest.workers": 1})  # shipped defaults: timezone UTC
    load(cfg, tmp_path, "a", events(11, 700))
    rollup(cfg)
    spec = {"id": "u", "title": "U", "range": {"since": "2026-10-31", "until": "2026-11-02"}, "widgets": [
        {"id": "m", "type": "metric", "measure": "users"},
        {"id": "d", "type": "time_series", "interval": "day", "series": [{"label": "u", "measure": "users"}]},
        {"id": "w", "type": "time_series", "interval": "week", "series": [{"label": "u", "measure": "users"}]},
        {"id": "f", "type": "metric", "measure": "users", "filters": [{"event_type": "click"}]},
    ]}
    report = parse_report(spec, "u.yaml")
    lake = Lake(str(tmp_path / "lake"))
    src = LakeSource(lake, "acme")
    assert src.user_days(datetime(2026, 10, 31, tzinfo=timezone.utc), datetime(2026, 11, 3, tzinfo=timezone.utc)) \
        is not None
    assert src.user_days(datetime(2026, 10, 31, 4, tzinfo=timezone.utc), datetime(2026, 11, 3, tzinfo=timezone.utc)) \
        is None  # not a UTC midnight: the rollup cannot answer
    fast = compute_report(cfg, lake, report, "acme", now=NOW)
    raw = compute_report(cfg, lake, report, "acme", now=NOW, use_rollups=False)
    assert fast == raw
    assert raw["widgets"][0]["data"]["value"] > 0


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from erp.core.rollup import compute_tables  # noqa: E402
from tests.report_data import frame  # noqa: E402

row_st = st.fixed_dictionaries({
    "sec": st.integers(0, 3 * 86400 - 1), "event_type": st.sampled_from(["a", "b"]),
    "user_id": st.sampled_from([None, "u1", "u2"]), "anonymous_id": st.sampled_from([None, "x1"]),
    "session_id": st.sampled_from([None, "s1", "s2"]), "device_type": st.sampled_from([None, "mobile"]),
    "country": st.sampled_from([None, "DE"])})


@settings(max_examples=40, deadline=None)
@given(st.lists(row_st, max_size=30))
def test_rollup_tables_match_a_naive_reference(rows):
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    recs = [dict(r, timestamp=base + timedelta(seconds=r.pop("sec"))) for r in [dict(x) for x in rows]]
    lf = frame(recs).lazy().with_columns(date=pl.col("timestamp").dt.date())
    hourly, user_days = (x.collect() for x in compute_tables(lf, ("device_type", "country")))
    want: dict = {}
    for r in recs:
        k = (r["timestamp"].date(), r["timestamp"].hour, r["event_type"], r["device_type"], r["country"])
        g = want.setdefault(k, [0, set(), set()])
        g[0] += 1
        u = r["user_id"] if r["user_id"] is not None else r["anonymous_id"]
        if u is not None:
            g[1].add(u)
        if r["session_id"] is not None:
            g[2].add(r["session_id"])
    got = {(d["date"], d["hour"], d["event_type"], d["device_type"], d["country"]):
           (d["events"], d["users"], d["sessions"]) for d in hourly.to_dicts()}
    assert got == {k: (v[0], len(v[1]), len(v[2])) for k, v in want.items()}
    days: dict = {}
    for r in recs:
        u = r["user_id"] if r["user_id"] is not None else r["anonymous_id"]
        if u is None:
            continue
        g = days.setdefault((r["timestamp"].date(), u), [0, set(), [], []])
        g[0] += 1
        if r["session_id"] is not None:
            g[1].add(r["session_id"])
        g[2].append(r["timestamp"])
    got = {(d["date"], d["user_key"]): (d["events"], d["sessions"], d["first_seen"], d["last_seen"])
           for d in user_days.to_dicts()}
    assert got == {k: (v[0], len(v[1]), min(v[2]), max(v[2])) for k, v in days.items()}
