"""The C reference bootloader as a :class:`~simulators.mcu.cutcheck.CutDevice`.

``firmware/bootloader/ports/host/cutdev.c`` links the C core with a RAM flash that
survives power cycles, virtual time and the ports' virtual app, and is driven one line per
command over a pipe; it is built under AddressSanitizer and UBSan, so the enumeration of
``cutcheck`` (every op, every pair, repeats, random triples) runs against the code that
ships, and a torn write that overran a buffer would abort it. One process serves every
device a check makes, one at a time (the enumerator never interleaves them).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from protocols.mcugw.codec import Codec, PacketReceived
from protocols.mcugw.packets import Request, Response
from simulators.mcu.cutcheck import PowerLost
from simulators.mcu.native import build_cutdev

#: Mode values in the device's `state` answer.
MODE_APP = 1


class NativeDeviceError(RuntimeError):
    """The C test device answered an error or died: a bug in the harness or the C core."""


class _Server:
    """The cutdev process; restarted if it is gone."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.owner: object | None = None

    def ask(self, line: str) -> tuple[str, str]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            proc = self._proc = subprocess.Popen(
                [str(build_cutdev())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, bufsize=1,
            )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        answer = proc.stdout.readline().rstrip("\n")
        if not answer:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            raise NativeDeviceError(f"cutdev died on {line[:40]!r}: {err.strip()}")
        status, _, rest = answer.partition(" ")
        if status == "err":
            raise NativeDeviceError(f"cutdev: {rest} (after {line[:40]!r})")
        return status, rest

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            self._proc.wait(timeout=10)
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
            self._proc = None


_SERVER = _Server()


def close_server() -> None:
    """Stop the shared cutdev process (tests call it at teardown)."""
    _SERVER.close()


class NativeDevice:
    """One power-cycled C device; making another one takes the process over."""

    def __init__(self, model: str, app_version: str = "1.0.0") -> None:
        self.model = model
        self._codec = Codec()
        self._seq = 0
        _SERVER.owner = self
        self._ask(f"new {model} {app_version}".rstrip())

    def _ask(self, line: str) -> tuple[str, str]:
        if _SERVER.owner is not self:
            raise NativeDeviceError("another NativeDevice took over the cutdev process")
        status, rest = _SERVER.ask(line)
        if status == "cut":
            raise PowerLost(f"cut during {line.split(' ', 1)[0]}")
        return status, rest

    # ------------------------------------------------------------ CutDevice

    def arm_cut(self, op: int | None) -> None:
        self._ask(f"arm {op or 0}")

    def power_on(self, stay: bool = False) -> None:
        self._codec = Codec()
        self._ask("stay" if stay else "power")

    def request(self, req: Request) -> Response | None:
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        _, out = self._ask("req " + self._codec.encode(req, seq).hex())
        self._codec.receive_data(bytes.fromhex(out))
        answer: Response | None = None
        while (ev := self._codec.next_event()) is not None:
            if isinstance(ev, PacketReceived) and ev.seq == seq:
                answer = ev.message  # type: ignore[assignment]
        return answer

    def wait(self, seconds: float) -> None:
        self._ask(f"wait {round(seconds * 1000)}")

    def flash_ops(self) -> int:
        return int(self._ask("ops")[1])

    def running_image(self) -> bytes | None:
        sha = self._ask("running")[1]
        return None if sha == "-" else bytes.fromhex(sha)

    def slot_images(self) -> list[bytes]:
        return [bytes.fromhex(h) for h in self._ask("slots")[1].split()]

    # ------------------------------------------------------------ set-up and inspection

    def state(self) -> tuple[int, int, int, int]:
        """(mode, running slot or 255, booted on trial, armed watchdog's ms or 0)."""
        mode, slot, trial, watchdog = (int(v) for v in self._ask("state")[1].split())
        return mode, slot, trial, watchdog

    def running_slot(self) -> int | None:
        mode, slot, _, _ = self.state()
        return slot if mode == MODE_APP else None

    def load(self, path: Path) -> None:
        """Replace the whole flash with the file's bytes (a crafted state)."""
        self._ask(f"load {path}")

    def save(self, path: Path) -> None:
        self._ask(f"save {path}")
