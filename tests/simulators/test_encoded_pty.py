"""A power cut during a compressed transfer, with real processes on a pty: the simulator
loses power mid-stream, and the next `flash` resumes at a block boundary (§17.3)."""

from __future__ import annotations

import asyncio
import hashlib
import lzma
import random
from pathlib import Path

import pytest

from protocols.mcugw.constants import Status
from protocols.mcugw.encoding import (
    HEADER_SIZE,
    LZMA_FILTERS,
    Block,
    Codec,
    DictSource,
    Encoded,
    compress,
    thumb_code,
)
from protocols.mcugw.errors import DeviceRejected
from protocols.mcugw.session import BootloaderSession
from protocols.transport import open_transport
from tests.sim_harness import SimProcess, cli, cli_json
from tests.simulators.test_mcu_pty import FAST


def _code_like(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(4) for _ in range(700)]
    return b"".join(rng.choice(words) for _ in range(n // 4))


@pytest.mark.parametrize(
    ("impl", "thumb"),
    [("python", False), ("c", False), ("qemu", False), ("python", True), ("c", True)],
)
def test_a_power_cut_mid_stream_resumes_at_a_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str, thumb: bool
) -> None:
    size = 384 * 1024  # six 64 KiB LZMA (or, for Thumb code, LZMA_THUMB) blocks
    image = tmp_path / "fw.bin"
    data = thumb_code(random.Random(5), size) if thumb else _code_like(5, size)
    image.write_bytes(data)
    sim = SimProcess(tmp_path / "mcu", (*FAST, "--impl", impl, "--model", "vmcu-f4"))
    sim.start(["--fault", "cut-at=70%"])
    try:
        argv = ("--baud", "0", str(image), "--version", "2.0.0")
        code, _, err = cli(capsys, "flash", "--port", sim.port, *argv)
        assert code != 0 and "error" in err
        assert sim.wait_exit(timeout=10) == 3  # the simulator lost power mid-stream
        sim.start()  # power back on: a new pty
        code, result, err = cli_json(capsys, "flash", "--port", sim.port, *argv)
        assert code == 0, err
        assert result["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        details = result.get("details", result)
        assert details["encoding"] == "compressed"
        if thumb:  # LZMA_THUMB blocks, resumed at one of their ends
            assert details["streamBytes"] == len(compress(data, thumb=True).stream)
        # Resumed at a block end (in image bytes, a multiple of 64 KiB), not at zero.
        assert result["resumed_from"] > 0 and result["resumed_from"] % (64 * 1024) == 0
        assert result["wire_bytes_tx"] < 0.6 * details["streamBytes"]
    finally:
        sim.stop()


@pytest.mark.parametrize("impl", ["python", "c", "qemu"])
async def test_an_lzma_end_mark_before_its_length_is_refused_and_the_mcu_lives(
    tmp_path: Path, impl: str
) -> None:
    """Issue 17 item 5: the rest of an over-long LZMA block, in the next DATA frame,
    raised EOFError in the simulator and the process died (the twin said unplugged)."""
    image = bytes(4096) + _code_like(6, 12 * 1024)
    payload = lzma.compress(image[:4096], format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    end_mark = HEADER_SIZE + len(payload)
    # Garbage after the end mark, reaching into the next DATA frame (a frame holds
    # 256 to 2048 bytes, by model), within the enc_len limit of §17.1.
    extra = bytes(range(256)) * 10
    block = Block(0, 4096, Codec.LZMA, DictSource.NONE, 0, 0, payload + extra)
    stream = block.encode() + compress(image[4096:]).stream
    assert end_mark < 256 and end_mark + len(extra) > 2048
    prepared = Encoded(
        flags_delta=False,
        stream=stream,
        image_size=len(image),
        image_sha256=hashlib.sha256(image).digest(),
        base_sha256=bytes(32),
        block_ends=(len(block.encode()), len(stream)),
    )
    sim = SimProcess(tmp_path / "mcu", (*FAST, "--impl", impl)).start()
    try:
        transport = await open_transport(sim.port, 0)
        try:
            session = BootloaderSession(transport, 0)
            async with asyncio.timeout(30):
                with pytest.raises(DeviceRejected) as exc:
                    await session.flash(b"", "2.0.0", prepared=prepared)
                assert exc.value.status is Status.DECODE_ERROR
                await session.hello()  # the MCU is alive and answering
        finally:
            await transport.close()
        assert sim.proc is not None and sim.proc.poll() is None
    finally:
        sim.stop()


def _pack(capsys: pytest.CaptureFixture[str], tmp: Path, image: bytes, version: str) -> Path:
    (tmp / f"{version}.bin").write_bytes(image)
    out = tmp / f"{version}.mcufw"
    code, _, err = cli(capsys, "image", "pack", str(tmp / f"{version}.bin"), "-o", str(out),
                       "--version", version, "--provider", "contoso", "--name", "app",
                       "--manufacturer", "contoso", "--model", "vmcu-f4",
                       "--key", str(tmp / "rel.key"))  # fmt: skip
    assert code == 0, err
    return out


@pytest.mark.parametrize("impl", ["python", "c", "qemu"])
def test_flash_takes_a_published_delta_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str
) -> None:
    """Issue 21 item 6: a hardware engineer tries a published delta from the CLI; an MCU
    without DELTA gets an error that says so (not "this MCU (or path)")."""
    old = _code_like(7, 48 * 1024)
    new = old[:9000] + b"a small code change" + old[9000:]
    assert cli(capsys, "image", "keygen", "--out", str(tmp_path / "rel"))[0] == 0
    pkgs = {v: _pack(capsys, tmp_path, img, v) for v, img in (("1.0.0", old), ("1.1.0", new))}
    patch = tmp_path / "delta.mcufw"
    key = str(tmp_path / "rel.key")
    code, _, err = cli(capsys, "image", "delta", "--from", str(pkgs["1.0.0"]), "--to",
                       str(pkgs["1.1.0"]), "-o", str(patch), "--key", key)  # fmt: skip
    assert code == 0, err
    trust = ("--trust", str(tmp_path / "rel.pub"))
    for decoders in (True, False):
        extra = () if decoders else ("--no-decoders",)
        sim = SimProcess(
            tmp_path / f"mcu-{decoders}", (*FAST, "--impl", impl, "--model", "vmcu-f4")
        )
        sim.start(list(extra))
        try:
            code, _, err = cli(capsys, "flash", "--port", sim.port, "--baud", "0", *trust,
                               str(pkgs["1.0.0"]))  # fmt: skip
            assert code == 0, err
            code, result, err = cli_json(capsys, "flash", "--port", sim.port, "--baud", "0",
                                         *trust, str(patch))  # fmt: skip
            if not decoders:
                assert code != 0 and "does not advertise DELTA" in result["error"], result
                continue
            assert code == 0, err
            assert result["sha256"] == hashlib.sha256(new).hexdigest()
            details = result.get("details", result)
            assert details["encoding"] == "delta", details
            assert result["wire_bytes_tx"] < 0.1 * len(new)
        finally:
            sim.stop()


@pytest.mark.parametrize("impl", ["python", "c", "qemu"])
def test_thumb_code_is_sent_branch_filtered_and_installs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], impl: str
) -> None:
    """Issue 21: the C builds advertise THUMB and decode LZMA_THUMB blocks (§17.1): BL
    pairs at every page edge, back-references filtered again from the slot."""
    image = tmp_path / "fw.bin"
    code = thumb_code(random.Random(9), 96 * 1024 + 1002)
    image.write_bytes(code)
    filtered = compress(code, thumb=True)
    assert Codec.LZMA_THUMB in {b[12] for b in _headers(filtered.stream)}
    sim = SimProcess(tmp_path / "mcu", (*FAST, "--impl", impl, "--model", "vmcu-f4")).start()
    try:
        code_, result, err = cli_json(capsys, "flash", "--port", sim.port, "--baud", "0",
                                      str(image), "--version", "2.0.0")  # fmt: skip
        assert code_ == 0, err
        assert result["sha256"] == hashlib.sha256(code).hexdigest()  # VERIFY passed
        assert result.get("details", result)["streamBytes"] == len(filtered.stream)
    finally:
        sim.stop()


def _headers(stream: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(stream):
        out.append(stream[pos : pos + HEADER_SIZE])
        pos += HEADER_SIZE + int.from_bytes(stream[pos + 8 : pos + 12], "little")
    return out
