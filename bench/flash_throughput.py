"""Flash throughput: ``mcu-gateway flash`` against ``mcu-gateway sim`` processes on ptys.

For every baud rate and image size, starts a fresh virtual MCU (own state
directory, default model, 2 ms turnaround unless told otherwise), reads its
advertised flash geometry with ``mcu-gateway info --json``, then runs
``mcu-gateway flash --json`` with a random (incompressible) image and measures
that process's CPU time with ``os.wait4``.

    python -m bench.flash_throughput [--quick] [--sizes 64K,1M] [--bauds 115200,921600]
                                     [--repeat N] [--turnaround-ms 2] [--model vmcu-f4]
                                     [--impls python,c,qemu]

Link efficiency is image bytes/s / (baud/10), i.e. the share of the raw 8N1
byte rate that carries image bytes. It is given over the whole flash process
(start-up, port open, connect and reset into the bootloader, BEGIN, transfer,
VERIFY, ACTIVATE, reboot, confirm), over the command's own JSON ``seconds``
(which starts after connect) and over the transfer alone.

``--impls python,c,qemu`` runs every case against each implementation of the MCU
(``sim --impl``): the Python simulator, the C bootloader's host build, the C
bootloader's Cortex-M3 build under QEMU. All three pace their UART at the baud, so
none may move image bytes faster than the wire: a transfer efficiency above 1.0 is
reported as a failed check.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BAUDS = (115200, 460800, 921600)
SIZES = (64 * 1024, 1024 * 1024)
TARGETS = {115200: 0.95, 921600: 0.90}  # DESIGN.md "Performance targets", 1 MiB images
TARGET_SIZE = 1024 * 1024
IMPLS = ("python", "c", "qemu")  # sim --impl
#: Transfer efficiency a paced link cannot exceed (plus rounding of the JSON seconds).
WIRE_LIMIT = 1.0
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    baud: int
    size: int
    rep: int
    turnaround_ms: float
    geometry: dict[str, Any]
    result: dict[str, Any]
    cpu_s: float  # user + system of the flash process
    sim_cpu_s: float  # user + system of the sim process over its whole life
    wall_s: float  # flash process start to exit, incl. interpreter start-up
    impl: str = "python"  # sim --impl

    @property
    def seconds(self) -> float:
        return float(self.result["seconds"])

    @property
    def transfer_seconds(self) -> float:
        return float(self.result["transfer_seconds"])

    def efficiency(self, seconds: float) -> float:
        return (self.size / seconds) / (self.baud / 10) if seconds > 0 else 0.0

    @property
    def wire_tx_per_byte(self) -> float:
        return int(self.result["wire_bytes_tx"]) / self.size

    @property
    def wire_rx_per_byte(self) -> float:
        return int(self.result["wire_bytes_rx"]) / self.size

    @property
    def cpu_per_mb(self) -> float:
        return self.cpu_s / (self.size / 1e6)


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------ processes


def _cli() -> list[str]:
    exe = shutil.which("mcu-gateway", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "gateway.cli"]


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(grace)


def _read_line(stream: IO[bytes], timeout: float) -> str:
    """One line from a pipe, or BenchError after ``timeout`` seconds."""
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise BenchError(f"no line within {timeout:g} s (got {buf!r})")
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                raise BenchError(f"pipe closed before a full line (got {buf!r})")
            buf += chunk
    return buf.decode().strip()


class Sim:
    """A ``mcu-gateway sim --pty`` process on a fresh state directory."""

    def __init__(
        self,
        baud: int,
        state: Path,
        model: str | None,
        turnaround_ms: float,
        log: Path,
        impl: str = "python",
    ) -> None:
        cmd = [*_cli(), "sim", "--pty", "--baud", str(baud), "--state", str(state)]
        cmd += ["--turnaround-ms", f"{turnaround_ms:g}", "--impl", impl]
        if model:
            cmd += ["--model", model]
        self._log = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log)
        try:
            assert self.proc.stdout is not None
            line = _read_line(self.proc.stdout, 30)
            if not line.startswith("PTY "):
                raise BenchError(f"sim printed {line!r}, not 'PTY <path>'")
            self.pty = line[4:]
        except BaseException:
            self.close()
            raise

    def cpu_seconds(self) -> float:
        return _proc_cpu(self.proc.pid)

    def close(self) -> None:
        _stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _run_child(cmd: list[str], timeout: float, out: Path) -> tuple[int, float, float, str]:
    """Run ``cmd`` with stdout+stderr to ``out``; returns (status, cpu s, wall s, output).

    The child is reaped with ``os.wait4`` so its own rusage is measured; the wait
    polls with WNOHANG so it stays bounded, and the child is killed on timeout or
    when we are interrupted.
    """
    with out.open("wb") as sink:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    deadline = t0 + timeout
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                wall = time.monotonic() - t0
                proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap again
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{' '.join(cmd[-8:])} still running after {timeout:.0f} s")
            time.sleep(0.02)
    finally:
        if proc.returncode is None:
            _stop(proc, grace=2.0)
    return proc.returncode, usage.ru_utime + usage.ru_stime, wall, out.read_text(errors="replace")


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    raise BenchError(f"no JSON object in output:\n{text[-2000:]}")


def expected_seconds(size: int, baud: int) -> float:
    """A generous bound for one flash: the raw wire time doubled plus fixed slack."""
    return 2 * size * 10 / baud + 60


def run_one(
    baud: int,
    size: int,
    rep: int,
    work: Path,
    model: str | None,
    turnaround_ms: float,
    impl: str = "python",
) -> Run:
    tag = f"{impl}-{baud}-{size}-{rep}"
    state = work / f"state-{tag}"
    image = work / f"image-{tag}.bin"
    image.write_bytes(random.Random(f"{size}/{rep}").randbytes(size))
    sim = Sim(baud, state, model, turnaround_ms, work / f"sim-{tag}.log", impl)
    try:
        info_cmd = [*_cli(), "info", "--port", sim.pty, "--bootloader", "mcugw"]
        info_cmd += ["--baud", str(baud), "--json"]
        status, _, _, text = _run_child(info_cmd, 60, work / f"info-{tag}.log")
        if status != 0:
            raise BenchError(f"info failed ({status}):\n{text[-2000:]}")
        info = _last_json(text)
        geometry = dict(info["details"])
        geometry["model"] = info["model"]
        flash_cmd = [*_cli(), "flash", "--port", sim.pty, "--bootloader", "mcugw", str(image)]
        flash_cmd += ["--version", f"2.{rep}.0", "--baud", str(baud), "--json"]
        status, cpu, wall, text = _run_child(
            flash_cmd, expected_seconds(size, baud), work / f"flash-{tag}.log"
        )
        result = _last_json(text)
        sim_status = sim.proc.poll()
        if sim_status is not None:
            raise BenchError(
                f"the sim on {sim.pty} exited with status {sim_status} during the flash "
                f"(flash said: {result.get('error', 'ok')})"
            )
        if status != 0 or not result.get("ok"):
            raise BenchError(f"flash failed ({status}): {result.get('error', text[-2000:])}")
        sim_cpu = sim.cpu_seconds()
    finally:
        sim.close()
        shutil.rmtree(state, ignore_errors=True)
        image.unlink(missing_ok=True)
    return Run(baud, size, rep, turnaround_ms, geometry, result, cpu, sim_cpu, wall, impl)


# ------------------------------------------------------------------ output


def _size_text(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
    try:
        value = int(t[:-1] if mult > 1 else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 64K, 1M, 4096)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value * mult


def _csv(kind: Any) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        return tuple(kind(x) for x in text.split(",") if x.strip())

    return parse


def timings_text(geo: dict[str, Any], turnaround_ms: float) -> str:
    return (
        f"model {geo['model']}: sector erase {geo['erase_us'] / 1000:g} ms per "
        f"{geo['sector_size'] // 1024} KiB, page program {geo['program_us'] / 1000:g} ms per "
        f"{geo['page_size']} B, write size {geo['write_size']} B, hash "
        f"{geo['hash_us_per_kib']} us/KiB, boot {geo['boot_ms']} ms; max_data "
        f"{geo['max_data']} B, window {geo['window']} B; turnaround {turnaround_ms:g} ms"
    )


COLUMNS = (
    ("impl", "<6"),
    ("baud", ">7"),
    ("size", ">8"),
    ("run", ">3"),
    ("ta ms", ">5"),
    ("cmd s", ">7"),
    ("flash s", ">7"),
    ("xfer s", ">7"),
    ("eff cmd", ">7"),
    ("eff flash", ">9"),
    ("eff xfer", ">8"),
    ("tx B/B", ">6"),
    ("rx B/B", ">6"),
    ("cpu s", ">5"),
    ("cpu s/MB", ">8"),
    ("sim cpu s", ">9"),
    ("retx", ">4"),
)


def _row(cells: list[str]) -> str:
    return "  ".join(f"{c:{fmt}}" for c, (_, fmt) in zip(cells, COLUMNS, strict=True))


def format_run(r: Run) -> str:
    return _row(
        [
            r.impl,
            str(r.baud),
            _size_text(r.size),
            str(r.rep + 1),
            f"{r.turnaround_ms:g}",
            f"{r.wall_s:.2f}",
            f"{r.seconds:.2f}",
            f"{r.transfer_seconds:.2f}",
            f"{r.efficiency(r.wall_s):.3f}",
            f"{r.efficiency(r.seconds):.3f}",
            f"{r.efficiency(r.transfer_seconds):.3f}",
            f"{r.wire_tx_per_byte:.3f}",
            f"{r.wire_rx_per_byte:.3f}",
            f"{r.cpu_s:.2f}",
            f"{r.cpu_per_mb:.2f}",
            f"{r.sim_cpu_s:.2f}",
            str(r.result["retransmits"]),
        ]
    )


def print_header(turnaround_ms: float, geo: dict[str, Any] | None) -> None:
    print("flash throughput: mcu-gateway flash --json against mcu-gateway sim --pty")
    if geo is not None:
        print("flash timings used: " + timings_text(geo, turnaround_ms))
    print(
        "cmd s = the whole flash process (start-up, port open, HELLO/INFO, reset into the "
        "bootloader, then all of flash s);"
    )
    print(
        "flash s = its JSON seconds (the driver's install: HELLO/INFO, BEGIN, transfer, "
        "VERIFY, ACTIVATE, reset, confirm); "
        "xfer s = its JSON transfer_seconds (DATA only)"
    )
    print(
        "eff = image bytes/s / (baud/10) on each; tx/rx B/B = wire bytes per image byte; "
        "cpu = flash process user+sys CPU, per 10^6 image bytes"
    )
    print()
    print(_row([name for name, _ in COLUMNS]))
    print(_row(["-" * len(name) for name, _ in COLUMNS]))


def _median(runs: list[Run], fn: Callable[[Run], float]) -> float:
    return float(statistics.median(fn(r) for r in runs))


def print_medians(runs: list[Run]) -> None:
    print()
    print("medians over runs:")
    print(_row([name for name, _ in COLUMNS]))
    keys = sorted({(r.impl, r.baud, r.size) for r in runs})
    for impl, baud, size in keys:
        mine = [r for r in runs if (r.impl, r.baud, r.size) == (impl, baud, size)]
        med = functools.partial(_median, mine)
        print(
            _row(
                [
                    impl,
                    str(baud),
                    _size_text(size),
                    f"x{len(mine)}",
                    f"{mine[0].turnaround_ms:g}",
                    f"{med(lambda r: r.wall_s):.2f}",
                    f"{med(lambda r: r.seconds):.2f}",
                    f"{med(lambda r: r.transfer_seconds):.2f}",
                    f"{med(lambda r: r.efficiency(r.wall_s)):.3f}",
                    f"{med(lambda r: r.efficiency(r.seconds)):.3f}",
                    f"{med(lambda r: r.efficiency(r.transfer_seconds)):.3f}",
                    f"{med(lambda r: r.wire_tx_per_byte):.3f}",
                    f"{med(lambda r: r.wire_rx_per_byte):.3f}",
                    f"{med(lambda r: r.cpu_s):.2f}",
                    f"{med(lambda r: r.cpu_per_mb):.2f}",
                    f"{med(lambda r: r.sim_cpu_s):.2f}",
                    f"{med(lambda r: int(r.result['retransmits'])):g}",
                ]
            )
        )


def print_targets(runs: list[Run]) -> None:
    lines = []
    for baud, target in TARGETS.items():
        mine = [r for r in runs if r.baud == baud and r.size == TARGET_SIZE and r.impl == "python"]
        if not mine:
            continue
        eff_c = _median(mine, lambda r: r.efficiency(r.wall_s))
        eff = _median(mine, lambda r: r.efficiency(r.seconds))
        eff_x = _median(mine, lambda r: r.efficiency(r.transfer_seconds))
        verdict = "met" if eff_c >= target else "met on flash s only" if eff >= target else "MISSED"
        lines.append(
            f"  {baud} baud, 1 MiB: efficiency {eff_c:.3f} whole command, {eff:.3f} flash s, "
            f"{eff_x:.3f} transfer; target >= {target:.2f}: {verdict}"
        )
    if lines:
        print()
        print("targets (medians over runs):")
        print("\n".join(lines))


def wire_check(runs: list[Run]) -> bool:
    """Per implementation, baud and size: the transfer efficiency (median) against the wire.

    Returns False when one is above WIRE_LIMIT: an implementation that moves image bytes
    faster than its line rate does not pace its UART, and its figures cannot be compared.
    """
    keys = sorted({(r.baud, r.size, IMPLS.index(r.impl)) for r in runs})
    if {r.impl for r in runs} <= {"python"}:
        return True  # the default table: the targets above are the check
    print()
    print(f"pacing per implementation (transfer efficiency, median; must be <= {WIRE_LIMIT:.2f}):")
    ok = True
    for baud, size, index in keys:
        impl = IMPLS[index]
        mine = [r for r in runs if (r.baud, r.size, r.impl) == (baud, size, impl)]
        eff = _median(mine, lambda r: r.efficiency(r.transfer_seconds))
        eff_flash = _median(mine, lambda r: r.efficiency(r.seconds))
        verdict = "ok" if eff <= WIRE_LIMIT else "FASTER THAN THE WIRE"
        ok = ok and eff <= WIRE_LIMIT
        print(
            f"  {impl:<6} {baud:>7} baud, {_size_text(size):>7}: transfer {eff:.3f}, "
            f"flash s {eff_flash:.3f} of the link byte rate: {verdict}"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only 64 KiB images")
    parser.add_argument("--sizes", type=_csv(parse_size), help="e.g. 64K,1M (default both)")
    parser.add_argument("--bauds", type=_csv(int), help="default 115200,460800,921600")
    parser.add_argument("--repeat", type=int, default=1, help="runs per baud and size")
    parser.add_argument("--turnaround-ms", type=float, default=2.0, help="sim turnaround")
    parser.add_argument("--model", help="sim MCU model (default: the sim's default)")
    parser.add_argument(
        "--impls",
        type=_csv(str),
        default=("python",),
        help="sim --impl to run, e.g. python,c,qemu (default python)",
    )
    parser.add_argument("--json", type=Path, help="also write all results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work dir with the logs")
    args = parser.parse_args(argv)
    sizes = args.sizes or ((64 * 1024,) if args.quick else SIZES)
    bauds = args.bauds or BAUDS
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if any(b <= 0 for b in bauds):
        parser.error("--bauds must be positive (efficiency needs a paced link)")
    if not args.impls or any(i not in IMPLS for i in args.impls):
        parser.error(f"--impls takes {','.join(IMPLS)}")

    work = Path(tempfile.mkdtemp(prefix="bench-flash-"))
    runs: list[Run] = []
    failures: list[str] = []
    header_done = False
    status = 0
    try:
        cases = [(b, s, r, i) for b in bauds for s in sizes for r in range(args.repeat)
                 for i in args.impls]  # fmt: skip
        for baud, size, rep, impl in cases:
            try:
                run = run_one(baud, size, rep, work, args.model, args.turnaround_ms, impl)
            except BenchError as exc:
                # One bad run (reported, logs kept) must not lose the others.
                what = f"{impl}, {baud} baud, {_size_text(size)}, run {rep + 1}"
                failures.append(f"{what}: {exc}")
                print(f"FAILED {what}: {exc}", file=sys.stderr, flush=True)
                continue
            if not header_done:
                print_header(args.turnaround_ms, run.geometry)
                header_done = True
            runs.append(run)
            print(format_run(run), flush=True)
        if args.repeat > 1:
            print_medians(runs)
        print_targets(runs)
        if not wire_check(runs):
            status = 1
        if failures:
            print(f"\n{len(failures)} run(s) FAILED (logs kept in {work}):", file=sys.stderr)
            for line in failures:
                print(f"  {line}", file=sys.stderr)
            args.keep = True
            status = 1
    except KeyboardInterrupt:
        print("\ninterrupted; subprocesses stopped", file=sys.stderr)
        status = 130
    finally:
        if args.json is not None and runs:
            args.json.write_text(
                json.dumps(
                    [
                        {
                            "impl": r.impl,
                            "baud": r.baud,
                            "size": r.size,
                            "run": r.rep + 1,
                            "turnaround_ms": r.turnaround_ms,
                            "geometry": r.geometry,
                            "flash_cpu_s": r.cpu_s,
                            "sim_cpu_s": r.sim_cpu_s,
                            "flash_process_wall_s": r.wall_s,
                            "efficiency": r.efficiency(r.seconds),
                            "efficiency_transfer": r.efficiency(r.transfer_seconds),
                            "result": r.result,
                        }
                        for r in runs
                    ],
                    indent=2,
                )
                + "\n"
            )
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
