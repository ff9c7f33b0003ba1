"""What a test leaves behind: child processes, open file descriptors and threads.

``tests/conftest.py`` takes a snapshot before each test and compares it after the
test's own fixtures are torn down, so a leak fails the test that made it rather
than whichever innocent test later trips over a ResourceWarning.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SETTLE_S = 2.0  # a thread or process that is already on its way out gets this long


def children() -> set[int]:
    """Pids of this process's children, zombies included (they are unreaped leaks too)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def open_fds() -> set[tuple[int, str]]:
    """(fd, what it points at): a number reused for another file counts as new."""
    fds: set[tuple[int, str]] = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd is gone by now
            fds.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
    return fds


def _describe_pid(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({'zombie' if state == 'Z' else 'running'}): {cmd[:160]}"


def _process_wide() -> tuple[set[threading.Thread], set[int]]:
    """Threads and fds azure-iot-device keeps for the life of the process, not per client.

    The SDK makes its event loops (each on its own thread, with an epoll fd and a
    self-pipe) and its "pipeline"/"callback"/"http" executors on first use and never
    ends them; whichever test happens to use it first is not leaking them. Private
    attributes are read because the SDK offers no other way to tell its threads apart.
    """
    threads: set[threading.Thread] = set()
    fds: set[int] = set()
    loops = sys.modules.get("azure.iot.device.iothub.aio.loop_management")
    for loop in getattr(loops, "loops", {}).values():
        if loop is None:
            continue
        threads.update(
            t for t in threading.enumerate() if getattr(t, "_target", None) == loop.run_forever
        )
        executor = getattr(loop, "_default_executor", None)
        threads.update(getattr(executor, "_threads", ()))
        selector = getattr(loop, "_selector", None)
        fds.update(
            f.fileno()
            for f in (selector, getattr(loop, "_ssock", None), getattr(loop, "_csock", None))
            if f is not None and f.fileno() >= 0
        )
    pipeline = sys.modules.get("azure.iot.device.common.pipeline.pipeline_thread")
    for executor in getattr(pipeline, "_executors", {}).values():
        threads.update(getattr(executor, "_threads", ()))
    # paho-mqtt 1.6 (pinned by the SDK) leaks its network thread and its 127.0.0.1
    # wake-up socket pair when the SDK reconnects or gives up (pyproject.toml filters
    # the matching warning). Our own sockets are on other loopback addresses.
    # The SDK's own timers (common.alarm.Alarm) outlive a client that gave up too.
    for t in threading.enumerate():
        target = getattr(t, "_target", None)
        if getattr(target, "__module__", "").startswith("paho.") or type(t).__module__.startswith(
            "azure.iot.device."
        ):
            threads.add(t)
    fds.update(_paho_socketpairs())
    return threads, fds


def _paho_socketpairs() -> set[int]:
    out: set[int] = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with sock:
            try:
                local = sock.getsockname()
            except OSError:
                continue
            if sock.family == socket.AF_INET and local[0] == "127.0.0.1":
                out.add(fd)
    return out


@dataclass(frozen=True)
class Snapshot:
    pids: frozenset[int]
    fds: frozenset[tuple[int, str]]
    threads: frozenset[threading.Thread]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(frozenset(children()), frozenset(open_fds()), frozenset(threading.enumerate()))

    def leaks(self) -> tuple[list[int], list[tuple[int, str]], list[threading.Thread]]:
        """What is new since this snapshot, after collecting garbage and a bounded settle."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            # Objects dropped by the test close their fds (and warn) now, inside the test.
            gc.collect()
            sdk_threads, sdk_fds = _process_wide()
            pids = sorted(children() - self.pids)
            fds = sorted(fd for fd in open_fds() - self.fds if fd[0] not in sdk_fds)
            threads = [
                t
                for t in threading.enumerate()
                if t not in self.threads and t not in sdk_threads and t.is_alive()
            ]
            if not (pids or fds or threads) or time.monotonic() > deadline:
                return pids, fds, threads
            time.sleep(0.05)


def report(pids: list[int], fds: list[tuple[int, str]], threads: list[threading.Thread]) -> str:
    parts = [_describe_pid(p) for p in pids]
    parts += [f"fd {fd} -> {target}" for fd, target in fds]
    parts += [f"thread {t.name!r} ({_target_name(t)})" for t in threads]
    return "; ".join(parts)


def _target_name(t: threading.Thread) -> str:
    target = getattr(t, "_target", None)
    if target is None:
        return type(t).__module__ + "." + type(t).__qualname__
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"


def kill(pids: list[int]) -> None:
    """Stop leaked children so the next test on this worker starts clean."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)


class Suspects:
    """What each test of a module left running, checked again when the module is done."""

    def __init__(self) -> None:
        self.pids: dict[int, str] = {}
        self.fds: dict[tuple[int, str], str] = {}
        self.threads: dict[threading.Thread, str] = {}

    def note(
        self,
        test: str,
        pids: list[int],
        fds: list[tuple[int, str]],
        threads: list[threading.Thread],
    ) -> None:
        for p in pids:
            self.pids.setdefault(p, test)
        for f in fds:
            self.fds.setdefault(f, test)
        for t in threads:
            self.threads.setdefault(t, test)

    def still_there(self) -> str:
        """One line per test whose leftovers outlived the module ('' if none); kills them."""
        gc.collect()
        deadline = time.monotonic() + SETTLE_S
        while True:
            sdk_threads, sdk_fds = _process_wide()
            pids = [p for p in self.pids if p in children()]
            fds = [f for f in self.fds if f in open_fds() and f[0] not in sdk_fds]
            threads = [t for t in self.threads if t.is_alive() and t not in sdk_threads]
            if not (pids or fds or threads) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        by_test: dict[str, tuple[list[int], list[tuple[int, str]], list[threading.Thread]]] = {}
        for p in pids:
            by_test.setdefault(self.pids[p], ([], [], []))[0].append(p)
        for f in fds:
            by_test.setdefault(self.fds[f], ([], [], []))[1].append(f)
        for t in threads:
            by_test.setdefault(self.threads[t], ([], [], []))[2].append(t)
        lines = [f"{test} leaked: {report(*found)}" for test, found in by_test.items()]
        kill(pids)
        return "\n".join(lines)
