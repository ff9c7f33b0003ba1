"""What the twin's firmware section must say, from the journal and the MCU's own facts.

The twin must never claim more or less than is true: after a restart (even a
``kill -9`` during a trial boot) and whenever the desired version equals the
installed one. :func:`reconcile` decides from three facts only, so it is pure
and cheap to test: the version the MCU runs, the desired firmware, and the
journal's update in progress. It also says how to close that journal row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import semver

from firmware.twin import DesiredFirmware
from gateway.codes import GatewayCode
from gateway.journal import HistoryRecord, Outcome, UpdateRecord
from gateway.reported import RUN_FIGURES, FwStatus, error_section, utc_iso, utc_now
from gateway.retry import is_transient
from protocols.driver import DeviceFacts, Phase, SlotFacts, SlotState

_PHASE_STATUS = {
    Phase.DOWNLOADING: FwStatus.DOWNLOADING,
    Phase.VERIFYING: FwStatus.VERIFYING,
    Phase.APPLYING: FwStatus.APPLYING,
    Phase.REBOOTING: FwStatus.REBOOTING,
}


def same_version(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return _semver(a) == _semver(b)
    except ValueError:
        return a == b


def _semver(text: str) -> semver.Version:
    # mcumgr prints an MCUboot build number as a fourth field: 1.2.3.4 is 1.2.3+4.
    major, _, build = text.rpartition(".")
    if major.count(".") == 2 and build.isdigit() and "+" not in text and "-" not in text:
        text = f"{major}+{build}"
    return semver.Version.parse(text)


@dataclass(frozen=True)
class Reconciled:
    firmware: dict[str, Any]  # the reported firmware section (a merge patch)
    finish: Outcome | None  # how to close the journal's update in progress; None: keep it
    gave_up: bool = False  # the desired update already failed for good: do not start it


def on_trial(facts: DeviceFacts) -> bool:
    """The MCU runs an image that is still on trial: its app has not confirmed it.

    Such an image is never *installed* in the twin's sense, whatever driver says
    so: an MCUboot app that never confirms reverts at the next reset, and a
    fleet ring counts ``current`` as success (issue 17.2).
    """
    return any(s.running and s.state is SlotState.TRIAL for s in facts.slots)


def app_erased(facts: DeviceFacts) -> DeviceFacts:
    """What is known of a single-slot MCU that went silent mid-install: no application.

    Its driver erased the application (and the version record) before writing
    the new one, so the old version is gone; until the MCU answers again the
    twin says that, not the version it ran before (issue 17.6).
    """
    empty = tuple(
        SlotFacts(s.index, SlotState.INVALID, boot_count=s.boot_count) for s in facts.slots
    )
    details = {**facts.details, "record": "erased by an unfinished install"}
    return dataclasses.replace(
        facts, installed_version=None, slots=empty, in_bootloader=True, details=details
    )


def on_trial_report(installed: str | None) -> dict[str, Any]:
    """No update runs, yet the MCU runs ``installed`` unconfirmed: say so, not ``current``."""
    return {
        "fwUpdateStatus": FwStatus.ERROR.value,
        "fwUpdateSubstatus": f"running {installed} on trial: its app has not confirmed it",
        "currentFwVersion": installed,
        "pendingFwVersion": None,
        "nextRetryTime": None,
        "error": error_section(
            GatewayCode.APP_NOT_CONFIRMED,
            f"the MCU runs {installed} on trial and its app has not confirmed it; the "
            "bootloader reverts to the previous image at its next reset",
            Phase.REBOOTING.value,
        ),
    }


def current(installed: str | None) -> dict[str, Any]:
    """The MCU runs what is desired (or nothing is desired): no update, no error."""
    return {
        "fwUpdateStatus": FwStatus.CURRENT.value,
        "fwUpdateSubstatus": f"running {installed}" if installed else "no firmware installed",
        "currentFwVersion": installed,
        "pendingFwVersion": None,
        "error": None,
        "nextRetryTime": None,
    }


def reconcile(
    *,
    installed: str | None,
    desired: DesiredFirmware | None,
    run: UpdateRecord | None,
    last: HistoryRecord | None = None,
    trial: bool = False,
) -> Reconciled:
    """The truth to report before anything else happens at start-up.

    ``last`` is the journal's last finished update: if it is this very desired
    package and failed for a reason retrying cannot cure, the twin keeps its
    error and the update is not started again by the restart alone. ``trial``:
    the MCU runs ``installed`` unconfirmed (:func:`on_trial`), so it is not
    installed yet: the run goes on, and nothing is reported ``current``.
    """
    if run is not None:
        if same_version(installed, run.target_version) and not trial:
            # The update finished (the app confirmed) but the gateway did not live to say so.
            return Reconciled(
                {
                    **current(installed),
                    **RUN_FIGURES,
                    "fwUpdateSubstatus": f"installed {installed}",
                    "progress": 100,
                    "lastFwUpdateStartTime": utc_iso(run.started_at),
                    "lastFwUpdateEndTime": utc_now(),
                },
                Outcome.CURRENT,
            )
        if (
            desired is not None
            and same_version(desired.fwVersion, run.target_version)
            and desired.fwPackageCheckValue == run.package_sha256
        ):
            return Reconciled(
                {
                    **RUN_FIGURES,
                    "fwUpdateStatus": _PHASE_STATUS[run.phase].value,
                    "fwUpdateSubstatus": f"resuming the update to {run.target_version} "
                    "after a gateway restart",
                    "currentFwVersion": installed,
                    "pendingFwVersion": run.target_version,
                    "lastFwUpdateStartTime": utc_iso(run.started_at),
                    "lastFwUpdateEndTime": None,
                    "error": None,
                },
                None,
            )
        # The desired state moved on while the gateway was down: that run is over.
        again = reconcile(installed=installed, desired=desired, run=None, trial=trial)
        return Reconciled(again.firmware, Outcome.CANCELLED)
    if desired is None and trial:
        return Reconciled(on_trial_report(installed), None)
    if desired is None or (same_version(installed, desired.fwVersion) and not trial):
        return Reconciled(current(installed), None)
    if (
        last is not None
        and last.outcome in (Outcome.ERROR, Outcome.ROLLEDBACK)
        and same_version(last.target_version, desired.fwVersion)
        and last.package_sha256 == desired.fwPackageCheckValue
        and not (last.error_code is not None and is_transient(last.error_code))
    ):
        # Its error is already in the twin (reported when it failed); say only what runs.
        return Reconciled({"currentFwVersion": installed, "pendingFwVersion": None}, None, True)
    starting = f"starting the update to {desired.fwVersion}"
    if trial:
        starting = f"running {installed} on trial, not confirmed; {starting}"
    return Reconciled(
        {
            **RUN_FIGURES,
            "fwUpdateStatus": FwStatus.DOWNLOADING.value,
            "fwUpdateSubstatus": starting,
            "currentFwVersion": installed,
            "pendingFwVersion": desired.fwVersion,
            "lastFwUpdateEndTime": None,
            "error": None,
        },
        None,
    )
