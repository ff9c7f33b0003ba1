"""The fleet tool against a hub as strict as IoT Hub: throttles, gateways' twins, the
configuration limit, and content that a hub may merge instead of replace."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.fleet import FleetError, deploy, prune
from gateway.fleet.errors import HubRefused
from gateway.fleet.hub import RetryPolicy, ServiceHub
from gateway.fleet.rollout import Package, Plan, State
from gateway.fleet.status import collect
from simulators.hub import HubEmulator
from simulators.hub.throttling import Operation
from tests.gateway.fleet.conftest import SUBNET, mcu, seed
from tests.gateway.fleet.fake_hub import FakeHub
from tests.simulators.hub_fixtures import start_hub

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SHA = "ab" * 32


def _package(version: str, window: str | None = None) -> Package:
    return Package(version, f"https://images.example/fw-{version}.mcufw", SHA, 1000, window)


@pytest.fixture
def paced_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """IoT Hub's real ratios, 4 times faster: a query bucket of 20, one more every 0.75 s."""
    emulator = start_hub(tmp_path / "hub", SUBNET, time_scale=4.0)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.facts.ca_path)
    monkeypatch.setenv("NO_PROXY", "*")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def real_rate_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """IoT Hub's real rate, unscaled: one query token every 3 s, so a spent bucket stays
    spent while one request crosses a loaded machine."""
    emulator = start_hub(tmp_path / "hub", SUBNET, time_scale=1.0)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.facts.ca_path)
    monkeypatch.setenv("NO_PROXY", "*")
    try:
        yield emulator
    finally:
        emulator.stop()


def _spend_query_budget(emulator: HubEmulator) -> None:
    """Another client used up this minute's queries (so no test depends on its own speed)."""
    emulator.call(lambda s: [s.throttle.take(Operation.QUERY, s.timing.now()) for _ in range(20)])


def test_throttled_queries_are_retried_honouring_retry_after(paced_hub: HubEmulator) -> None:
    paced_hub.create_device("d1")
    hub = ServiceHub(paced_hub.facts.service_connection_string, paced_hub.facts.ca_path)
    _spend_query_budget(paced_hub)
    for _ in range(3):  # queries are POSTs: the SDK would not retry one
        assert hub.query("SELECT deviceId FROM devices") == [{"deviceId": "d1"}]
    refused = paced_hub.call(lambda s: s.throttle.refused.get(Operation.QUERY, 0))
    assert refused >= 1
    assert hub.retry.retried[429] == refused


def test_without_a_retry_budget_the_throttle_reaches_the_caller(
    real_rate_hub: HubEmulator,
) -> None:
    hub = ServiceHub(
        real_rate_hub.facts.service_connection_string,
        real_rate_hub.facts.ca_path,
        RetryPolicy(budget=0),
    )
    _spend_query_budget(real_rate_hub)
    with pytest.raises(HubRefused) as refused:
        hub.query("SELECT deviceId FROM devices")
    assert refused.value.status == 429 and "ThrottlingException" not in str(refused.value)


def test_gateways_own_twins_are_not_mcus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = start_hub(tmp_path / "hub", SUBNET)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.facts.ca_path)
    try:
        seed(emulator, {
            "m1": ({"group": "a"}, mcu("vmcu-f4", "1.0.0", "current")),
            "m2": ({"group": "a"}, mcu("vmcu-f4", "1.0.0", "error")),
            "gw-1": ({"group": "a"}, {"attachedCount": 2, "mcus": {"m1": True, "m2": True}}),
            "gw-2": ({}, {"attachedCount": 0}),
        })  # fmt: skip
        hub = ServiceHub(emulator.facts.service_connection_string, emulator.facts.ca_path)
        status = collect(hub)
        assert status.total == 2
        assert status.by_status == {"current": 1, "error": 1}
        assert status.by_group == {"a": {"current": 1, "error": 1}}
        assert deploy.count(hub, "tags.[[group]] = 'a'") == 2
    finally:
        emulator.stop()


