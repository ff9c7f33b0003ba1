"""CLI conventions users bring from esptool, stm32loader and mcumgr, and one policy per input."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

import pytest
from serial.tools.list_ports_common import ListPortInfo

from gateway.cli import build_parser, main
from gateway.cli.ports import row_of
from protocols.mcuboot.image import build_image
from tests.sim_harness import cli, cli_json, running_sim

FAST = ("--baud", "0", "--flash-scale", "0.05")


def _parsers(
    parser: argparse.ArgumentParser, name: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                out += _parsers(p, f"{name} {sub}".strip())
    return out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == "mcu-gateway 0.1.0"


def test_every_help_text_shows_every_default() -> None:
    for name, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "%%" not in text, name
        flat = " ".join(text.split())
        for action in parser._actions:
            shown = action.default not in (None, False, [], "", argparse.SUPPRESS)
            if shown and action.option_strings and action.help != argparse.SUPPRESS:
                # The option's own help line names its default.
                line = action.help or ""
                assert "default" in line or f"(default: {action.default})" in flat, (
                    f"{name} {action.option_strings[0]}"
                )


def test_sim_help_shows_percent_signs_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    out = capsys.readouterr().out
    assert "cut-at=N|P%  " in out and "P% of the image" in out and "%%" not in out


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, why in (
        (["flash", "-p", "loop://", "-b", "-5", "fw.bin"], "-5 is not a baud rate"),
        (["flash", "-p", "loop://", "--fast-baud", "123", "fw.bin"], "123 is not a standard"),
        (["info", "-p", "loop://", "--baud", "fast"], "'fast' is not a baud rate"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"mcu-gateway {argv[0]}: error: ") and why in err


def test_port_and_baud_short_forms_and_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        code, facts, _ = cli_json(capsys, "info", "-p", sim.port, "-b", "0")
        assert (code, facts["installed_version"]) == (0, "1.0.0")
        monkeypatch.setenv("MCU_GATEWAY_PORT", sim.port)
        code, facts, _ = cli_json(capsys, "info", "-b", "0")
        assert (code, facts["installed_version"]) == (0, "1.0.0")
    monkeypatch.delenv("MCU_GATEWAY_PORT")
    with pytest.raises(SystemExit):
        main(["info"])
    assert "the following arguments are required: -p/--port" in capsys.readouterr().err


def test_ports_lists_vid_pid_and_probes_each_bootloader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    usb = ListPortInfo("/dev/ttyACM0", skip_link_detection=True)
    usb.vid, usb.pid, usb.description, usb.serial_number = 0x0483, 0x5740, "STM32 VCP", "A1B2"
    row = row_of(usb)
    assert (row.vid_pid, row.description, row.serial_number) == ("0483:5740", "STM32 VCP", "A1B2")
    stm32 = ("--bootloader", "stm32-rom", "--boot0", "high", *FAST)
    with running_sim(tmp_path / "a", *FAST) as ours, running_sim(tmp_path / "b", *stm32) as rom:
        code, out, err = cli(capsys, "ports", "--probe", "-b", "0", ours.port, rom.port)
        assert code == 0, err
        lines = {line.split()[0]: line for line in out.splitlines()}
        assert "mcugw" in lines[ours.port] and "vmcu-f4" in lines[ours.port]
        assert "stm32-rom" in lines[rom.port]
        code, out, _ = cli(capsys, "ports", "--json", ours.port)
        rows = [json.loads(line) for line in out.splitlines()]
        assert {"device": ours.port, "bootloader": ""}.items() <= next(
            r for r in rows if r["device"] == ours.port
        ).items()


def test_trace_shows_the_frames_on_the_wire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        code, _, err = cli(
            capsys, "--trace", "info", "-p", sim.port, "-b", "0", "--bootloader", "mcugw"
        )
    assert code == 0
    tx = [line for line in err.splitlines() if f"{sim.port} tx " in line]
    rx = [line for line in err.splitlines() if f"{sim.port} rx " in line]
    assert tx and rx
    assert any(line.endswith(" 00") for line in tx)  # one frame per line, delimiter last
    bytes.fromhex(tx[0].split(" tx ", 1)[1].replace(" ", ""))  # hex, as promised


def test_one_name_for_the_trust_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k"
    assert cli(capsys, "image", "keygen", "--out", str(key))[0] == 0
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x01" * 1000)
    pkg = tmp_path / "fw.mcufw"
    assert cli(capsys, "image", "pack", str(fw), "-o", str(pkg), "--key", f"{key}.key",
               "--provider", "p", "--name", "n", "--version", "1.0.0",
               "--manufacturer", "m", "--model", "x")[0] == 0  # fmt: skip
    for flag in ("--trust", "--pubkey"):  # the old name still works
        code, _, err = cli(capsys, "image", "verify", str(pkg), flag, f"{key}.pub")
        assert code == 0, err
    with pytest.raises(SystemExit):
        main(["image", "verify", "--help"])
    assert "--pubkey" not in capsys.readouterr().out
    code, _, err = cli(capsys, "image", "verify", str(pkg), "--trust", str(tmp_path / "nope.pub"))
    assert code != 0
    assert err.startswith("mcu-gateway image verify: error: ")  # names the sub-command


def _package(tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str) -> tuple[Path, Path]:
    key = tmp_path / "release"
    if not (tmp_path / "release.key").exists():
        assert cli(capsys, "image", "keygen", "--out", str(key))[0] == 0
    fw = tmp_path / f"fw-{version}.bin"
    fw.write_bytes(random.Random(version).randbytes(4000))
    pkg = tmp_path / f"fw-{version}.mcufw"
    assert cli(capsys, "image", "pack", str(fw), "-o", str(pkg), "--key", f"{key}.key",
               "--provider", "contoso", "--name", "app", "--version", version,
               "--manufacturer", "contoso", "--model", "vmcu-f4")[0] == 0  # fmt: skip
    return pkg, tmp_path / "release.pub"


def test_trust_errors_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg, _ = _package(tmp_path, capsys, "2.0.0")
    with running_sim(tmp_path / "mcu", *FAST) as sim:
        port = ["-p", sim.port, "-b", "0", str(pkg)]
        code, _, err = cli(capsys, "flash", *port)
        assert code == 1
        assert "no --trust key given" in err and len(err.strip().splitlines()) == 1
        code, _, err = cli(capsys, "flash", *port, "--trust", str(tmp_path / "missing.pub"))
        assert code == 1
        assert f"cannot read --trust {tmp_path / 'missing.pub'}: No such file" in err
        code, facts, _ = cli_json(capsys, "info", "-p", sim.port, "-b", "0")
        assert facts["slots"][1]["state"] == "empty"  # nothing was written


def test_a_raw_image_gets_the_downgrade_check_a_package_gets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(random.Random(5).randbytes(3000))
    with running_sim(tmp_path / "mcu", *FAST, "--app-version", "1.5.0") as sim:
        port = ["-p", sim.port, "-b", "0", str(fw)]
        code, _, err = cli(capsys, "flash", *port, "--version", "1.2.0")
        assert code == 1
        assert "DOWNGRADE: version 1.2.0 is older than installed 1.5.0" in err
        assert "--allow-downgrade" in err
        code, facts, _ = cli_json(capsys, "info", "-p", sim.port, "-b", "0")
        assert facts["slots"][1]["state"] == "empty"
        code, result, err = cli_json(
            capsys, "flash", *port, "--version", "1.2.0", "--allow-downgrade"
        )
        assert (code, result["running_version"]) == (0, "1.2.0"), err


def test_fast_baud_a_bootloader_cannot_use_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x5a" * 2000)
    stm32 = ("--bootloader", "stm32-rom", "--boot0", "high", *FAST)
    with running_sim(tmp_path / "rom", *stm32) as sim:
        argv = ["-p", sim.port, "-b", "0", "--bootloader", "stm32-rom", str(fw)]
        code, _, err = cli(capsys, "flash", *argv, "--version", "1.0.0", "--fast-baud", "921600")
    assert code == 1
    assert f"--fast-baud 921600: the stm32-rom bootloader on {sim.port} cannot change" in err


def test_an_mcuboot_image_brings_its_own_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "zephyr.signed.bin"
    image.write_bytes(build_image(random.Random(7).randbytes(6000), "2.1.0"))
    # commands=full: an app build with os info, so the board reports its hardware id.
    sim_args = ("--bootloader", "mcuboot", "--baud", "0", "--flash-scale", "0.1", "--fault",
                "commands=full")  # fmt: skip
    with running_sim(tmp_path / "mcuboot", *sim_args) as sim:
        port = ["-p", sim.port, "-b", "0", "--bootloader", "mcuboot", str(image)]
        code, _, err = cli(capsys, "flash", *port, "--version", "3.0.0")
        assert code == 1
        assert "--version 3.0.0 disagrees with" in err and "(2.1.0)" in err
        code, result, err = cli_json(capsys, "flash", *port)
    assert code == 0, err
    assert (result["version"], result["running_version"]) == ("2.1.0", "2.1.0")
    assert result["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
