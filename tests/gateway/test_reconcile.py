"""What the first report after a start says, from the journal and the MCU alone."""

from __future__ import annotations

from firmware.twin import DesiredFirmware
from gateway.journal import HistoryRecord, Outcome, Phase, UpdateRecord
from gateway.reconcile import reconcile

SHA2, SHA3 = "2" * 64, "3" * 64


def _desired(version: str, sha: str) -> DesiredFirmware:
    return DesiredFirmware(version, "https://cdn.example/fw", sha)


def _run(version: str, sha: str, phase: Phase = Phase.APPLYING) -> UpdateRecord:
    return UpdateRecord("0a", version, sha, "https://cdn.example/fw", phase, 4096, 4096, None,
                        1_000_000.0, 1_000_100.0, 1)  # fmt: skip


def _last(outcome: Outcome, code: str | None, sha: str = SHA2) -> HistoryRecord:
    return HistoryRecord("0a", "2.0.0", sha, outcome, Phase.VERIFYING, code, "why", 0, 1,
                         1_000_000.0, 1_000_100.0)  # fmt: skip


def test_a_run_whose_target_already_runs_is_finished_and_settled() -> None:
    state = reconcile(installed="2.0.0", desired=_desired("2.0.0", SHA2), run=_run("2.0.0", SHA2))
    assert state.finish is Outcome.CURRENT
    fw = state.firmware
    assert (fw["fwUpdateStatus"], fw["currentFwVersion"], fw["pendingFwVersion"]) == (
        "current", "2.0.0", None)  # fmt: skip
    assert fw["resumedFrom"] is None and fw["error"] is None
    assert fw["lastFwUpdateStartTime"] == "1970-01-12T13:46:40Z"


def test_a_run_that_will_resume_reports_its_phase_not_current() -> None:
    run = _run("2.0.0", SHA2, Phase.REBOOTING)
    state = reconcile(installed="1.0.0", desired=_desired("2.0.0", SHA2), run=run)
    assert state.finish is None
    assert state.firmware["fwUpdateStatus"] == "rebooting"
    assert state.firmware["pendingFwVersion"] == "2.0.0"
    assert state.firmware["currentFwVersion"] == "1.0.0"
    assert state.firmware["lastFwUpdateEndTime"] is None


def test_a_run_the_desired_state_moved_away_from_is_cancelled() -> None:
    state = reconcile(installed="1.0.0", desired=_desired("3.0.0", SHA3), run=_run("2.0.0", SHA2))
    assert state.finish is Outcome.CANCELLED
    assert state.firmware["fwUpdateStatus"] == "downloading"
    assert state.firmware["pendingFwVersion"] == "3.0.0"


def test_desired_equal_to_installed_is_current_without_error() -> None:
    state = reconcile(installed="1.0.0", desired=_desired("1.0.0", SHA2), run=None)
    assert state.firmware["fwUpdateStatus"] == "current"
    assert state.firmware["error"] is None and state.firmware["pendingFwVersion"] is None


def test_a_permanent_failure_of_this_package_is_not_started_again_by_a_restart() -> None:
    desired = _desired("2.0.0", SHA2)
    kept = reconcile(installed="1.0.0", desired=desired, run=None,
                     last=_last(Outcome.ERROR, "SIGNATURE_INVALID"))  # fmt: skip
    assert kept.gave_up
    assert "fwUpdateStatus" not in kept.firmware  # the twin keeps its error
    transient = reconcile(installed="1.0.0", desired=desired, run=None,
                          last=_last(Outcome.ERROR, "DOWNLOAD_FAILED"))  # fmt: skip
    assert not transient.gave_up
    other = reconcile(installed="1.0.0", desired=desired, run=None,
                      last=_last(Outcome.ERROR, "SIGNATURE_INVALID", sha=SHA3))  # fmt: skip
    assert not other.gave_up
