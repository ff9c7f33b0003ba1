"""The journal on a full disk (issue 17.1): it fails safe and recovers by itself.

Before: every write failed with ``database or disk is full``, a failed COMMIT
could leave a transaction open, and after a restart on the full disk the
journal did not even open (WAL's -shm file could not grow).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.errors import JournalError, JournalFull
from gateway.journal import Journal, Outcome
from tests.smallfs import fill, small_fs

SHA = "ab" * 32
BIG = "https://cdn.example/" + "x" * 200_000  # a row that needs fresh pages


def test_writes_on_a_full_disk_fail_as_journal_full_then_recover(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", "2m") as fs:
        journal = Journal.open(fs / "state")
        journal.upsert_mcu("aa", device_id="mcu-1", model="m", port="p")
        filler = fill(fs, leave=0)
        with pytest.raises(JournalFull) as err:
            journal.begin_update("aa", "2.0.0", SHA, BIG)
        assert "bytes free" in str(err.value)
        assert journal.update_in_progress("aa") is None  # nothing half-written
        filler.unlink()
        run = journal.begin_update("aa", "2.0.0", SHA, BIG)  # no restart needed
        assert run.target_version == "2.0.0"
        journal.close()


def test_best_effort_logs_once_per_streak_and_says_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_fs(tmp_path / "fs", "2m") as fs:
        journal = Journal.open(fs / "state")
        journal.upsert_mcu("aa", device_id="mcu-1", model="m", port="p")
        filler = fill(fs, leave=0)
        with caplog.at_level(logging.INFO, logger="gateway.journal"):
            for _ in range(3):
                assert not journal.best_effort(lambda: journal.set_slots("aa", [BIG]))
            filler.unlink()
            assert journal.best_effort(lambda: journal.set_slots("aa", [BIG]))
        messages = [r.getMessage() for r in caplog.records]
        assert sum("journal not written" in m for m in messages) == 1
        assert sum("writable again" in m for m in messages) == 1
        journal.close()


def test_a_restart_on_a_full_disk_opens_and_reads_the_journal(tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", "2m") as fs:
        journal = Journal.open(fs / "state")
        journal.upsert_mcu("aa", device_id="mcu-1", model="m", port="p")
        journal.begin_update("aa", "2.0.0", SHA, "https://cdn.example/p")
        journal.close()
        filler = fill(fs, leave=0)
        journal = Journal.open(fs / "state")  # the restart
        run = journal.update_in_progress("aa")
        assert run is not None and run.target_version == "2.0.0"
        with pytest.raises(JournalFull):
            journal.finish_update("aa", Outcome.ERROR, error_code="STORAGE_FULL", message=BIG)
        filler.unlink()
        journal.finish_update("aa", Outcome.ERROR, error_code="STORAGE_FULL", message=BIG)
        last = journal.last_outcome("aa")
        assert last is not None and last.error_code == "STORAGE_FULL"
        journal.close()


def test_a_second_gateway_on_the_same_state_directory_is_refused(tmp_path: Path) -> None:
    # Exclusive locking (what lets the journal open on a full disk) also keeps two
    # gateways from taking decisions on one journal.
    first = Journal.open(tmp_path / "state")
    first.upsert_mcu("aa", device_id="mcu-1", model="m", port="p")
    try:
        with pytest.raises(JournalError, match="locked"):
            Journal.open(tmp_path / "state")
    finally:
        first.close()
    again = Journal.open(tmp_path / "state")  # free once the first one closed
    assert again.mcu("aa") is not None
    again.close()
