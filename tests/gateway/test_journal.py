"""The journal: per-MCU records, the update in progress, and surviving kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.errors import JournalError
from gateway.journal import Journal, Outcome, Phase

SHA_A = "a" * 64
SHA_B = "b" * 64
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path)
    j.upsert_mcu(
        "0a1b", device_id="sim-0a1b", model="sim", port="/dev/pts/3", slots=[{"version": "1.0.0"}]
    )
    yield j
    j.close()


def test_mcu_records_keep_slots_unless_given(journal: Journal) -> None:
    record = journal.upsert_mcu("0a1b", device_id="sim-0a1b", model="sim", port="/dev/pts/9")
    assert record.port == "/dev/pts/9"
    assert record.slots == [{"version": "1.0.0"}]
    journal.set_slots("0a1b", [{"version": "2.0.0"}, None])
    journal.set_port("0a1b", None)
    record = journal.mcu("0a1b")
    assert record is not None
    assert (record.port, record.slots) == (None, [{"version": "2.0.0"}, None])
    assert [m.uid for m in journal.mcus()] == ["0a1b"]
    assert journal.mcu("ffff") is None
    with pytest.raises(JournalError, match="ffff"):
        journal.set_port("ffff", "x")


def test_update_lifecycle_retry_and_history(journal: Journal) -> None:
    run = journal.begin_update("0a1b", "2.0.0", SHA_A.upper(), "https://x/p", total_bytes=1000)
    assert (run.phase, run.attempts, run.package_sha256) == (Phase.DOWNLOADING, 1, SHA_A)
    journal.set_phase("0a1b", Phase.APPLYING)
    journal.record_progress("0a1b", 512)
    # Same package again (after a crash): a retry that keeps progress.
    retry = journal.begin_update("0a1b", "2.0.0", SHA_A, "https://x/p")
    assert (retry.attempts, retry.bytes_written, retry.resume_offset) == (2, 512, 512)
    assert (retry.phase, retry.total_bytes, retry.started_at) == (
        Phase.APPLYING,
        1000,
        run.started_at,
    )
    with pytest.raises(JournalError):
        journal.record_progress("0a1b", 100, resume_offset=200)  # offset beyond what was written

    done = journal.finish_update("0a1b", Outcome.ERROR, error_code="E_LINK", message="unplugged")
    assert done is not None
    assert (done.outcome, done.phase, done.error_code, done.bytes_written) == (
        Outcome.ERROR,
        Phase.APPLYING,
        "E_LINK",
        512,
    )
    assert journal.update_in_progress("0a1b") is None
    assert journal.finish_update("0a1b", Outcome.CURRENT) is None

    # A different package starts from zero.
    fresh = journal.begin_update("0a1b", "2.1.0", SHA_B, "https://x/q")
    assert (fresh.attempts, fresh.bytes_written) == (1, 0)
    assert [u.uid for u in journal.updates_in_progress()] == ["0a1b"]
    journal.finish_update("0a1b", Outcome.CURRENT)
    assert [h.outcome for h in journal.history("0a1b")] == [Outcome.ERROR, Outcome.CURRENT]
    last = journal.last_outcome("0a1b")
    assert last is not None
    assert last.target_version == "2.1.0"


def test_assignments_and_reopen(tmp_path: Path, journal: Journal) -> None:
    journal.put_assignment("sim-0a1b", "hub.example")
    journal.begin_update("0a1b", "2.0.0", SHA_A, "https://x/p")
    journal.close()
    with Journal.open(tmp_path) as again:
        assert again.get_assignment("sim-0a1b") == "hub.example"
        again.drop_assignment("sim-0a1b")
        assert again.get_assignment("sim-0a1b") is None
        assert again.update_in_progress("0a1b") is not None
        assert again.check() == "ok"


def test_update_needs_a_known_mcu(journal: Journal) -> None:
    with pytest.raises(JournalError):
        journal.begin_update("ffff", "2.0.0", SHA_A, "https://x/p")


# A writer that never stops: each cycle begins an update, records progress in steps and
# finishes it, printing what it committed so the parent knows what must survive.
_WRITER = """
import sys
from pathlib import Path
from gateway.journal import Journal, Outcome, Phase
j = Journal.open(Path(sys.argv[1]))
j.upsert_mcu("0a1b", device_id="sim-0a1b", model="sim", port="/dev/null")
cycle = 0
while True:
    j.begin_update("0a1b", f"1.0.{cycle}", f"{cycle:064x}", "https://x/p", total_bytes=4096)
    j.set_phase("0a1b", Phase.APPLYING)
    for step in range(1, 9):
        j.record_progress("0a1b", step * 512)
        print(f"progress {cycle} {step * 512}", flush=True)
    j.finish_update("0a1b", Outcome.CURRENT)
    print(f"finished {cycle}", flush=True)
    cycle += 1
"""


def test_survives_sigkill_mid_write(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    last = ""
    try:
        # Kill it somewhere in the middle of a cycle, after a few whole cycles.
        for line in proc.stdout:  # bounded by the test timeout and the 3-cycle target
            last = line.strip()
            if last.startswith("progress 3 2048"):
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert last == "progress 3 2048"

    with Journal.open(tmp_path) as journal:
        assert journal.check() == "ok"
        history = journal.history("0a1b")
        finished = [h.target_version for h in history]
        # Whole cycles only, in order: a finish is never half-applied.
        assert len(finished) >= 3
        assert finished == [f"1.0.{i}" for i in range(len(finished))]
        assert all(h.bytes_written == 4096 and h.outcome is Outcome.CURRENT for h in history)
        run = journal.update_in_progress("0a1b")
        if run is not None:  # killed mid-cycle: that cycle's row is there and consistent
            assert run.target_version == f"1.0.{len(finished)}"
            assert run.resume_offset <= run.bytes_written <= 4096
            if len(finished) == 3:  # its 2048-byte commit was acknowledged before the kill
                assert run.bytes_written >= 2048
