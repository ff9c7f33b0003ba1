"""Start `mcu-gateway sim --pty` as a real process and talk to it through its pty."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gateway.cli import main as cli_main

STARTUP_TIMEOUT_S = 20.0


class SimProcess:
    """One simulator process; restartable on the same state dir (a power cycle)."""

    def __init__(self, state: Path, args: Sequence[str] = ()) -> None:
        self.state = state
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = ""

    def start(self, extra: Sequence[str] = ()) -> SimProcess:
        if self.proc is not None:
            self.stop()
        cmd = [
            sys.executable, "-m", "gateway.cli", "sim", "--pty",
            "--state", str(self.state), *self.args, *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = _readline(self.proc, STARTUP_TIMEOUT_S)
        if not line.startswith("PTY "):
            raise RuntimeError(f"sim did not announce a pty: {line!r} {self.stderr()}")
        self.port = line.split(" ", 1)[1]
        return self

    def stderr(self) -> str:
        if self.proc is None or self.proc.poll() is None or self.proc.stderr is None:
            return ""
        if self.proc.stderr.closed:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def wait_exit(self, timeout: float) -> int:
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_streams()

    def restart(self, extra: Sequence[str] = ()) -> SimProcess:
        self.stop()
        return self.start(extra)


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"no line from simulator within {timeout} s")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode().strip()


@contextlib.contextmanager
def running_sim(state: Path, *args: str) -> Iterator[SimProcess]:
    sim = SimProcess(state, args).start()
    try:
        yield sim
    finally:
        sim.stop()


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
