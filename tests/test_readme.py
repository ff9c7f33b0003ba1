"""The README's quick example, followed literally: its shell blocks run as written.

The first block starts the simulator (it runs until Ctrl-C, so the test starts it
with the same arguments and stops it); every later block runs in bash with
``set -e`` in a fresh directory, with the port the simulator printed in place of
the README's ``/dev/pts/3``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from simulators.mcu import launch
from tests.net import addr

ROOT = Path(__file__).resolve().parents[1]
README_PORT = "/dev/pts/3"


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _blocks(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_the_quick_example_works_as_written(tmp_path: Path) -> None:
    first, *rest = _blocks(_section("Quick example with the simulator"))
    sim_line = first.splitlines()[0]
    argv = shlex.split(sim_line)
    assert argv[:3] == ["mcu-gateway", "sim", "--pty"], sim_line
    args = argv[3:]
    args[args.index("--state") + 1] = str(tmp_path / "vmcu")  # not the README's /tmp path
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = Path(sys.executable).parent  # the virtual environment the README activates
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    outputs = []
    with launch.running(args) as sim:
        for block in rest:
            script = "set -euo pipefail\n" + block.replace(README_PORT, sim.port)
            run = subprocess.run(
                ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                timeout=240, check=False,
            )  # fmt: skip
            assert run.returncode == 0, (
                f"{block}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
            )
            outputs.append(run.stdout)
    joined = "\n".join(outputs)
    assert "confirmed: version 2.0.0 in slot 1" in joined
    assert "confirmed: version 2.1.0" in joined
    assert (work / "fw-2.0.0-2.1.0.mcufw").stat().st_size < (work / "fw-2.1.0.mcufw").stat().st_size


def test_the_manual_lab_works_as_written(tmp_path: Path) -> None:
    """Quick-example packages first, then the lab's blocks in one shell (their jobs persist)."""
    quick = _blocks(_section("Quick example with the simulator"))
    lab = _blocks(_section("From the demo to a manual lab"))
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    # The packages the lab deploys, made by the quick example's commands that do not
    # need an MCU (keygen and pack).
    make = [
        line for line in "\n".join(quick[1:]).replace("\\\n", " ").splitlines()
        if line.startswith(("head ", "mcu-gateway image keygen", "mcu-gateway image pack", "cp ",
                            "printf "))
    ]  # fmt: skip
    host = addr(31, 2)  # the README's 127.0.0.2, on this run's own loopback address
    script = "\n".join([
        "set -euo pipefail",
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT",  # the README's `kill %1 %2 %3 %4`
        *make,
        *(block.replace("127.0.0.2", host) for block in lab),
    ])  # fmt: skip
    run = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, f"--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    assert "done: ring 1 (all): 1 of 1 MCUs current" in run.stdout
    assert "vmcu-f4 │ 2.1.0" in run.stdout
