"""Ad-hoc SQL over one tenant's events (``erp query``).

DuckDB gets one view, ``events``: a PyArrow dataset over exactly the tenant's
part files (paths from ``tenant_partition()``). Then DuckDB's own file access is
switched off entirely, spilling is disabled and the configuration locked.
``read_parquet`` of another folder, ``glob``, ``COPY``, ``ATTACH``,
``INSTALL``/``LOAD`` and ``SET`` all fail, so no other tenant's data is reachable.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from erp.core.errors import InputError
from erp.core.events import EVENT_SCHEMA
from erp.core.lake import Lake
from erp.core.rollup import event_files
from erp.core.tenants import validate_tenant_id

class QueryError(InputError):
    """The SQL failed (syntax, unknown column, a forbidden file or setting)."""


@dataclass
class QueryResult:
    tenant_id: str
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    truncated: bool

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "columns": self.columns, "types": self.types,
                "rows": self.rows, "row_count": len(self.rows), "truncated": self.truncated}


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(lake: Lake, tenant: str) -> duckdb.DuckDBPyConnection:
    """A locked-down connection whose only data is the ``events`` view of ``tenant``.

    The view is a PyArrow dataset over exactly the tenant's part files, registered
    with DuckDB; DuckDB itself is then allowed no file system access at all (not
    even to those files, so no statement can overwrite them)."""
    validate_tenant_id(tenant)
    found = event_files(lake, tenant)
    files = [p for d in sorted(found) for p, _ in found[d]]
    schema = pa.schema(list(EVENT_SCHEMA) + [("tenant_id", pa.string()), ("date", pa.date32())])
    if files:
        part = ds.partitioning(pa.schema([("tenant_id", pa.string()), ("date", pa.date32())]), flavor="hive")
        data = ds.dataset(files, format="parquet", filesystem=lake.fs, partitioning=part,
                          partition_base_dir=lake.events_dir(), schema=schema)
    else:
        data = ds.dataset(schema.empty_table())
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    con.register("events", data)
    con.execute("SET allowed_directories=[]")
    con.execute("SET allowed_paths=[]")
    con.execute("SET temp_directory=''")
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")
    return con


def run_query(lake: Lake, tenant: str, sql: str, *, limit: int = 1000) -> QueryResult:
    con = connect(lake, tenant)
    try:
        cur = con.execute(sql)
        if cur.description is None:
            return QueryResult(tenant, [], [], [], False)
        cols = [d[0] for d in cur.description]
        types = [str(d[1]) for d in cur.description]
        rows = cur.fetchmany(limit + 1)
    except duckdb.Error as exc:
        raise QueryError(f"the query failed: {str(exc).splitlines()[0]}",
                         hint="the only table is `events` (erp query --help); files, settings, "
                              "ATTACH and COPY are not available") from exc
    finally:
        con.close()
    truncated = len(rows) > limit
    return QueryResult(tenant, cols, types, [[_json(v) for v in r] for r in rows[:limit]], truncated)


def _json(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        if isinstance(v, dt.datetime) and v.tzinfo is not None:
            return v.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    return v
