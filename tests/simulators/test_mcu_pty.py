"""Integration: the real CLI over real pseudo-terminals against `mcu-gateway sim` processes."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from tests.sim_harness import SimProcess, cli, cli_json, running_sim

# Unpaced link and 20x faster flash keep these tests quick; the benchmark uses real timings.
FAST = ("--baud", "0", "--flash-scale", "0.05")


@pytest.fixture(params=["python", "c"])
def impl(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Each simulator test runs against the Python virtual MCU and the C reference bootloader."""
    return (*FAST, "--impl", request.param)


def _image(tmp_path: Path, size: int, seed: int = 1, name: str = "fw.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def test_flash_then_info_then_power_cycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: tuple[str, ...]
) -> None:
    image = _image(tmp_path, 200_000)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    sim = SimProcess(tmp_path / "mcu", impl).start()
    try:
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "2.1.0"
        )
        assert code == 0, err
        assert result["ok"] is True
        assert result["outcome"] == "confirmed"
        assert result["sha256"] == digest
        assert result["bytes"] == 200_000
        assert result["wire_bytes_tx"] > 200_000

        code, info, err = cli_json(capsys, "info", "--port", sim.port)
        assert code == 0, err
        assert info["running_version"] == "2.1.0"
        active = info["slots"][info["running_slot"]]
        assert active["sha256"] == digest
        assert active["state"] == "confirmed"

        sim.kill()  # power cut with no warning
        sim.start()
        code, info, err = cli_json(capsys, "info", "--port", sim.port)
        assert code == 0, err
        assert info["mode"] == "app"
        assert info["running_version"] == "2.1.0"
        assert info["slots"][info["running_slot"]]["sha256"] == digest
    finally:
        sim.stop()


def test_noisy_link_both_directions_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: tuple[str, ...]
) -> None:
    image = _image(tmp_path, 256 * 1024, seed=2)
    faults = ("--fault", "corrupt=0.001", "--fault", "drop=0.0005", "--fault", "seed=42")
    with running_sim(tmp_path / "mcu", *impl, *faults) as sim:
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "3.0.0"
        )
        assert code == 0, err
        assert result["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        assert result["retransmits"] > 0
        # INFO's 174-byte answer is the frame most exposed to the noise: its damaged
        # copies are resent at once (docs/protocol.md §6), not after a timeout each.
        code, info, err = cli_json(capsys, "info", "--port", sim.port)
        assert code == 0, err
        assert info["slots"][info["running_slot"]]["sha256"] == result["sha256"]


def test_power_cut_mid_transfer_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: tuple[str, ...]
) -> None:
    size = 256 * 1024
    image = _image(tmp_path, size, seed=3)
    sim = SimProcess(tmp_path / "mcu", impl)
    sim.start(["--fault", "cut-at=50%"])
    try:
        code, _, err = cli(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "2.0.0"
        )
        assert code != 0
        assert sim.wait_exit(timeout=10) == 3  # the simulator lost power
        assert "error" in err
        sim.start()
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "2.0.0"
        )
        assert code == 0, err
        assert result["resumed_from"] >= 0.4 * size
        assert result["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        # Only the tail went over the wire the second time.
        assert result["wire_bytes_tx"] < 0.7 * size
    finally:
        sim.stop()


def test_app_that_never_confirms_is_rolled_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: tuple[str, ...]
) -> None:
    image = _image(tmp_path, 64 * 1024, seed=4)
    with running_sim(tmp_path / "mcu", *impl, "--fault", "crash-on-boot=2.0.0") as sim:
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "2.0.0"
        )
        assert code == 1
        assert result["outcome"] == "rolled_back"
        assert result["running_version"] == "1.0.0"
        assert "rolled back to 1.0.0" in err
        code, info, _ = cli_json(capsys, "info", "--port", sim.port)
        assert info["running_version"] == "1.0.0"
        assert info["slots"][result["slot"]]["state"] == "invalid"
        assert info["slots"][result["slot"]]["boot_count"] >= 1


