"""Shared fixtures for the lake / ingest tests: config on a tmp_path lake, a fixed
ingest clock, NDJSON writers and lake readers (real files, no mocks)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from erp.core.config import Config, load_config
from erp.core.events import EVENT_SCHEMA

#: The ingest clock used by library-level tests (received_at, future / retention checks).
NOW = datetime(2026, 9, 15, 12, 0, tzinfo=timezone.utc)

#: A real desktop Chrome on Windows user agent.
CHROME_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/120.0.0.0 Safari/537.36")

#: Columns of a lake read back with hive partitioning: the stored schema plus the
#: two partition columns taken from the path.
LAKE_COLUMNS = EVENT_SCHEMA.names + ["tenant_id", "date"]


def make_config(base: Path, lake: Path | None = None, config_file: Path | None = None,
                **flags: Any) -> Config:
    """Shipped defaults (no tenants list), lake under ``base``, no ERP_* env.

    Flag names use dots (``**{"ingest.chunk_bytes": 65536}``) or double
    underscores (``ingest__chunk_bytes=65536``)."""
    resolved = {"lake": str(lake or base / "lake")}
    resolved.update({k.replace("__", "."): v for k, v in flags.items()})
    return load_config(config_file, flags=resolved, env={}, cwd=base)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def cfg_factory(tmp_path: Path) -> Callable[..., Config]:
    """``cfg_factory(**flags)`` -> a Config whose lake is ``tmp_path/lake``."""

    def make(**flags: Any) -> Config:
        return make_config(tmp_path, **flags)

    return make


@pytest.fixture
def cfg(cfg_factory: Callable[..., Config]) -> Config:
    return cfg_factory()


_ids = itertools.count(1)


def event(**fields: Any) -> dict[str, Any]:
    """A valid event for tenant ``acme`` on 2026-09-14 (a fresh event_id each call);
    keyword arguments override or add fields, ``None`` removes one."""
    rec: dict[str, Any] = {
        "event_id": f"evt-{next(_ids):06d}",
        "tenant_id": "acme",
        "event_type": "page_view",
        "timestamp": "2026-09-14T10:00:00Z",
        "anonymous_id": "anon-1",
    }
    rec.update(fields)
    return {k: v for k, v in rec.items() if v is not None}


def ndjson_bytes(lines: Iterable[dict | str | bytes]) -> bytes:
    """One line per item: dicts are JSON-encoded, str/bytes are written as given."""
    out = []
    for item in lines:
        if isinstance(item, dict):
            out.append(json.dumps(item).encode())
        elif isinstance(item, str):
            out.append(item.encode())
        else:
            out.append(item)
    return b"".join(line + b"\n" for line in out)


def write_ndjson(path: Path, lines: Iterable[dict | str | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ndjson_bytes(lines))
    return path


def read_events(lake: Path | str) -> pl.DataFrame:
    """Every event in the lake, read back as an outside tool would (hive partitions)."""
    files = sorted(Path(lake, "events").rglob("*.parquet"))
    if not files:
        empty = pl.from_arrow(EVENT_SCHEMA.empty_table())
        return empty.with_columns(tenant_id=pl.lit(None, pl.String), date=pl.lit(None, pl.Date))
    return pl.scan_parquet(f"{lake}/events/**/*.parquet", hive_partitioning=True).collect()


def read_rejected(lake: Path | str) -> list[dict[str, Any]]:
    """Every rejected record; each also gets ``bucket`` and ``ingest_date`` from its path."""
    out = []
    root = Path(lake, "_rejected")
    for f in sorted(root.rglob("*.ndjson")):
        parts = dict(p.split("=", 1) for p in f.relative_to(root).parts[:-1])
        for line in f.read_bytes().splitlines():
            if line.strip():
                rec = orjson.loads(line)
                rec["bucket"] = parts["tenant_id"]
                rec["ingest_date"] = parts["date"]
                out.append(rec)
    return sorted(out, key=lambda r: (r["source"], r["line"]))


def reason_codes(rec: dict[str, Any]) -> list[str]:
    return [r["code"] for r in rec["reasons"]]


def lake_files(lake: Path | str, sub: str = "") -> list[Path]:
    root = Path(lake, sub) if sub else Path(lake)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """For CLI tests: no ERP_* variables, and tmp_path as the working directory
    (so no stray erp.yaml or tenants.yaml is picked up)."""
    import os

    for k in list(os.environ):
        if k.startswith("ERP_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def browser() -> Any:
    """One headless Chromium for the whole run: Playwright's sync API allows one
    running instance per thread, so every browser test shares this one."""
    from browser import launch, start_playwright

    playwright = start_playwright()
    try:
        chromium = launch(playwright)
    except BaseException:
        playwright.stop()
        raise
    yield chromium
    chromium.close()
    playwright.stop()
