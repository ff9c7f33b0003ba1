"""The HTML report escapes what devices report and draws one bar per ring."""

from __future__ import annotations

import datetime as dt

from gateway.fleet.report import render
from gateway.fleet.status import Failure, FleetStatus

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def status(message: str) -> FleetStatus:
    failure = Failure("m<1>", "gw", "/dev/x", "vmcu-f4", "error", "1.0.0", "2.0.0", "E", "applying",
                      message, "2026-11-29T10:00:00Z")  # fmt: skip
    return FleetStatus(
        total=3, by_model={"vmcu-f4": 3}, by_version={"1.0.0": 3},
        by_status={"current": 2, "error": 1},
        by_ring={"canary": {"current": 1, "error": 1}, "-": {"current": 1}},
        by_group={"-": {"current": 2, "error": 1}},
        versions_by_model={"vmcu-f4": {"1.0.0": 3}}, failures=[failure],
    )  # fmt: skip


def test_device_values_are_escaped() -> None:
    page = render(status("<script>alert(1)</script>"), where="tags.x = '<b>'", now=NOW)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "m&lt;1&gt;" in page and "tags.x = &#x27;&lt;b&gt;&#x27;" in page


def test_one_bar_per_ring_and_untagged_named() -> None:
    page = render(status("x"), where=None, now=NOW)
    assert "Update status per ring" in page
    assert "Update status per group" not in page  # no MCU has a group tag
    assert ">canary<" in page and ">(untagged)<" in page
    # canary: 1 current + 1 error -> two segments of half the bar each
    assert page.count('width="260.0"') >= 2


def test_rollout_section_shows_state_reason_and_rings() -> None:
    from gateway.fleet import deploy
    from gateway.fleet.rollout import Package, Plan, load
    from tests.gateway.fleet.fake_hub import FakeHub

    hub = FakeHub()
    for i in range(4):
        hub.add(f"d{i}", ring="canary" if i < 2 else "x")
    hub.evaluate()
    package = Package("2.0.0", "https://images.example/fw.mcufw", "ab" * 32, 100)
    plan = Plan("v2", package, "properties.reported.mcu.model = 'm1'", ("canary", "all"))
    deploy.create(hub, plan, NOW.now(dt.UTC))
    hub.finish("2.0.0", fail={"d0"})
    deploy.step(hub, "v2", NOW.now(dt.UTC))
    rollout = load("v2", hub.configurations())
    assert rollout is not None
    page = render(status("x"), where=None, now=NOW, rollouts=[rollout])
    assert "Rollouts: 1" in page and "v2: version 2.0.0" in page
    assert "halted: ring 1 (canary): 1 of 2 MCUs failed" in page
    assert (
        "<td>canary</td><td>halted</td><td>2</td><td>2</td><td>1</td><td>0</td><td>1</td>" in page
    )
    assert "<td>all</td><td>not started</td>" in page
    assert "v2 ring 1" in page  # the latest ring's bar