# ------------------------------------------------------------------ the configuration limit


def _release(hub: FakeHub, model: str, version: str, limits: deploy.Limits) -> None:
    """One three-ring rollout to one model, run to its end."""
    target = f"properties.reported.mcu.model = '{model}'"
    name = f"{model}-{version.replace('.', '-')}"
    plan = Plan(name, _package(version), target, ("canary", "pilot", "all"))
    deploy.create(hub, plan, NOW, None, limits)
    for _ in range(6):
        hub.finish(version)
        if deploy.step(hub, plan.name, NOW, limits).rollout.state is State.DONE:
            return
    raise AssertionError(f"{plan.name} did not finish")


def test_successive_releases_never_hit_the_limit_and_prune_keeps_every_firmware() -> None:
    hub = FakeHub()
    models = [f"m{i}" for i in range(4)]
    for model in models:
        for n in range(3):
            hub.add(f"{model}-{n}", model=model, ring=("canary", "pilot", "x")[n])
    hub.evaluate()
    removed: list[prune.Removal] = []
    # 4 models x 2 kept rollouts x (ring 0 + last ring) + 3 rings of the running one
    limits = deploy.Limits(configurations=19, keep=2, report=removed.append)
    for release in range(1, 6):
        for model in models:
            before = {d: hub.desired_version(d) for d in hub.twins}
            _release(hub, model, f"{release}.0.0", limits)
            assert len(hub.configurations()) <= 19
            after = {d: hub.desired_version(d) for d in hub.twins}
            changed = {d for d in hub.twins if before[d] != after[d]}
            assert changed <= {d for d in hub.twins if d.startswith(model)}  # pruning changed none
            assert all(v == f"{release}.0.0" for d, v in after.items() if d.startswith(model))
    assert removed, "the limit was reached, so something was pruned"
    assert all("applies" in r.reason for r in removed)


def test_prune_plan_shows_what_and_why_and_keeps_what_applies() -> None:
    hub = FakeHub()
    for n in range(3):
        hub.add(f"d{n}", model="f4", ring=("canary", "pilot", "x")[n])
    hub.evaluate()
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        _release(hub, "f4", version, deploy.Limits())
    plan = prune.plan(hub.configurations(), keep=2)
    ids = [r.config.id for r in plan]
    # The oldest rollout goes whole; the kept ones lose only their middle rings.
    assert ids[:3] == ["f4-1-0-0-r1", "f4-1-0-0-r2", "f4-1-0-0-r0"]  # its plan last
    assert set(ids[3:]) == {"f4-2-0-0-r1", "f4-3-0-0-r1"}
    assert "older than the 2 kept" in plan[0].reason
    with pytest.raises(FleetError, match="--keep must be at least 1"):
        prune.plan(hub.configurations(), keep=0)


@pytest.mark.parametrize("merge", [False, True])
def test_a_merging_hub_keeps_no_key_of_an_earlier_rollout(merge: bool) -> None:
    hub = FakeHub(content_merge=merge)
    hub.add("d1", model="f4")
    hub.evaluate()
    target = "properties.reported.mcu.model = 'f4'"
    deploy.create(hub, Plan("a", _package("1.0.0", window="01:00-05:00"), target), NOW)
    assert hub.twins["d1"].desired["firmware"]["installWindow"]["start"] == "01:00"
    deploy.create(hub, Plan("b", _package("2.0.0"), target), NOW)
    fw = hub.twins["d1"].desired["firmware"]
    assert fw["fwVersion"] == "2.0.0" and "installWindow" not in fw and "retry" not in fw


