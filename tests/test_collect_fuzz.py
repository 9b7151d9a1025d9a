"""Fuzz the collector from its own OpenAPI description (schemathesis, bounded):
whatever a client sends, the answer is never a 5xx and the server keeps running."""

from __future__ import annotations

import os

import httpx
import pytest

try:
    import schemathesis
except ImportError:  # pragma: no cover - depends on the environment
    _msg = "needs schemathesis: pip install -e '.[test]' (or pip install schemathesis)"
    if os.environ.get("CI") == "true":
        pytest.fail(_msg, pytrace=False)
    pytest.skip(_msg, allow_module_level=True)
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from collect_support import KEYS, ThreadCollector, write_project  # noqa: E402


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory):
    c = ThreadCollector(write_project(tmp_path_factory.mktemp("fuzz") / "proj")).start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def api_schema(collector: ThreadCollector):
    return schemathesis.openapi.from_url(collector.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_5xx_from_any_generated_request(case, collector: ThreadCollector) -> None:
    # authenticated, so generated bodies get past the key check into parsing and spooling
    case.call_and_validate(headers={"Authorization": f"Bearer {KEYS['acme']}"}, checks=[not_a_server_error])


def test_still_healthy_after_fuzzing(collector: ThreadCollector) -> None:
    assert httpx.get(collector.url + "/healthz").json()["status"] == "ok"
    assert 'status="500"' not in httpx.get(collector.url + "/metrics").text
