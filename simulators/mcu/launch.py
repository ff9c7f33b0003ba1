"""Start ``mcu-gateway sim --pty`` as a child process and read its ``PTY <path>`` lines.

The demo lab, the benchmarks and the tests all start simulators this one way: every
wait is bounded, and a simulator that fails to start (exits, prints something else,
stays silent) is stopped and reaped and its pipes closed before the error is raised,
so nothing is left behind to warn or fail later in an unrelated place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

PTY_PREFIX = "PTY "
START_TIMEOUT_S = 20.0
STOP_GRACE_S = 10.0


class SimStartError(RuntimeError):
    """The simulator did not announce its ptys; ``returncode`` and ``stderr`` say why."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = "") -> None:
        tail = stderr.strip().splitlines()[-1:] if stderr.strip() else []
        super().__init__(message + (f": {tail[0]}" if tail else ""))
        self.returncode = returncode
        self.stderr = stderr


def sim_command(args: Sequence[str], cli: Sequence[str] | None = None) -> list[str]:
    """The command line of ``mcu-gateway sim --pty ARGS`` (``cli`` overrides the launcher)."""
    head = list(cli) if cli else [sys.executable, "-m", "gateway.cli"]
    return [*head, "sim", "--pty", *args]


def _ports(lines: Sequence[str]) -> list[str]:
    for line in lines:
        if not line.startswith(PTY_PREFIX):
            raise SimStartError(f"simulator printed {line!r} where it announces its port")
    return [line[len(PTY_PREFIX) :] for line in lines]


def read_lines(stream: IO[bytes], count: int, timeout: float) -> list[str]:
    """``count`` lines from a child's stdout pipe within ``timeout`` seconds, or SimStartError."""
    lines: list[str] = []
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while len(lines) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise SimStartError(f"simulator announced no port within {timeout:g} s")
            chunk = os.read(stream.fileno(), 1)  # never past the last line we were asked for
            if not chunk:
                raise SimStartError(
                    f"simulator exited after announcing {len(lines)} of {count} ports"
                )
            buf += chunk
            while b"\n" in buf and len(lines) < count:
                line, buf = buf.split(b"\n", 1)
                lines.append(line.decode(errors="replace").strip())
    return lines


@dataclass
class SimChild:
    """A running simulator process and the ptys it announced."""

    proc: subprocess.Popen[bytes]
    ports: list[str]

    @property
    def port(self) -> str:
        return self.ports[0]


def start(
    args: Sequence[str],
    *,
    count: int = 1,
    timeout: float = START_TIMEOUT_S,
    stderr: int | IO[Any] | None = subprocess.PIPE,
    cli: Sequence[str] | None = None,
) -> SimChild:
    """Start a simulator and wait for its ``count`` PTY lines; on any failure leave nothing."""
    proc = subprocess.Popen(sim_command(args, cli), stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert proc.stdout is not None
        return SimChild(proc, _ports(read_lines(proc.stdout, count, timeout)))
    except BaseException as exc:
        err = _reap_output(proc)
        if isinstance(exc, SimStartError):
            raise SimStartError(str(exc), proc.returncode, err) from None
        raise


def _reap_output(proc: subprocess.Popen[bytes]) -> str:
    """Stop ``proc``, then return what it wrote on a piped stderr; closes both pipes."""
    stop(proc, close=False)
    err = b""
    if proc.stderr is not None and not proc.stderr.closed:
        with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
            _, err = proc.communicate(timeout=5)
    _close(proc)
    return err.decode(errors="replace") if isinstance(err, bytes) else ""


def _close(proc: subprocess.Popen[Any]) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def stop(proc: subprocess.Popen[Any], grace: float = STOP_GRACE_S, *, close: bool = True) -> None:
    """SIGTERM, SIGKILL after ``grace`` seconds; always reaps, and closes the pipes."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(grace)
    if close:
        _close(proc)


@contextlib.contextmanager
def running(args: Sequence[str], **kwargs: Any) -> Iterator[SimChild]:
    """A simulator for the ``with`` block; stopped and reaped on every way out."""
    child = start(args, **kwargs)
    try:
        yield child
    finally:
        stop(child.proc)


async def start_async(
    args: Sequence[str], *, count: int = 1, start_timeout: float = START_TIMEOUT_S
) -> tuple[asyncio.subprocess.Process, list[str]]:
    """:func:`start` for asyncio callers (stderr is discarded: the lab logs elsewhere)."""
    proc = await asyncio.create_subprocess_exec(
        *sim_command(args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(start_timeout):
                for _ in range(count):
                    raw = await proc.stdout.readline()
                    if not raw:
                        raise SimStartError(
                            f"simulator exited after announcing {len(lines)} of {count} ports"
                        )
                    lines.append(raw.decode(errors="replace").strip())
        except TimeoutError:
            raise SimStartError(f"simulator announced no port within {start_timeout:g} s") from None
        return proc, _ports(lines)
    except BaseException:
        await stop_async(proc)
        raise


async def stop_async(proc: asyncio.subprocess.Process, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM, SIGKILL after ``grace`` seconds; always reaps (asyncio closes the pipes)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
