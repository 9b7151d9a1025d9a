"""The dedup index: which event ids each tenant already has.

Keys are the 128-bit xxh3 hash of ``event_id`` (16 bytes per event), kept per
tenant under ``_state/dedup/tenant_id=<t>/<commit>.parquet`` and written in the
same atomic commit as the events they describe. Memory grows with the number
of events already stored for the tenants a run touches (16 bytes each), not
with the input. ``erp compact`` merges the per-commit files.
"""

from __future__ import annotations

import posixpath

import polars as pl
import pyarrow as pa

from erp.core.lake import Commit, Lake
from erp.core.tenants import tenant_partition

DEDUP_DIR = "dedup"


class DedupIndex:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._keys: dict[str, pl.Series] = {}

    def _dir(self, tenant: str) -> str:
        return self.lake.state(DEDUP_DIR, tenant_partition(tenant))

    def keys(self, tenant: str) -> pl.Series:
        if tenant not in self._keys:
            files = self.lake.list_files(self._dir(tenant), ".parquet")
            if files:
                import pyarrow.parquet as pq

                tables = [pq.read_table(f, filesystem=self.lake.fs, columns=["_key"]) for f in files]
                s = pl.from_arrow(pa.concat_tables(tables).column("_key"))
                assert isinstance(s, pl.Series)
                self._keys[tenant] = s.rename("_key")
            else:
                self._keys[tenant] = pl.Series("_key", [], dtype=pl.Binary)
        return self._keys[tenant]

    def filter_new(self, df: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
        """Drop rows whose (tenant, key) is already stored or appeared earlier
        in ``df`` (first occurrence wins). Returns the kept rows and the count
        of duplicates per tenant."""
        dups: dict[str, int] = {}
        kept = []
        for (tenant,), part in df.partition_by("tenant_id", as_dict=True, maintain_order=True).items():
            existing = self.keys(tenant)
            mask = pl.col("_key").is_first_distinct()
            if existing.len():
                mask = mask & ~pl.col("_key").is_in(existing.implode())
            new = part.filter(mask)
            if new.height != part.height:
                dups[tenant] = part.height - new.height
            kept.append(new)
        out = pl.concat(kept) if kept else df.clear()
        return out, dups

    def stage(self, commit: Commit, tenant: str, keys: pl.Series) -> None:
        rel = posixpath.join("_state", DEDUP_DIR, tenant_partition(tenant), f"{commit.commit_id}.parquet")
        commit.write_parquet(rel, pa.table({"_key": keys.to_arrow().cast(pa.binary(16))}))

    def add(self, tenant: str, keys: pl.Series) -> None:
        self._keys[tenant] = pl.concat([self.keys(tenant), keys.rename("_key").cast(pl.Binary)])
