"""The synthetic event generator: determinism, shape, realism, dirty lines."""

from __future__ import annotations

import gzip
import io
import ipaddress
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erp.core.errors import ErpError
from erp.core.generate import DIRTY_KINDS, GenerateResult, generate_events, tenant_names

FIELDS = ["event_id", "tenant_id", "event_type", "timestamp", "user_id", "anonymous_id",
          "session_id", "properties", "metadata"]
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DOC_NETS = [ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32")]
FUNNEL = ["page_view", "signup", "add_to_cart", "purchase"]


def generate_bytes(**kwargs) -> bytes:
    buf = io.BytesIO()
    result = generate_events(buf, **kwargs)
    assert result.bytes == len(buf.getvalue())
    return buf.getvalue()


def parse_ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def clean() -> list[dict]:
    data = generate_bytes(events=30_000, tenants=6, days=28, seed=3)
    return [orjson.loads(line) for line in data.splitlines()]


# -- determinism and counts -------------------------------------------------


def test_same_arguments_give_identical_bytes():
    a = generate_bytes(events=5_000, tenants=4, days=10, seed=11, dirty=0.05)
    b = generate_bytes(events=5_000, tenants=4, days=10, seed=11, dirty=0.05)
    assert a == b


def test_different_seed_gives_different_bytes():
    a = generate_bytes(events=2_000, seed=1)
    b = generate_bytes(events=2_000, seed=2)
    assert a != b
    ids_a = {orjson.loads(line)["event_id"] for line in a.splitlines()}
    ids_b = {orjson.loads(line)["event_id"] for line in b.splitlines()}
    assert not ids_a & ids_b


@pytest.mark.parametrize("events,tenants,days", [
    (0, 5, 30), (1, 5, 30), (7, 12, 3), (999, 1, 1), (12_345, 8, 45),
])
def test_exact_event_count(events, tenants, days):
    data = generate_bytes(events=events, tenants=tenants, days=days)
    assert data.count(b"\n") == events
    assert data == b"" or data.endswith(b"\n")


@settings(max_examples=25, deadline=None)
@given(events=st.integers(0, 400), tenants=st.integers(1, 15), days=st.integers(1, 20),
       seed=st.integers(0, 2**32))
def test_any_small_arguments_give_that_many_valid_lines(events, tenants, days, seed):
    lines = generate_bytes(events=events, tenants=tenants, days=days, seed=seed).splitlines()
    assert len(lines) == events
    names = set(tenant_names(tenants))
    for line in lines:
        record = orjson.loads(line)
        assert list(record) == FIELDS
        assert record["tenant_id"] in names


def test_file_output_and_result(tmp_path):
    path = tmp_path / "events.ndjson"
    result = generate_events(path, events=1_500, tenants=3, days=5, start=date(2026, 1, 30))
    assert result == GenerateResult(path=str(path), events=1_500, bytes=path.stat().st_size,
                                    tenants=["acme", "globex", "initech"],
                                    start=date(2026, 1, 30), days=5)
    assert path.read_bytes() == generate_bytes(events=1_500, tenants=3, days=5,
                                               start=date(2026, 1, 30))
    assert list(tmp_path.iterdir()) == [path]  # no partial file left behind


def test_gzip_output_is_readable_and_deterministic(tmp_path):
    first, second = tmp_path / "a.ndjson.gz", tmp_path / "b.ndjson.gz"
    result = generate_events(first, events=3_000, seed=5)
    generate_events(second, events=3_000, seed=5)
    assert first.read_bytes()[:2] == b"\x1f\x8b"
    assert first.read_bytes() == second.read_bytes()  # no mtime or name in the header
    with gzip.open(first, "rb") as fh:
        data = fh.read()
    assert data == generate_bytes(events=3_000, seed=5)
    assert result.bytes == len(data)
    assert first.stat().st_size < len(data) / 4


def test_progress_reports_growing_counts_up_to_the_total():
    seen: list[int] = []
    generate_events(io.BytesIO(), events=40_000, progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == 40_000


@pytest.mark.parametrize("kwargs", [
    {"events": -1}, {"tenants": 0}, {"days": 0}, {"dirty": 1.5}, {"dirty": -0.1}, {"seed": -3},
])
def test_invalid_arguments_raise_erp_error(kwargs):
    with pytest.raises(ErpError) as info:
        generate_events(io.BytesIO(), **kwargs)
    assert info.value.hint


def test_tenant_names_are_valid_ids():
    names = tenant_names(120)
    assert names[:6] == ["acme", "globex", "initech", "umbrella", "hooli", "tenant-006"]
    assert names[-1] == "tenant-120"
    assert len(set(names)) == 120
    assert all(TENANT_RE.match(n) for n in names)


# -- shape of every record ----------------------------------------------------


def test_every_line_has_the_fields_with_the_right_types(clean):
    start = datetime(2026, 9, 1, tzinfo=timezone.utc)
    end = start + timedelta(days=29)  # sessions late on the last day may run past midnight
    for record in clean:
        assert list(record) == FIELDS
        assert UUID_RE.match(record["event_id"])
        assert TENANT_RE.match(record["tenant_id"])
        assert isinstance(record["event_type"], str) and record["event_type"]
        assert TS_RE.match(record["timestamp"])
        assert start <= parse_ts(record["timestamp"]) < end
        assert record["user_id"] is None or isinstance(record["user_id"], str)
        assert UUID_RE.match(record["anonymous_id"])
        assert isinstance(record["session_id"], str) and record["session_id"]
        assert isinstance(record["properties"], dict)
        meta = record["metadata"]
        assert set(meta) == {"ip", "user_agent", "sdk_version"}
        assert any(ipaddress.ip_address(meta["ip"]) in net for net in DOC_NETS)
        assert isinstance(meta["user_agent"], str) and isinstance(meta["sdk_version"], str)


def test_event_ids_are_unique(clean):
    assert len({r["event_id"] for r in clean}) == len(clean)


def test_event_types_and_their_properties(clean):
    types = Counter(r["event_type"] for r in clean)
    assert set(types) >= {"page_view", "click", "signup", "add_to_cart", "purchase",
                          "conversion", "search"}
    assert types.most_common(1)[0][0] == "page_view"
    for r in clean:
        props = r["properties"]
        if r["event_type"] == "page_view":
            assert props["page_url"].startswith(f"https://{r['tenant_id']}.example.com/")
            assert props["referrer"] is None or props["referrer"].startswith("https://")
            assert isinstance(props["title"], str)
        if r["event_type"] in ("purchase", "conversion"):
            assert isinstance(props["revenue"], float) and props["revenue"] > 0
            assert round(props["revenue"], 2) == props["revenue"]
            assert props["currency"] in ("USD", "EUR")
        if r["event_type"] in ("signup", "add_to_cart", "purchase", "conversion"):
            assert r["user_id"] is not None


def test_vocabularies_are_small_and_realistic(clean):
    agents = {r["metadata"]["user_agent"] for r in clean}
    assert 20 <= len(agents) <= 30
    assert any("Googlebot" in a for a in agents) and any("iPhone" in a for a in agents)
    referrers = Counter(r["properties"]["referrer"] for r in clean
                        if r["event_type"] == "page_view")
    assert None in referrers and "https://www.google.com/" in referrers
    assert sum(1 for r in clean if ":" in r["metadata"]["ip"]) > 0  # some IPv6


def test_average_line_is_about_500_bytes():
    data = generate_bytes(events=20_000, tenants=10, days=20)
    assert 450 <= len(data) / 20_000 <= 600


# -- realism --------------------------------------------------------------------


def test_tenant_sizes_are_skewed(clean):
    per_tenant = Counter(r["tenant_id"] for r in clean)
    names = tenant_names(6)
    counts = [per_tenant[n] for n in names]
    assert counts[0] == max(counts)
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > 3 * counts[-1]


def test_funnel_drops_off_at_every_step(clean):
    by_anon: dict[str, set] = defaultdict(set)
    by_user: dict[str, set] = defaultdict(set)
    for r in clean:
        by_anon[r["event_type"]].add(r["anonymous_id"])
        if r["user_id"] is not None:
            by_user[r["event_type"]].add(r["user_id"])
    anon = [len(by_anon[step]) for step in FUNNEL]
    users = [len(by_user[step]) for step in FUNNEL[1:]]
    assert anon[0] > anon[1] > anon[2] > anon[3] > 0, anon
    assert users[0] > users[1] > users[2] > 0, users
    assert len(by_user["page_view"]) >= users[0]  # signed-up users go on to view pages


def test_funnel_holds_per_tenant(clean):
    steps: dict[tuple[str, str], set] = defaultdict(set)
    for r in clean:
        steps[r["tenant_id"], r["event_type"]].add(r["anonymous_id"])
    for tenant in tenant_names(6):
        sizes = [len(steps[tenant, step]) for step in FUNNEL]
        assert sizes == sorted(sizes, reverse=True), (tenant, sizes)


def test_users_belong_to_one_tenant_and_return_on_other_days(clean):
    tenants_of: dict[str, set] = defaultdict(set)
    days_of: dict[str, set] = defaultdict(set)
    for r in clean:
        tenants_of[r["anonymous_id"]].add(r["tenant_id"])
        if r["user_id"]:
            tenants_of[r["user_id"]].add(r["tenant_id"])
        days_of[r["anonymous_id"]].add(r["timestamp"][:10])
    assert all(len(t) == 1 for t in tenants_of.values())
    returning = sum(1 for d in days_of.values() if len(d) >= 2)
    one_time = sum(1 for d in days_of.values() if len(d) == 1)
    assert returning > 0.1 * len(days_of)  # people come back...
    assert one_time > 0.2 * len(days_of)  # ...and many never do


def test_sessions_are_short_runs_of_events(clean):
    by_session: dict[str, list[datetime]] = defaultdict(list)
    owner: dict[str, str] = {}
    for r in clean:
        by_session[r["session_id"]].append(parse_ts(r["timestamp"]))
        assert owner.setdefault(r["session_id"], r["anonymous_id"]) == r["anonymous_id"]
    lengths = [len(v) for v in by_session.values()]
    assert 2 <= sum(lengths) / len(lengths) <= 10
    gaps = [(b - a).total_seconds() for ts in by_session.values() for a, b in zip(ts, ts[1:])]
    assert all(g > 0 for g in gaps)
    gaps.sort()
    assert 5 <= gaps[len(gaps) // 2] <= 120  # median gap: seconds to a couple of minutes


def test_weekends_are_quieter_and_nights_are_quiet(clean):
    per_day = Counter(r["timestamp"][:10] for r in clean if r["tenant_id"] == "acme")
    weekday = [n for d, n in per_day.items() if date.fromisoformat(d).weekday() < 5]
    weekend = [n for d, n in per_day.items() if date.fromisoformat(d).weekday() >= 5]
    assert sum(weekend) / len(weekend) < 0.8 * sum(weekday) / len(weekday)
    # acme's audience is at UTC-5: 03:00-05:00 local is 08:00-10:00 UTC.
    per_hour = Counter(int(r["timestamp"][11:13]) for r in clean if r["tenant_id"] == "acme")
    assert per_hour[8] + per_hour[9] < 0.25 * (per_hour[18] + per_hour[19])


def test_roughly_time_ordered_per_tenant(clean):
    latest: dict[str, datetime] = {}
    for r in clean:
        ts = parse_ts(r["timestamp"])
        last = latest.get(r["tenant_id"])
        if last is not None:
            assert ts > last - timedelta(hours=3)
        latest[r["tenant_id"]] = max(ts, last) if last else ts


# -- dirty lines ----------------------------------------------------------------


def classify(line: bytes, seen: set[bytes]) -> str:
    """Why a line is bad ('' if it is fine); independent of the generator's code."""
    if line in seen:
        return "duplicate"
    seen.add(line)
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid_utf8"
        return "malformed_json"
    if not isinstance(record, dict) or "event_type" not in record:
        return "missing_event_type"
    if not all(isinstance(record.get(k), str) for k in ("event_id", "event_type", "timestamp")):
        return "wrong_type"
    if not isinstance(record["properties"], dict) or not isinstance(record["metadata"], dict):
        return "wrong_type"
    if not TENANT_RE.match(record.get("tenant_id") or ""):
        return "invalid_tenant"
    if parse_ts(record["timestamp"]).year > 2030:
        return "future_timestamp"
    return ""


@pytest.mark.parametrize("dirty", [0.0, 0.02, 0.1, 0.5])
def test_dirty_fraction_of_lines_is_bad(dirty):
    events = 20_000
    lines = generate_bytes(events=events, dirty=dirty, seed=9).splitlines()
    assert len(lines) == events
    seen: set[bytes] = set()
    reasons = Counter(classify(line, seen) for line in lines)
    bad = events - reasons.pop("")
    assert abs(bad - dirty * events) <= 0.005 * events, (bad, reasons)
    if dirty >= 0.02:
        assert set(reasons) == set(DIRTY_KINDS), reasons


def test_dirty_lines_replace_clean_ones_in_place():
    clean_lines = generate_bytes(events=5_000, seed=4).splitlines()
    dirty_lines = generate_bytes(events=5_000, seed=4, dirty=0.1).splitlines()
    changed = sum(1 for a, b in zip(clean_lines, dirty_lines) if a != b)
    assert changed == 500
    assert any(b"../etc" in line for line in dirty_lines)
    assert any(b'"timestamp":false' in line for line in dirty_lines) or \
        any(b'"event_type":42' in line for line in dirty_lines)