def test_prune_keeps_an_old_rollout_whose_successor_was_cancelled() -> None:
    """A cancelled newer rollout does not cover the target: the older one still may apply."""
    hub = FakeHub()
    for n in range(3):
        hub.add(f"d{n}", model="f4", ring=("canary", "pilot", "x")[n])
    hub.evaluate()
    _release(hub, "f4", "1.0.0", deploy.Limits())
    plan = Plan("f4-2-0-0", _package("2.0.0"), "properties.reported.mcu.model = 'f4'",
                ("canary", "pilot", "all"))  # fmt: skip
    deploy.create(hub, plan, NOW)
    deploy.cancel(hub, "f4-2-0-0")
    # Metrics from the evaluation before the cancel said f4-1 applied to no twin;
    # f4-1 still stays: nothing done covers its target.
    stale = [
        replace(c, system_metrics={**c.system_metrics, "appliedCount": 0})
        if c.id.startswith("f4-1") else c
        for c in hub.configurations()
    ]  # fmt: skip
    ids = {r.config.id for r in prune.plan(stale, keep=1)}
    assert ids <= {"f4-1-0-0-r1"}


class _FakeTime:
    """A clock that moves only when the retry loop sleeps."""

    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_an_unreachable_hub_is_retried_with_backoff_then_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.net import addr

    monkeypatch.setenv("NO_PROXY", "*")
    fake = _FakeTime()
    policy = RetryPolicy(unreachable_budget=30.0, sleep=fake.sleep, clock=fake.clock)
    host = addr(12, 250)  # nothing listens there
    cs = f"HostName={host}:9;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0"
    hub = ServiceHub(cs, None, policy)
    with pytest.raises(FleetError, match="cannot reach IoT Hub"):
        hub.query("SELECT deviceId FROM devices")
    assert policy.retried[0] == len(fake.slept) >= 3
    assert fake.slept[2] > fake.slept[0]  # backing off
    assert 30.0 <= fake.now < 30.0 + 60.0


def test_a_certificate_the_ca_does_not_vouch_for_is_not_retried(
    paced_hub: HubEmulator, tmp_path: Path
) -> None:
    from simulators.hub.certs import ensure_certs

    other = ensure_certs(tmp_path / "other-ca", "127.0.0.1").ca_cert
    fake = _FakeTime()
    policy = RetryPolicy(sleep=fake.sleep, clock=fake.clock)
    hub = ServiceHub(paced_hub.facts.service_connection_string, str(other), policy)
    with pytest.raises(FleetError, match="cannot reach IoT Hub"):
        hub.query("SELECT deviceId FROM devices")
    assert fake.slept == []


def test_fleet_prune_command_shows_what_and_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import fleet as cli
    from gateway.cli import main

    hub = FakeHub()
    for n in range(3):
        hub.add(f"d{n}", model="f4", ring=("canary", "pilot", "x")[n])
    hub.evaluate()
    for version in ("1.0.0", "2.0.0"):
        _release(hub, "f4", version, deploy.Limits())
    monkeypatch.setattr(cli, "_hub", lambda _args: hub)
    before = {d: hub.desired_version(d) for d in hub.twins}

    assert main(["fleet", "prune", "--dry-run", "--keep", "1"]) == 0
    out = capsys.readouterr().out
    assert "would delete f4-1-0-0-r0: rollout f4-1-0-0 (done, 1.0.0) is older than" in out
    assert "would delete f4-2-0-0-r1: ring pilot of finished rollout f4-2-0-0" in out
    assert "4 of 6 configurations would be deleted; 6 remain" in out
    assert len(hub.configurations()) == 6

    assert main(["fleet", "prune", "--keep", "1"]) == 0
    out = capsys.readouterr().out
    assert "deleted f4-1-0-0-r0" in out and "4 of 6 configurations deleted; 2 remain" in out
    assert [c.id for c in hub.configurations()] == ["f4-2-0-0-r0", "f4-2-0-0-r2"]
    hub.evaluate()
    assert {d: hub.desired_version(d) for d in hub.twins} == before

    assert main(["fleet", "prune"]) == 0
    assert "nothing to prune" in capsys.readouterr().out
