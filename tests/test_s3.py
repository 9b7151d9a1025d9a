"""The same lake on S3: input from s3:// URLs and the lake itself in a bucket,
against a real S3-compatible HTTP server (moto's threaded server on 127.0.0.1)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest

from erp.core.catalog import catalog
from erp.core.config import load_config
from erp.core.ingest import ingest
from erp.core.lake import Lake

NOW = datetime(2026, 10, 15, tzinfo=timezone.utc)

moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    import boto3

    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    client.create_bucket(Bucket="erp-test")
    yield {"url": url, "client": client,
           "opts": {"endpoint_url": url, "key": "test", "secret": "test", "client_kwargs": {"region_name": "us-east-1"}}}
    srv.stop()


def _lines(n: int, tenant: str = "acme") -> bytes:
    out = []
    for i in range(n):
        out.append(json.dumps({"event_id": f"e{i}", "tenant_id": tenant, "event_type": "page_view",
                               "timestamp": f"2026-10-0{1 + i % 3}T12:00:00Z", "user_id": f"u{i % 7}",
                               "properties": {"page_url": f"https://a.example.com/p{i % 5}?x=1"}}))
    out.append("this line is not json")
    return ("\n".join(out) + "\n").encode()


def test_ingest_from_and_into_s3(s3, tmp_path):
    s3["client"].put_object(Bucket="erp-test", Key="raw/a.ndjson", Body=_lines(40))
    cfg = load_config(None, flags={"lake": "s3://erp-test/lake", "storage_options": s3["opts"]}, env={}, cwd=tmp_path)

    first = ingest(cfg, ["s3://erp-test/raw/"], now=NOW, workers=1)
    assert (first.accepted, first.rejected, first.duplicates) == (40, 1, 0)

    lake = Lake("s3://erp-test/lake", s3["opts"])
    keys = lake.fs.find("erp-test/lake")
    assert any("/events/tenant_id=acme/date=2026-10-01/" in k for k in keys)
    assert any("/_rejected/tenant_id=_invalid/" in k for k in keys)
    assert not any("/_staging/" in k or "/_state/commits/" in k for k in keys)
    assert catalog(lake).events == 40

    # the lake reads back the same events, through fsspec, with the partition columns
    files = [f"s3://{k}" for k in keys if k.endswith(".parquet") and "/events/" in k]
    df = pl.concat([pl.read_parquet(f, storage_options={"endpoint_url": s3["url"], "aws_access_key_id": "test",
                                                        "aws_secret_access_key": "test", "aws_region": "us-east-1"},
                                    hive_partitioning=True) for f in files])
    assert sorted(df["event_id"].to_list()) == sorted(f"e{i}" for i in range(40))
    assert set(df["page_path"].to_list()) == {f"/p{i}" for i in range(5)}

    # a cron re-run skips the finished object; the same events under another key add nothing
    again = ingest(cfg, ["s3://erp-test/raw/a.ndjson"], now=NOW, workers=1)
    assert [s.status for s in again.sources] == ["skipped"] and again.accepted == 0
    s3["client"].put_object(Bucket="erp-test", Key="raw2/copy.ndjson", Body=_lines(40))
    copy = ingest(cfg, ["s3://erp-test/raw2/copy.ndjson"], now=NOW, workers=1)
    assert (copy.accepted, copy.duplicates) == (0, 40)
    assert catalog(lake).events == 40
