"""Rollout logic over an in-memory hub: rings, thresholds, halts, resume, bad input."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.fleet import FleetError, deploy
from gateway.fleet.rollout import (
    Finish,
    Halt,
    Package,
    Plan,
    RingStatus,
    Rollout,
    StartRing,
    State,
    Wait,
    decide,
    load,
)
from tests.gateway.fleet.fake_hub import FakeHub

# The hub stamps configurations and the fake devices stamp errors with the real
# clock, so decisions are made at the real time too.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


SHA = "ab" * 32
V2 = Package("2.0.0", "https://images.example/fw-2.0.0.mcufw", SHA, 1000)


def fleet(n_canary: int = 2, n_pilot: int = 3, n_rest: int = 5) -> FakeHub:
    hub = FakeHub()
    i = 0
    for ring, n in (("canary", n_canary), ("pilot", n_pilot), (None, n_rest)):
        for _ in range(n):
            tags = {"group": "plant-a"} | ({"ring": ring} if ring else {})
            hub.add(f"mcu-{i:03d}", **tags)
            i += 1
    hub.add("other-000", group="plant-b", ring="canary")
    hub.evaluate()
    return hub


def plan(**kw: object) -> Plan:
    args: dict[str, object] = {
        "name": "v2", "package": V2, "target": "tags.[[group]] = 'plant-a'",
        "rings": ("canary", "pilot", "all"),
    }  # fmt: skip
    return Plan(**(args | kw))  # type: ignore[arg-type]


def desired(hub: FakeHub) -> dict[str, str | None]:
    return {d: hub.desired_version(d) for d in hub.twins}


def test_rings_start_one_after_another_and_finish() -> None:
    hub = fleet()
    deploy.create(hub, plan(), NOW)
    got = desired(hub)
    assert {d for d, v in got.items() if v == "2.0.0"} == {"mcu-000", "mcu-001"}
    # Nothing finished yet: the canary ring waits.
    assert isinstance(deploy.step(hub, "v2", NOW).decision, Wait)
    hub.finish("2.0.0")
    result = deploy.step(hub, "v2", NOW)
    assert result.decision == StartRing(1, "ring 1 (canary) passed: 2 of 2 current")
    assert sum(v == "2.0.0" for v in desired(hub).values()) == 5
    hub.finish("2.0.0")
    assert isinstance(deploy.step(hub, "v2", NOW).decision, StartRing)
    assert hub.desired_version("other-000") is None  # outside the target
    hub.finish("2.0.0")
    result = deploy.step(hub, "v2", NOW)
    assert isinstance(result.decision, Finish)
    assert result.rollout.state is State.DONE
    ring = result.rollout.current_ring
    assert ring is not None and (ring.applied, ring.current) == (10, 10)
    # IoT Hub keeps applying the last ring: an MCU that joins the group later is updated.
    hub.add("mcu-late", group="plant-a")
    hub.evaluate()
    assert hub.desired_version("mcu-late") == "2.0.0"


def test_a_breach_halts_the_rollout_and_says_why() -> None:
    hub = fleet()
    deploy.create(hub, plan(max_failure_rate=0.2), NOW)
    hub.finish("2.0.0", fail={"mcu-001"})
    result = deploy.step(hub, "v2", NOW)
    assert result.decision == Halt("ring 1 (canary): 1 of 2 MCUs failed (50% > 20% allowed)")
    assert result.rollout.state is State.HALTED
    # A halted rollout starts no new ring, however often it is stepped.
    assert isinstance(deploy.step(hub, "v2", NOW).decision, Wait)
    assert sum(v == "2.0.0" for v in desired(hub).values()) == 2


def test_failures_within_the_threshold_pass_with_min_success() -> None:
    hub = fleet(n_canary=4)
    deploy.create(hub, plan(max_failure_rate=0.25, min_success=3), NOW)
    hub.finish("2.0.0", fail={"mcu-000"})
    assert isinstance(deploy.step(hub, "v2", NOW).decision, StartRing)


def test_state_lives_in_the_hub_so_a_new_runner_carries_on() -> None:
    hub = fleet()
    deploy.create(hub, plan(), NOW)
    hub.finish("2.0.0")
    # A second machine: same command, nothing but the hub in common.
    again = deploy.create(hub, plan(), NOW)
    assert again.state is State.RUNNING and len(again.rings) == 1
    assert isinstance(deploy.step(hub, "v2", NOW).decision, StartRing)
    loaded = load("v2", hub.configurations())
    assert loaded is not None and loaded.plan == plan() and len(loaded.rings) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"rings": ("canary", "nosuch", "all")},
            "unknown group: no MCU in the target has tags.ring = 'nosuch'",
        ),
        ({"target": "tags.[[group]] = 'nowhere'"}, "--target matches no MCU"),
        ({"target": "tags.[[group]] = = 'x'"}, "IoT Hub refuses the query"),
        ({"target": "tags.[[group]] IN 'x'"}, "IoT Hub refuses the query"),
    ],
)
def test_bad_input_creates_nothing(change: dict[str, object], message: str) -> None:
    hub = fleet()
    with pytest.raises(FleetError, match=message.replace("(", r"\(")):
        deploy.create(hub, plan(**change), NOW)
    assert hub.writes == 0 and hub.configurations() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_failure_rate": 1.5}, "must be within 0-1"),
        ({"max_failure_rate": -0.1}, "must be within 0-1"),
        ({"name": "Bad Name"}, "rollout name"),
        ({"rings": ("1%", "50%", "90%")}, "--percent must rise and end at 100"),
        ({"rings": ("a", "a")}, "names a ring twice"),
        ({"package": Package("2", "ftp://x/y", SHA, 1)}, "not an http"),
        ({"package": Package("2", "https://x/y", "zz", 1)}, "--check-value"),
    ],
)
def test_plan_refuses_bad_values(change: dict[str, object], message: str) -> None:
    with pytest.raises(FleetError, match=message):
        plan(**change)


def test_duplicate_name_with_other_settings_is_refused() -> None:
    hub = fleet()
    deploy.create(hub, plan(), NOW)
    writes = hub.writes
    other = Package("3.0.0", V2.uri, SHA, 1000)
    with pytest.raises(FleetError, match="already exists with other settings"):
        deploy.create(hub, plan(package=other), NOW)
    assert hub.writes == writes


def test_a_failing_package_uri_creates_nothing() -> None:
    hub = fleet()

    def check(_package: Package) -> None:
        raise FleetError("package URI fails: HTTP 404 Not Found")

    with pytest.raises(FleetError, match="404"):
        deploy.create(hub, plan(), NOW, check)
    assert hub.configurations() == []


def test_percent_rings_pick_a_stable_share_and_end_with_the_whole_target() -> None:
    hub = FakeHub()
    for i in range(40):
        hub.add(f"d{i:02d}", group="g")
    hub.evaluate()
    p = plan(target="tags.[[group]] = 'g'", rings=("10%", "50%", "100%"))
    deploy.create(hub, p, NOW)
    hub.evaluate()  # the tags came after the configuration: the next pass sees them
    first = {d for d, v in desired(hub).items() if v == "2.0.0"}
    assert len(first) == 4 and first == set(p.percent_members(sorted(hub.twins), 0))
    hub.finish("2.0.0")
    deploy.step(hub, "v2", NOW)
    hub.evaluate()
    second = {d for d, v in desired(hub).items() if v == "2.0.0"}
    assert len(second) == 20 and first < second
    hub.finish("2.0.0")
    deploy.step(hub, "v2", NOW)
    assert all(v == "2.0.0" for v in desired(hub).values())


def test_a_scheduled_rollout_targets_nothing_until_its_start() -> None:
    hub = fleet()
    start = iso(NOW + dt.timedelta(hours=1))
    deploy.create(hub, plan(start=start), NOW)
    assert all(v is None for v in desired(hub).values())
    assert deploy.step(hub, "v2", NOW).decision == Wait(f"scheduled to start at {start}")
    later = NOW + dt.timedelta(hours=1, seconds=1)
    result = deploy.step(hub, "v2", later)
    assert result.rollout.state is State.RUNNING
    assert sum(v == "2.0.0" for v in desired(hub).values()) == 2


def test_window_goes_into_the_desired_firmware() -> None:
    hub = fleet()
    deploy.create(hub, plan(package=Package("2.0.0", V2.uri, SHA, 1000, window="01:00-04:30")), NOW)
    fw = hub.twins["mcu-000"].desired["firmware"]
    assert fw["installWindow"] == {"start": "01:00", "end": "04:30", "tz": "UTC"}


def test_retry_retargets_only_failed_mcus_with_a_new_desired_state() -> None:
    hub = fleet()
    deploy.create(hub, plan(max_failure_rate=0.6), NOW)
    hub.finish("2.0.0", fail={"mcu-001"})
    config, devices = deploy.retry(hub, "v2")
    assert config.id == "v2-retry1"
    assert devices == ["mcu-001"]
    retried = hub.twins["mcu-001"].desired["firmware"]
    assert retried["fwPackageURI"] == V2.uri  # the same package, explicitly retried
    assert retried["retry"] == 1
    assert "retry" not in hub.twins["mcu-000"].desired["firmware"]
    hub.report("mcu-001", fwUpdateStatus="current", currentFwVersion="2.0.0")
    with pytest.raises(FleetError, match="no failed MCU"):
        deploy.retry(hub, "v2")


def test_rollback_deploys_the_previous_rollouts_package_to_reached_mcus() -> None:
    hub = fleet()
    v1 = Package("1.5.0", "https://images.example/fw-1.5.0.mcufw", "cd" * 32, 900)
    deploy.create(hub, plan(name="v15", package=v1, rings=("all",)), NOW)
    hub.finish("1.5.0")
    assert isinstance(deploy.step(hub, "v15", NOW).decision, Finish)
    deploy.create(hub, plan(), NOW)
    hub.finish("2.0.0", fail={"mcu-001"})
    config, devices = deploy.rollback(hub, "v2")
    assert config.labels["version"] == "1.5.0"
    assert devices == ["mcu-000", "mcu-001"]
    for d in devices:
        fw = hub.twins[d].desired["firmware"]
        assert (fw["fwVersion"], fw["allowDowngrade"]) == ("1.5.0", True)
    assert hub.desired_version("mcu-005") == "1.5.0"  # never reached: still on the old rollout
    rolled = deploy.get(hub, "v2")
    assert rolled.state is State.ROLLEDBACK
    assert isinstance(deploy.step(hub, "v2", NOW).decision, Wait)
    with pytest.raises(FleetError, match="already rolled back"):
        deploy.rollback(hub, "v2")


def test_rollback_without_an_earlier_rollout_needs_the_package() -> None:
    hub = fleet()
    deploy.create(hub, plan(), NOW)
    with pytest.raises(FleetError, match="give the version with --package-uri"):
        deploy.rollback(hub, "v2")


def test_cancel_keeps_reached_mcus_and_takes_no_new_ones() -> None:
    hub = fleet()
    deploy.create(hub, plan(rings=("all",)), NOW)
    deploy.cancel(hub, "v2")
    assert deploy.get(hub, "v2").state is State.CANCELLED
    hub.add("mcu-late", group="plant-a")
    hub.evaluate()
    assert hub.desired_version("mcu-late") is None
    assert hub.desired_version("mcu-000") == "2.0.0"
    with pytest.raises(FleetError, match="already cancelled"):
        deploy.cancel(hub, "v2")


def test_unknown_rollout_name() -> None:
    with pytest.raises(FleetError, match="no rollout named 'nope'"):
        deploy.step(FakeHub(), "nope", NOW)


def test_decide_waits_for_enough_successes() -> None:
    p = plan(max_failure_rate=0.1)
    ring = RingStatus(0, "canary", "v2-r0", targeted=20, applied=20, current=17, in_progress=2,
                      failed=1)  # fmt: skip
    rollout = Rollout(p, State.RUNNING, "", (ring,), ())
    # 20 MCUs, 10% allowed to fail: 18 successes needed before the next ring.
    assert decide(rollout, NOW) == Wait(
        "ring 1 (canary): 17 of 18 needed successes, 2 in progress, 1 failed"
    )
    done = Rollout(p, State.RUNNING, "", (RingStatus(0, "canary", "v2-r0", 20, 20, 18, 1, 1),), ())
    assert isinstance(decide(done, NOW), StartRing)


def test_percent_tagging_stopped_half_way_is_finished_by_the_next_step() -> None:
    hub = FakeHub()
    for i in range(20):
        hub.add(f"d{i:02d}", group="g")
    p = plan(target="tags.[[group]] = 'g'", rings=("25%", "100%"))
    deploy.create(hub, p, NOW)
    hub.evaluate()
    members = p.percent_members(sorted(hub.twins), 0)
    assert len(members) == 5
    # A crash after the first tag: the other members lost their tag.
    for d in members[1:]:
        hub.set_tags(d, {"fwRollouts": None})
    hub.evaluate()
    # A twin that leaves the ring loses the ring's settings, as IoT Hub removes them.
    assert sum(v == "2.0.0" for v in desired(hub).values()) == 1
    deploy.step(hub, "v2", NOW)
    tagged = hub.query("SELECT deviceId FROM devices WHERE tags.fwRollouts.r_v2 = 0")
    assert sorted(r["deviceId"] for r in tagged) == sorted(members)


def test_large_fixed_sets_are_pinned_with_tags_not_inlined() -> None:
    hub = fleet(n_canary=2, n_pilot=3, n_rest=70)
    v1 = Package("1.5.0", "https://images.example/fw-1.5.0.mcufw", "cd" * 32, 900)
    deploy.create(hub, plan(rings=("all",)), NOW)
    hub.finish("2.0.0")
    config, devices = deploy.rollback(hub, "v2", v1)
    assert len(devices) == 75
    assert config.target_condition == "tags.fwPins.r_v2.rollback = 1"
    assert all(hub.desired_version(d) == "1.5.0" for d in devices)
    hub.add("mcu-late", group="plant-a")  # joins later: not part of the rollback
    hub.evaluate()
    assert hub.desired_version("mcu-late") == "2.0.0"


def test_two_runners_stepping_at_once_do_not_fail() -> None:
    hub = fleet()
    deploy.create(hub, plan(rings=("canary", "all")), NOW)
    hub.finish("2.0.0")
    assert isinstance(deploy.step(hub, "v2", NOW).decision, StartRing)
    hub.finish("2.0.0")
    seen_by_b = hub.configurations()  # machine B reads ...
    assert isinstance(deploy.step(hub, "v2", NOW).decision, Finish)  # ... machine A finishes
    fresh = hub.configurations
    calls = iter([seen_by_b])
    hub.configurations = lambda: next(calls, None) or fresh()  # type: ignore[method-assign]
    # B decides Finish too, from its stale read; IoT Hub refuses its stale etag (412).
    result = deploy.step(hub, "v2", NOW)
    assert result.decision == Wait("another runner changed the rollout meanwhile; re-reading it")
    assert deploy.get(hub, "v2").state is State.DONE


def test_an_earlier_attempts_error_is_not_a_failure_of_a_new_ring() -> None:
    hub = fleet()
    stale = {"code": "DOWNLOAD_FAILED", "message": "old", "phase": "downloading",
             "at": iso(NOW - dt.timedelta(days=1))}  # fmt: skip
    hub.report("mcu-001", fwUpdateStatus="error", error=stale)  # before this rollout
    deploy.create(hub, plan(max_failure_rate=0.0), NOW)
    hub.finish("2.0.0", skip={"mcu-001"})  # mcu-001's gateway waits (an install window, say)
    result = deploy.step(hub, "v2", NOW)
    assert result.decision == Wait(
        "ring 1 (canary): 1 of 2 needed successes, 0 in progress, 0 failed"
    )
    hub.finish("2.0.0", fail={"mcu-001"})  # now it really fails, with a fresh error
    assert isinstance(deploy.step(hub, "v2", NOW).decision, Halt)
