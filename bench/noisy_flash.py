"""Success rate of ``mcu-gateway flash`` through a noisy link (issues 8 and 17).

    python -m bench.noisy_flash [--rate 5e-3] [--drop 5e-3] [--runs 20] [--size 256K]
                                [--baud 0] [--flash-scale 0.05] [--model vmcu-f4]

Each run starts a fresh ``mcu-gateway sim --pty`` that corrupts (``--rate``) and
drops (``--drop``) bytes in both directions with its own seed, runs
``mcu-gateway flash --json`` with a random image, then ``mcu-gateway info
--json``, and records whether both completed and why a failure ended. After a
failed flash it still asks the MCU what it runs: a flash reported failed while
the MCU runs the new image is a *false failure*, counted apart. The table ends
with completed/total and the failures grouped by cause.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any


def _cli() -> list[str]:
    return [sys.executable, "-m", "gateway.cli"]


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("simulator did not announce its pty")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode().strip()


def _size(text: str) -> int:
    units = {"K": 1024, "M": 1024 * 1024}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def _json_tail(out: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        return {}
    try:
        parsed: dict[str, Any] = json.loads(lines[-1])
    except ValueError:
        return {}
    return parsed


def _cause(line: str) -> str:
    """A failure line with its port, numbers and seed-specific bits folded, for grouping."""
    line = re.sub(r"/dev/pts/\d+", "PORT", line)
    return re.sub(r"\d+(\.\d+)?", "N", line)


def _info(port: str, baud: int) -> tuple[dict[str, Any], str]:
    info = subprocess.run(
        [*_cli(), "info", "--port", port, "--baud", str(baud), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    shown = _json_tail(info.stdout)
    if info.returncode != 0 or not shown:
        err = info.stderr.strip().splitlines()
        return {}, err[-1] if err else f"exit {info.returncode}"
    return shown, ""


def _running_sha(shown: dict[str, Any]) -> str | None:
    running = shown.get("running_slot")
    slots = shown.get("slots") or []
    if isinstance(running, int) and 0 <= running < len(slots):
        sha = slots[running].get("sha256")
        return sha if isinstance(sha, str) else None
    return None


def one_run(args: argparse.Namespace, seed: int, work: Path) -> tuple[bool, str, float]:
    data = random.Random(seed).randbytes(_size(args.size))
    image = work / f"fw-{seed}.bin"
    image.write_bytes(data)
    faults = ["--fault", f"corrupt={args.rate}", "--fault", f"seed={seed}"]
    if args.drop:
        faults += ["--fault", f"drop={args.drop}"]
    sim = subprocess.Popen(
        [*_cli(), "sim", "--pty", "--state", str(work / f"mcu-{seed}"), "--model", args.model,
         "--baud", str(args.baud), "--flash-scale", str(args.flash_scale), *faults],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    t0 = time.monotonic()
    try:
        port = _read_line(sim, 20).split(" ", 1)[1]
        flash = subprocess.run(
            [*_cli(), "flash", "--port", port, "--baud", str(args.baud), str(image),
             "--version", "2.0.0", "--json"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        result = _json_tail(flash.stdout)
        if flash.returncode != 0 or not result.get("ok"):
            err = flash.stderr.strip().splitlines()
            cause = "flash: " + (err[-1] if err else f"exit {flash.returncode}")
            shown, _ = _info(port, args.baud)
            if _running_sha(shown) == hashlib.sha256(data).hexdigest():
                cause = "FALSE FAILURE (the MCU runs the new image): " + cause
            return False, cause, 0.0
        shown, err_line = _info(port, args.baud)
        if not shown:
            return False, "info: " + err_line, 0.0
        if _running_sha(shown) != result["sha256"]:
            return False, "info: running image is not the flashed one", 0.0
        return True, f"{result['retransmits']} retransmits", time.monotonic() - t0
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
        if sim.stdout is not None:
            sim.stdout.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.noisy_flash", description=__doc__)
    p.add_argument("--rate", type=float, default=5e-3, help="byte corruption rate, both ways")
    p.add_argument("--drop", type=float, default=5e-3, help="byte loss rate, both ways")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--size", default="256K")
    p.add_argument("--model", default="vmcu-f4")
    p.add_argument("--baud", type=int, default=0, help="link pacing; 0 = unpaced")
    p.add_argument("--flash-scale", type=float, default=0.05)
    args = p.parse_args(argv)
    ok = 0
    causes: Counter[str] = Counter()
    seconds: list[float] = []
    print(f"{'seed':>5} {'result':<8} {'s':>6}  detail", flush=True)
    with tempfile.TemporaryDirectory(prefix="noisy-flash-") as tmp:
        for seed in range(args.first_seed, args.first_seed + args.runs):
            t0 = time.monotonic()
            good, detail, _ = one_run(args, seed, Path(tmp))
            ok += good
            took = time.monotonic() - t0
            if good:
                seconds.append(took)
            else:
                causes[_cause(detail)] += 1
            status = "ok" if good else "FAILED"
            print(f"{seed:>5} {status:<8} {took:>6.1f}  {detail}", flush=True)
    print(
        f"{ok}/{args.runs} completed at corrupt={args.rate} drop={args.drop} (both ways), "
        f"{args.size} images"
        + (f", median {statistics.median(seconds):.1f} s per run" if seconds else "")
    )
    for cause, n in causes.most_common():
        print(f"  {n} x {cause}")
    return 0 if ok == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
