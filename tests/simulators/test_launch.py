"""Starting simulators: every way a start fails leaves no process and no open pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulators.mcu import launch
from tests import leaks
from tests.sim_harness import SimProcess

SILENT = [sys.executable, "-c", "import time; time.sleep(60)"]  # never prints a PTY line
CHATTY = [sys.executable, "-c", "print('hello', flush=True); import time; time.sleep(60)"]


def _nothing_left(before: leaks.Snapshot) -> None:
    pids, fds, threads = before.leaks()
    assert (pids, fds, threads) == ([], [], []), leaks.report(pids, fds, threads)


def test_a_sim_that_exits_at_start_leaves_nothing_and_says_why(tmp_path: Path) -> None:
    before = leaks.Snapshot.take()
    with pytest.raises(launch.SimStartError) as info:
        SimProcess(tmp_path, ["--model", "no-such-model"]).start()
    assert info.value.returncode == 1
    assert "unknown model 'no-such-model'" in str(info.value)
    _nothing_left(before)


@pytest.mark.parametrize(("cli", "why"), [(SILENT, "within 0.5 s"), (CHATTY, "'hello'")])
def test_a_sim_that_never_announces_is_stopped(tmp_path: Path, cli: list[str], why: str) -> None:
    before = leaks.Snapshot.take()
    with pytest.raises(launch.SimStartError, match=why):
        launch.start(["--state", str(tmp_path)], timeout=0.5, cli=cli)
    _nothing_left(before)


async def test_async_start_failure_leaves_nothing(tmp_path: Path) -> None:
    before = leaks.Snapshot.take()
    with pytest.raises(launch.SimStartError, match="exited"):
        await launch.start_async(["--state", str(tmp_path), "--model", "no-such-model"])
    assert not (leaks.children() - before.pids)


def test_running_reads_several_ptys_and_stops(tmp_path: Path) -> None:
    before = leaks.Snapshot.take()
    with launch.running(["--state", str(tmp_path), "--count", "2", "--baud", "0"], count=2) as sim:
        assert len(sim.ports) == 2
        assert all(Path(p).exists() for p in sim.ports)
        assert sim.proc.poll() is None
    assert sim.proc.returncode is not None
    _nothing_left(before)


def test_leak_detection_names_a_leaked_child() -> None:
    before = leaks.Snapshot.take()
    proc = subprocess.Popen(SILENT, stdout=subprocess.PIPE)
    try:
        pids, fds, _ = before.leaks()
        assert pids == [proc.pid]
        assert fds  # the stdout pipe
        assert "time.sleep(60)" in leaks.report(pids, fds, [])
    finally:
        launch.stop(proc, grace=1)
    _nothing_left(before)
