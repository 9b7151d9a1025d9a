"""``erp build-reports`` end to end: a real lake (ingested through erp), real report
definitions and the CLI. Determinism, incremental writes, one tenant per bundle,
hostile event data, the manifest and exit codes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from erp.cli.main import app
from test_render import PAYLOAD, parse

NOW = "2026-09-10T15:00:00Z"
RUNNER = CliRunner()

REPORT = """
id: overview
title: Overview
tenants: all
range: {since: 2026-09-01, until: 2026-09-10}
widgets:
  - {id: views, type: metric, title: Page views, filters: [{event_type: page_view}]}
  - {id: users, type: metric, title: Users, measure: users}
  - id: daily
    type: time_series
    title: Events per day
    interval: day
    series: [{label: Events}]
    breakdown: {property: event_type, limit: 3}
  - {id: pages, type: table, title: Pages, by: [title], limit: 5}
  - id: checkout
    type: funnel
    title: Checkout
    steps: [page_view, signup, purchase]
  - {id: weekly, type: retention, title: Retention, period: day, periods: 3}
"""

SMALL = """
id: small
title: Small
tenants: [acme]
range: {since: 2026-09-01, until: 2026-09-10}
widgets:
  - {id: views, type: metric, title: Page views, filters: [{event_type: page_view}]}
