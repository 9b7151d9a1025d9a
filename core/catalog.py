"""What the lake holds: per tenant, partitions, files, events and bytes,
read from Parquet footers (no data pages are read)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq

from erp.core.lake import Lake


@dataclass
class TenantCatalog:
    tenant_id: str
    partitions: int = 0
    files: int = 0
    events: int = 0
    bytes: int = 0
    first_date: str | None = None
    last_date: str | None = None
    rejected_files: int = 0


@dataclass
class LakeCatalog:
    lake: str
    tenants: dict[str, TenantCatalog] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(t.events for t in self.tenants.values())

    def to_dict(self) -> dict:
        return {"lake": self.lake, "events": self.events,
                "tenants": {k: vars(v) for k, v in sorted(self.tenants.items())}}


def catalog(lake: Lake, tenant: str | None = None) -> LakeCatalog:
    out = LakeCatalog(lake.url)
    for t, day in lake.event_partitions(tenant):
        tc = out.tenants.setdefault(t, TenantCatalog(t))
        tc.partitions += 1
        tc.first_date = min(tc.first_date or day, day)
        tc.last_date = max(tc.last_date or day, day)
        for f in lake.list_files(lake.events_dir(t, day), ".parquet"):
            tc.files += 1
            tc.bytes += lake.fs.size(f)
            with lake.fs.open(f, "rb") as fh:
                tc.events += pq.ParquetFile(fh).metadata.num_rows
    rej = lake.path("_rejected")
    for f in lake.list_files(rej, ".ndjson"):
        part = f[len(rej):].split("/")
        bucket = next((p.split("=", 1)[1] for p in part if p.startswith("tenant_id=")), None)
        if bucket and (tenant is None or bucket == tenant):
            out.tenants.setdefault(bucket, TenantCatalog(bucket)).rejected_files += 1
    return out
