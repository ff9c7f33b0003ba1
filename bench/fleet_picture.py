"""One failure among 10,000 MCUs, visible in the ``fleet status --html`` picture.

Seeds ``--mcus`` simulated MCU twins (``bench.fleet_sim``) and two gateways'
own twins into the emulator, marks one MCU failed and four updating, runs the
real ``mcu-gateway fleet status --html`` command, then renders the page in
headless Chromium and measures on the screenshot how wide the failure's red
segment is (columns with at least 20 red pixels: a bar is 26 px tall).

Reported: the MCU count the command printed (gateways must not count), the
counts written on the status bar, and the red segment's width in pixels
(target: at least 6, where a proportional bar would give it 0.05).

    python -m bench.fleet_picture [--mcus 10000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.fleet_sim import seed, start_hub


def red_columns(png: Path) -> int:
    from PIL import Image

    image = Image.open(png).convert("RGB")
    width, height = image.size
    pixels: Any = image.load()
    return sum(
        1 for x in range(width)
        if sum(1 for y in range(height) if _red(pixels[x, y])) >= 20
    )  # fmt: skip


def _red(p: tuple[int, int, int]) -> bool:
    return p[0] > 180 and p[1] < 80 and p[2] < 80


def run(args: argparse.Namespace, root: Path) -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        raise SystemExit("needs Debian's chromium package")
    emulator = start_hub(root / "hub", "127.85.0.", 60.0)
    try:
        ids = seed(emulator, {"vmcu-f4": args.mcus}, version="2.0.0")
        failed, busy = ids[4242 % len(ids)], ids[:4]

        def mark(server: Any) -> None:
            for d in busy:
                fw = {"fwUpdateStatus": "downloading", "pendingFwVersion": "2.0.0", "progress": 40}
                server.hub.twins[d] = server.hub.twins[d].patch_reported({"firmware": fw})
            error = {"code": "HASH_MISMATCH", "phase": "verifying", "message": "image hash differs",
                     "at": "2026-12-06T12:00:00Z"}  # fmt: skip
            fw = {"fwUpdateStatus": "error", "currentFwVersion": "1.0.0", "error": error}
            server.hub.twins[failed] = server.hub.twins[failed].patch_reported({"firmware": fw})

        emulator.call(mark)
        cs = root / "service.cs"
        cs.touch(mode=0o600)
        cs.write_text(emulator.facts.service_connection_string)
        html = root / "fleet.html"
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "fleet", "status", "--service-cs-file", str(cs),
             "--ca-file", emulator.facts.ca_path, "--html", str(html)],
            capture_output=True, check=True, timeout=300, text=True,
        ).stdout  # fmt: skip
    finally:
        emulator.stop()
    shot = root / "fleet.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1100,700", html.as_uri()],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    first = out.splitlines()[0]
    bar = re.search(r"\d+: current \d+(, \w+ \d+)*", html.read_text())
    width = red_columns(shot)
    print(f"fleet status: {first}")
    print(f"status bar label: {bar.group(0) if bar else '(none)'}")
    print(f"the failed MCU's red segment: {width} px wide on screen (target >= 6)")
    print(f"failure row lists {failed}: {failed in html.read_text()}")
    if args.keep_png:
        shutil.copy(shot, args.keep_png)
    return 0 if width >= 6 and f"{args.mcus} MCUs" in first else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mcus", type=int, default=10_000)
    p.add_argument("--keep-png", type=Path, help="copy the screenshot here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-picture-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
