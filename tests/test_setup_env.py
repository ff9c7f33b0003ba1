"""`make test`'s set-up step (tests/setup_env.sh) with tools hidden from PATH.

Each case runs the real script under /bin/sh with a PATH holding only wrappers
for the tools it may see; `apt-get`, `sudo` and `id` are stand-ins that record
what they were asked, so nothing is installed on this machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "setup_env.sh"
LN = shutil.which("ln")
TOOLS = (
    "make",
    "cc",
    "arm-none-eabi-gcc",
    "qemu-system-arm",
    "chromium",
    "stm32flash",
    "grep",
    "tr",
)


def _wrap(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _path(tmp_path: Path, hide: tuple[str, ...] = (), uid: int = 0) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        real = shutil.which(tool)
        assert real, f"{tool} is needed on this machine for the suite itself"
        if tool not in hide:
            _wrap(bin_dir, tool, f'exec {real} "$@"')
    _wrap(bin_dir, "id", f"echo {uid}")
    return bin_dir


def _run(bin_dir: Path, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "PYTHON": python, "TMPDIR": str(bin_dir.parent)}
    return subprocess.run(
        ["/bin/sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60
    )


def _fake_apt(bin_dir: Path, status: int = 0) -> Path:
    """An apt-get that logs its arguments and 'installs' a package by unhiding its tool."""
    calls = bin_dir.parent / "apt-calls"
    unhide = "".join(
        f'case " $* " in *" {package} "*) {LN} -sf {shutil.which(tool)} {bin_dir}/{tool};; esac\n'
        for package, tool in (("qemu-system-arm", "qemu-system-arm"), ("chromium", "chromium"))
    )
    body = f'echo "$@" >> {calls}\n[ {status} = 0 ] || exit {status}\n{unhide}exit 0'
    _wrap(bin_dir, "apt-get", body)
    return calls


def test_nothing_missing_is_silent(tmp_path: Path) -> None:
    out = _run(_path(tmp_path))
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("hidden", "packages"),
    [
        ("qemu-system-arm", "qemu-system-arm"),
        ("chromium", "chromium fonts-liberation"),
        ("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi"),
        ("cc", "gcc libc6-dev"),
    ],
)
def test_a_user_without_root_gets_one_line_naming_the_packages(
    tmp_path: Path, hidden: str, packages: str
) -> None:
    out = _run(_path(tmp_path, hide=(hidden,), uid=1000))  # no sudo on this PATH
    assert out.returncode == 1
    hint = "make test: missing Debian packages; install them with: sudo apt-get install -y"
    assert out.stderr == f"{hint} {packages}\n"


def test_root_installs_what_is_missing_then_goes_on(tmp_path: Path) -> None:
    bin_dir = _path(tmp_path, hide=("qemu-system-arm", "chromium"))
    calls = _fake_apt(bin_dir)
    out = _run(bin_dir)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "make test: installing qemu-system-arm chromium fonts-liberation\n"
    assert calls.read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends qemu-system-arm",
        "install -y -qq chromium fonts-liberation",  # with its recommends
    ]


def test_still_missing_after_apt_get_is_named(tmp_path: Path) -> None:
    bin_dir = _path(tmp_path, hide=("cc",))
    _fake_apt(bin_dir)  # "succeeds" but installs no compiler
    out = _run(bin_dir)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == "make test: still missing after apt-get: gcc libc6-dev"


def test_sudo_is_used_when_not_root(tmp_path: Path) -> None:
    bin_dir = _path(tmp_path, hide=("qemu-system-arm",), uid=1000)
    calls = _fake_apt(bin_dir)
    sudo_log = tmp_path / "sudo-calls"
    _wrap(bin_dir, "sudo", f'printf "%s\\n" "$*" >> {sudo_log}\n[ "$1" = -n ] && shift\n"$@"')
    out = _run(bin_dir)
    assert out.returncode == 0, out.stderr
    assert "install -y -qq --no-install-recommends qemu-system-arm" in calls.read_text()
    assert "-n apt-get install" in sudo_log.read_text()


def test_a_failing_apt_get_stops_with_one_line(tmp_path: Path) -> None:
    bin_dir = _path(tmp_path, hide=("qemu-system-arm",))
    _fake_apt(bin_dir, status=100)
    out = _run(bin_dir)
    assert out.returncode == 1
    last = out.stderr.splitlines()[-1]
    assert last.startswith("make test: apt-get install qemu-system-arm failed (log: ")


def test_an_old_python_stops_at_once(tmp_path: Path) -> None:
    bin_dir = _path(tmp_path)
    _wrap(bin_dir, "python3.9", "echo 3.9.2; exit 1")
    out = _run(bin_dir, python="python3.9")
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "make test: needs Python >= 3.11, python3.9 is 3.9.2: "
        "install python3.11 or newer and run make test PYTHON=python3.11"
    ]


def test_make_test_runs_the_set_up_step_first(tmp_path: Path) -> None:
    bin_dir = _path(tmp_path)
    _wrap(bin_dir, "python3.9", "echo 3.9.2; exit 1")
    out = subprocess.run(
        [str(bin_dir / "make"), "-s", "-C", str(ROOT), "test", "PYTHON=python3.9"],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert out.stderr.splitlines()[0].startswith("make test: needs Python >= 3.11")
