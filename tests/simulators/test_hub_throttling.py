"""Throttles at the documented rates, 429 with Retry-After, and query views that trail the twins."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from simulators.hub.throttling import Operation, Throttle, Tier, rates
from tests.net import subnet
from tests.simulators.hub_fixtures import start_hub

SUBNET = subnet(13)


def test_rates_per_tier_and_unit() -> None:
    s1 = rates(Tier.S1, 2)
    assert s1[Operation.QUERY].capacity == pytest.approx(40)  # 20/min/unit
    assert s1[Operation.CONFIGURATION].capacity == pytest.approx(40)  # 20/min/unit
    assert s1[Operation.TWIN_UPDATE].per_second == 50  # per hub on S1
    assert rates(Tier.S3, 1)[Operation.QUERY].capacity == pytest.approx(1000)
    assert rates(Tier.S2, 20)[Operation.TWIN_READ].per_second == 200
    assert rates(Tier.F1, 5)[Operation.QUERY].capacity == pytest.approx(20)  # one unit


def test_a_bucket_admits_its_minute_then_one_every_three_seconds() -> None:
    throttle = Throttle(Tier.S1, 1)
    assert all(throttle.take(Operation.QUERY, 0.0) == 0.0 for _ in range(20))
    assert throttle.take(Operation.QUERY, 0.0) == pytest.approx(3.0)
    assert throttle.take(Operation.QUERY, 3.0) == 0.0
    assert throttle.take(Operation.CONFIGURATION, 3.0) == 0.0  # buckets are separate


def _registry(hub: Any) -> Any:
    from azure.iot.hub import IoTHubRegistryManager

    return IoTHubRegistryManager.from_connection_string(hub.facts.service_connection_string)


def test_the_twenty_first_query_in_a_minute_gets_429_with_retry_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.iot.hub.models import QuerySpecification
    from msrest.exceptions import HttpOperationError

    hub = start_hub(tmp_path / "hub", SUBNET, time_scale=1.0)  # IoT Hub's own pace
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", hub.facts.ca_path)
    try:
        registry = _registry(hub)
        spec = QuerySpecification(query="SELECT deviceId FROM devices")
        registry.protocol.query.get_twins(spec, None, None, None, True)
        # Nineteen more in the same minute (spent in-process, so the test's own
        # speed cannot refill the bucket meanwhile), then the twenty-first.
        hub.call(lambda s: [s.throttle.take(Operation.QUERY, s.timing.now()) for _ in range(19)])
        with pytest.raises(HttpOperationError) as throttled:
            registry.protocol.query.get_twins(spec, None, None, None, True)
        response = throttled.value.response
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 3
        assert "ThrottlingException" in response.text
    finally:
        hub.stop()


def test_queries_trail_the_twins_by_the_query_lag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.iot.hub.models import QuerySpecification, Twin

    hub = start_hub(tmp_path / "hub", SUBNET, time_scale=60.0)  # lag: one real second
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", hub.facts.ca_path)
    try:
        registry = _registry(hub)
        hub.create_device("d1")
        spec = QuerySpecification(query="SELECT deviceId FROM devices WHERE tags.ring = 'x'")

        def found() -> list[Any]:
            rows: list[Any] = registry.protocol.query.get_twins(spec, None, None, None, True)
            return rows.response.json()  # type: ignore[attr-defined]

        assert found() == []
        registry.update_twin("d1", Twin(tags={"ring": "x"}), "*")
        tagged = time.monotonic()
        assert found() == []  # the view is older than the tag
        deadline = tagged + 10
        while not found():
            assert time.monotonic() < deadline, "the tag never reached the query view"
            time.sleep(0.1)
        assert time.monotonic() - tagged >= 0.5
    finally:
        hub.stop()