"""


def events(tenant: str, n: int, *, day0: int = 1, marker: str = "") -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        user = f"{tenant}-u{i % 7}"
        kind = ("page_view", "page_view", "signup", "purchase")[i % 4]
        out.append({"event_id": f"{tenant}-{day0}-{i}", "tenant_id": tenant, "event_type": kind,
                    "timestamp": f"2026-09-{day0 + i % 9:02d}T{(i * 5) % 24:02d}:{i % 60:02d}:00Z",
                    "user_id": user, "session_id": f"s{i % 11}",
                    "properties": {"title": (marker or "Home") + str(i % 3)}})
    return out


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for k in list(__import__("os").environ):
        if k.startswith("ERP_"):
            monkeypatch.delenv(k)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "overview.yaml").write_text(REPORT)
    (tmp_path / "reports" / "small.yaml").write_text(SMALL)
    (tmp_path / "tenants.yaml").write_text(
        "tenants:\n"
        "  - {tenant_id: acme, name: Acme, timezone: America/New_York, retention_days: 100000}\n"
        f"  - {{tenant_id: globex, name: {json.dumps(PAYLOAD)}, timezone: Europe/Berlin, retention_days: 100000}}\n")
    (tmp_path / "erp.yaml").write_text("lake: lake\ntenants_file: tenants.yaml\nreports_dir: reports\n")
    ingest(tmp_path, events("acme", 120) + events("globex", 90, marker="globex-secret-")
           + [{"event_id": "x1", "tenant_id": "globex", "event_type": PAYLOAD, "user_id": "u1",
               "timestamp": "2026-09-03T10:00:00Z", "properties": {"title": PAYLOAD}},
              {"event_id": "x2", "tenant_id": "globex", "event_type": "page_view", "user_id": "u2",
               "timestamp": "2026-09-03T11:00:00Z", "properties": {"title": "=HYPERLINK(\"evil\")"}}])
    return tmp_path


def ingest(project: Path, rows: list[dict[str, Any]], name: str = "events.ndjson") -> None:
    path = project / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = RUNNER.invoke(app, ["ingest", str(path), "--json"])
    assert res.exit_code == 0, res.output


def build(out: str, *args: str) -> dict[str, Any]:
    res = RUNNER.invoke(app, ["build-reports", "--out", out, "--now", NOW, "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_inputs_give_byte_identical_output_from_any_folder(project: Path):
    a = build("dist-a")
    build(str(project / "elsewhere" / "dist-b"))
    assert a["files_written"] == len(tree(project / "dist-a")) > 0
    assert tree(project / "dist-a") == tree(project / "elsewhere" / "dist-b")
    assert {(x["tenant_id"], x["report_id"]) for x in a["bundles"]} == \
        {("acme", "overview"), ("acme", "small"), ("globex", "overview")}
    for path, data in tree(project / "dist-a").items():  # no build time or absolute path
        assert str(project).encode() not in data, path
        assert b"2026-11-24" not in data


def test_only_changed_files_are_rewritten(project: Path):
    first = build("dist")
    files = tree(project / "dist")
    mtimes = {p: (project / "dist" / p).stat().st_mtime_ns for p in files}
    again = build("dist")
    assert again["files_written"] == 0 and again["files_unchanged"] == first["files_written"]
    assert {p: (project / "dist" / p).stat().st_mtime_ns for p in files} == mtimes
    ingest(project, events("acme", 8, day0=2, marker="Late"), "late.ndjson")  # late acme events
    third = build("dist")
    written = set(third["written"])
    assert written and all(p.startswith("acme/") or p in ("manifest.json", "index.html") for p in written)
    assert "acme/overview/index.html" in written and "acme/overview/data.json" in written
    assert not any(p.startswith("globex/") for p in written)
    # a widget removed from a definition: its CSV goes away on the next build
    (project / "reports" / "small.yaml").write_text(SMALL.replace("widgets:", "widgets:\n  - {id: all, type: metric, title: All}").replace(
        "  - {id: views, type: metric, title: Page views, filters: [{event_type: page_view}]}\n", ""))
    fourth = build("dist", "--report", "small")
    assert "acme/small/views.csv" in fourth["removed"] and not (project / "dist/acme/small/views.csv").exists()
    assert (project / "dist/acme/small/all.csv").is_file()
    manifest = json.loads((project / "dist/manifest.json").read_text())  # other bundles stay listed
    assert {(b["tenant_id"], b["report_id"]) for b in manifest["bundles"]} == \
        {("acme", "overview"), ("acme", "small"), ("globex", "overview")}


def test_manifest_hashes_and_index(project: Path):
    build("dist")
    dist = project / "dist"
    manifest = json.loads((dist / "manifest.json").read_text())
    for b in manifest["bundles"]:
        for name, digest in b["files"].items():
            data = (dist / b["path"] / name).read_bytes()
            assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
        assert set(b["files"]) == {p.name for p in (dist / b["path"]).iterdir()}
        assert {"index.html", "data.json", "embed.html"} <= set(b["files"])
    index = (dist / "index.html").read_text()
    for b in manifest["bundles"]:
        assert f'href="{b["path"]}index.html"' in index and f'href="{b["path"]}embed.html"' in index
    page = parse(index)
    assert "img" not in [t for t, _ in page.tags] and "script" not in [t for t, _ in page.tags]
    assert "&lt;/script&gt;&lt;img" in index  # the hostile tenant name, as text


def test_a_bundle_holds_one_tenants_data_only(project: Path):
    build("dist")
    dist = project / "dist"
    for path, data in tree(dist / "acme").items():
        assert b"globex" not in data, path
    for path, data in tree(dist / "globex").items():
        assert b"acme" not in data, path
    data = json.loads((dist / "acme/overview/data.json").read_text())
    assert data["tenant_id"] == "acme" and data["range"]["timezone"] == "America/New_York"
    titles = {r["labels"][0] for r in data["widgets"][3]["data"]["rows"]}
    assert titles == {"Home0", "Home1", "Home2"}


def test_hostile_event_values_are_inert_everywhere(project: Path):
    build("dist")
    bundle = project / "dist/globex/overview"
    for name in ("index.html", "embed.html"):
        page = parse((bundle / name).read_bytes())
        tags = [t for t, _ in page.tags]
        assert "img" not in tags and tags.count("script") == (2 if name == "index.html" else 1)
        assert all(not k.startswith("on") and k != "style" for _, a in page.tags for k in a)
    html = (bundle / "index.html").read_text()
    assert html.count("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;") >= 3  # title, event type, tenant
    pages_csv = (bundle / "pages.csv").read_text()
    assert "'=HYPERLINK" in pages_csv and "\n=HYPERLINK" not in pages_csv
    data = json.loads((bundle / "data.json").read_text())
    assert PAYLOAD in json.dumps(data, ensure_ascii=False)  # the data keeps the real value


def test_every_bundle_is_self_contained_and_small(project: Path):
    build("dist", "--theme", "dark", "--transparent")
    for index in (project / "dist").glob("*/*/index.html"):
        html = index.read_text()
        assert '<html lang="en" data-theme="dark" class="transparent">' in html
        assert len(html.encode()) < 150_000
        for tag, attrs in parse(html).tags:
            for k, v in attrs.items():
                assert not (v or "").lower().startswith(("http:", "https:", "//")), (tag, k, v)
            assert tag not in ("link", "img", "iframe", "object", "embed", "base")
            if tag == "script":
                assert "src" not in attrs
        embed = (index.parent / "embed.html").read_text()
        assert '<iframe data-erp-report src="index.html"' in embed
        assert 'sandbox="allow-scripts allow-downloads"' in embed


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "../etc"], "invalid tenant id"),
    (["--tenant", "hooli"], "unknown tenant"),
    (["--report", "nope"], "no report with id"),
    (["--theme", "neon"], "--theme"),
    (["--since", "2026-13-01"], "--since"),
    (["--tenant", "globex", "--report", "small"], "not enabled"),
])
def test_user_errors_exit_1_with_a_message(project: Path, args: list[str], message: str):
    res = RUNNER.invoke(app, ["build-reports", "--out", "dist", "--now", NOW, "--json", *args])
    assert res.exit_code == 1, res.output
    out = json.loads(res.stdout)
    assert out["ok"] is False and message in out["message"]
    assert not (project / "dist" / "etc").exists()


def test_help_has_an_example():
    res = RUNNER.invoke(app, ["build-reports", "--help"])
    assert res.exit_code == 0 and "Example:" in res.output and "--theme" in res.output