@pytest.mark.parametrize("model", ["vmcu-l0", "vmcu-h7"])
def test_models_with_different_windows_and_payloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, impl: tuple[str, ...]
) -> None:
    image = _image(tmp_path, 100_003, seed=5)  # odd size: last chunk is padded
    with running_sim(tmp_path / "mcu", *impl, "--model", model) as sim:
        code, result, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "1.2.3"
        )
        assert code == 0, err
        code, info, _ = cli_json(capsys, "info", "--port", sim.port)
        assert info["model"] == model
        assert result["details"]["chunk"] == min(info["details"]["max_data"], 4096)
        assert result["details"]["window"] == info["details"]["window"]
        assert info["slots"][info["running_slot"]]["sha256"] == result["sha256"]


def test_old_protocol_version_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: tuple[str, ...]
) -> None:
    image = _image(tmp_path, 4096)
    with running_sim(tmp_path / "mcu", *impl, "--protocol-version", "0") as sim:
        code, _, err = cli(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "2.0.0"
        )
        assert code != 0
        assert "protocol version 0" in err
        assert "supports versions 1..1" in err


def test_image_larger_than_slot_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: tuple[str, ...]
) -> None:
    image = _image(tmp_path, 300 * 1024)
    with running_sim(tmp_path / "mcu", *impl, "--model", "vmcu-l0") as sim:
        _, before, _ = cli_json(capsys, "info", "--port", sim.port)
        flash_before = (tmp_path / "mcu" / "flash.bin").read_bytes()
        code, _, err = cli(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "2.0.0"
        )
        assert code != 0
        assert "slot holds 262144" in err
        _, after, _ = cli_json(capsys, "info", "--port", sim.port)
        assert after["slots"] == before["slots"]
        assert (tmp_path / "mcu" / "flash.bin").read_bytes() == flash_before


def test_no_such_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "info", "--port", str(tmp_path / "ttyNOPE"))
    assert code != 0
    assert "No such file or directory" in err
    assert len(err.strip().splitlines()) == 1


class _FakePort:
    """A pty whose far end is not a bootloader: it spews garbage, echoes, or stays silent."""

    def __init__(self, behaviour: str) -> None:
        import threading
        import tty

        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.behaviour = behaviour
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import select

        rng = random.Random(9)
        while not self._stop.is_set():
            ready = select.select([self.master], [], [], 0.01)[0]
            data = os.read(self.master, 4096) if ready else b""
            if self.behaviour == "garbage":
                os.write(self.master, rng.randbytes(64))
            elif self.behaviour == "echo" and data:
                os.write(self.master, data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize("behaviour", ["garbage", "echo", "silent"])
def test_port_that_is_not_a_bootloader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], behaviour: str
) -> None:
    fake = _FakePort(behaviour)
    try:
        code, _, err = cli(
            capsys, "flash", "--port", fake.path, str(_image(tmp_path, 1024)), "--version", "2.0.0"
        )
        assert code != 0
        assert f"no bootloader answered on {fake.path}" in err
        assert len(err.strip().splitlines()) == 1
        if behaviour == "garbage":
            assert "garbled frames" in err
    finally:
        fake.close()


def test_state_dir_is_shared_by_c_and_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """flash.bin and device.json mean the same to both implementations."""
    image = _image(tmp_path, 50_000, seed=6)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    state = tmp_path / "mcu"
    with running_sim(state, *FAST, "--impl", "c") as sim:
        code, _, err = cli_json(
            capsys, "flash", "--port", sim.port, "--baud", "0", str(image), "--version", "4.0.0"
        )
        assert code == 0, err
        _, c_info, _ = cli_json(capsys, "info", "--port", sim.port)
    with running_sim(state, *FAST, "--impl", "python") as sim:
        code, info, err = cli_json(capsys, "info", "--port", sim.port)
        assert code == 0, err
    assert info["uid"] == c_info["uid"]
    assert info["running_version"] == "4.0.0"
    assert info["slots"] == c_info["slots"]
    assert info["slots"][info["running_slot"]]["sha256"] == digest
