"""Start `mcu-gateway sim --pty` as a real process and talk to it through its pty."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gateway.cli import main as cli_main
from simulators.mcu import launch

STARTUP_TIMEOUT_S = 20.0


class SimProcess:
    """One simulator process; restartable on the same state dir (a power cycle)."""

    def __init__(self, state: Path, args: Sequence[str] = ()) -> None:
        self.state = state
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.failed: launch.SimStartError | None = None
        self.port = ""

    def start(self, extra: Sequence[str] = ()) -> SimProcess:
        if self.proc is not None:
            self.stop()
        # launch.start stops, reaps and closes everything itself when the sim fails to start;
        # its exit status and stderr stay readable through wait_exit() and stderr().
        self.failed = None
        try:
            child = launch.start(
                ["--state", str(self.state), *self.args, *extra], timeout=STARTUP_TIMEOUT_S
            )
        except launch.SimStartError as exc:
            self.proc, self.failed = None, exc
            raise
        self.proc, self.port = child.proc, child.port
        return self

    def stderr(self) -> str:
        if self.proc is None and self.failed is not None:
            return self.failed.stderr
        if self.proc is None or self.proc.poll() is None or self.proc.stderr is None:
            return ""
        if self.proc.stderr.closed:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def wait_exit(self, timeout: float) -> int:
        if self.proc is None and self.failed is not None and self.failed.returncode is not None:
            return self.failed.returncode  # it died at start-up; already reaped
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Power cut: SIGKILL, no chance to tidy up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_streams()

    def _close_streams(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr) if self.proc else ():
            if stream is not None:
                stream.close()

    def stop(self) -> None:
        if self.proc is not None:
            launch.stop(self.proc)

    def restart(self, extra: Sequence[str] = ()) -> SimProcess:
        self.stop()
        return self.start(extra)


@contextlib.contextmanager
def running_sim(state: Path, *args: str) -> Iterator[SimProcess]:
    sim = SimProcess(state, args).start()
    try:
        yield sim
    finally:
        sim.stop()


def stm32_raw(port: str, *exchanges: Any) -> None:
    """Drive a simulated STM32 ROM loader directly (as another tool or an older driver
    would): sync, then each ``protocols.stm32rom.codec.Exchange`` stage by stage."""
    import serial

    from protocols.stm32rom import codec

    with serial.Serial(port, 115200, timeout=3) as link:
        link.write(bytes([codec.SYNC]))
        assert link.read(1) in (bytes([codec.ACK]), bytes([codec.NACK]))
        for ex in exchanges:
            while not ex.done:
                link.write(ex.data_to_send())
                while ex.waiting:
                    data = link.read(1)
                    assert data
                    ex.receive_data(data)


def cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """Run the real CLI entry point in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: Any, *argv: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = cli(capsys, *argv, "--json")
    lines = [line for line in out.splitlines() if line.strip()]
    # A command that failed before printing its JSON says why on stderr: show that.
    assert lines, f"{argv[0]} printed no JSON (exit {code}): {err.strip()}"
    return code, json.loads(lines[-1]), err
