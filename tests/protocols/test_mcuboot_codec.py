"""SMP console framing, the sans-I/O SMP client and the MCUboot image format."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.mcuboot import client as smp
from protocols.mcuboot.errors import ImageError, SequenceError, SmpProtocolError, SmpRejected
from protocols.mcuboot.framing import BadFrame, ConsoleDecoder, Packet, crc16, encode
from protocols.mcuboot.image import build_image, padding_start, parse_image, parse_version
from tests.mcuboot_tools import imgtool_sign, imgtool_sign_with

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "smp_console.json").read_text()
)
FRAMES = VECTORS["frames"]


def _packets(events: list[Any]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Packet)]


# --- framing ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["crc16_xmodem"])
def test_crc16_is_xmodem(vector: dict[str, Any]) -> None:
    assert crc16(bytes.fromhex(vector["data"])) == vector["crc"]


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_vector_encodes_to_its_wire_bytes(vector: dict[str, Any]) -> None:
    wire = encode(bytes.fromhex(vector["packet"]), vector["line_length"])
    assert wire.hex() == vector["wire"]
    assert all(len(line) + 1 <= vector["line_length"] for line in wire.split(b"\n")[:-1])


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_vector_decodes_whole_bytewise_split_and_after_noise(vector: dict[str, Any]) -> None:
    packet, wire = bytes.fromhex(vector["packet"]), bytes.fromhex(vector["wire"])
    assert _packets(ConsoleDecoder().feed(wire)) == [packet]
    dec = ConsoleDecoder()
    assert _packets([e for b in wire for e in dec.feed(bytes([b]))]) == [packet]
    rng = random.Random(7)
    dec = ConsoleDecoder()
    pos, got = 0, []
    while pos < len(wire):
        n = rng.randrange(1, 40)
        got += dec.feed(wire[pos : pos + n])
        pos += n
    assert _packets(got) == [packet]
    noisy = b"*** Booting Zephyr OS ***\r\n\x04\x14stray continuation\nlog: x" + wire
    dec = ConsoleDecoder()
    assert _packets(dec.feed(noisy)) == [packet]
    assert dec.noise_bytes > 0


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_every_flipped_bit_in_the_payload_is_caught(vector: dict[str, Any]) -> None:
    packet, wire = bytes.fromhex(vector["packet"]), bytes.fromhex(vector["wire"])
    for i, byte in enumerate(wire):
        for bit in range(8):
            damaged = bytearray(wire)
            damaged[i] = byte ^ (1 << bit)
            events = ConsoleDecoder().feed(bytes(damaged))
            # A damaged frame never yields a packet other than the original.
            assert all(p == packet for p in _packets(events)), (i, bit)


def test_crc_error_is_reported_as_such_and_the_next_frame_still_decodes() -> None:
    wire = bytearray(encode(b"\x01\x02\x03\x04" * 40))
    # Damage a base64 char inside the payload so base64 stays valid but the bytes differ.
    at = wire.index(b"\n") - 10
    wire[at] = ord("A") if wire[at] != ord("A") else ord("B")
    good = encode(b"next")
    events = ConsoleDecoder().feed(bytes(wire) + good)
    assert any(isinstance(e, BadFrame) and e.crc for e in events)
    assert _packets(events) == [b"next"]


def test_new_start_drops_an_unfinished_frame() -> None:
    long = encode(bytes(300))
    first_line = long[: long.index(b"\n") + 1]
    events = ConsoleDecoder().feed(first_line + encode(b"short"))
    assert isinstance(events[0], BadFrame)
    assert _packets(events) == [b"short"]


def test_endless_line_noise_is_bounded() -> None:
    dec = ConsoleDecoder(buffer_max=256)
    assert dec.feed(b"\xaa" * 10_000) == []
    assert dec.noise_bytes >= 10_000 - 256
    assert _packets(dec.feed(b"\n" + encode(b"ok"))) == [b"ok"]


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=2000), st.integers(min_value=8, max_value=127))
def test_round_trip(packet: bytes, line_length: int) -> None:
    wire = encode(packet, line_length)
    assert all(len(line) + 1 <= line_length for line in wire.split(b"\n")[:-1])
    assert _packets(ConsoleDecoder().feed(wire)) == [packet]


# --- SMP client ---------------------------------------------------------------------------


def _answer(request: bytes, body: dict[str, Any], *, seq_delta: int = 0, group: int = -1) -> bytes:
    h = smp.SmpHeader.unpack(request)
    payload = cbor2.dumps(body)
    grp = h.group if group < 0 else group
    seq = (h.seq + seq_delta) & 0xFF
    head = smp.SmpHeader(h.op + 1, h.version, 0, len(payload), grp, seq, h.command)
    return encode(head.pack() + payload)


def test_requests_carry_smp_v2_headers_and_cbor() -> None:
    packet = smp.upload(9, 0, b"abc", total=10, sha=b"\x11" * 32)
    header, body = smp.decode_packet(packet)
    assert (header.op, header.version, header.group, header.command, header.seq) == (2, 1, 1, 1, 9)
    assert body == {"off": 0, "data": b"abc", "len": 10, "sha": b"\x11" * 32, "image": 0}
    header, body = smp.decode_packet(smp.upload(10, 512, b"x"))
    assert body == {"off": 512, "data": b"x"}


def test_reply_is_matched_to_its_request() -> None:
    client = smp.SmpClient(first_seq=255)
    seq = client.next_seq()
    request = smp.state_read(seq)
    client.send(request)
    [reply] = client.receive_data(_answer(request, {"images": []}))
    assert isinstance(reply, smp.Reply)
    assert reply.header.seq == 255
    assert client.next_seq() == 0  # wraps at 8 bits


def test_answer_with_another_seq_is_a_sequence_error() -> None:
    client = smp.SmpClient()
    first = smp.state_read(client.next_seq())
    client.send(first)
    # Before the first matched reply, a foreign seq is a leftover of an earlier session.
    assert client.receive_data(_answer(first, {}, seq_delta=7)) == []
    assert client.stale_replies == 1
    client.receive_data(_answer(first, {}))
    request = smp.state_read(client.next_seq())
    client.send(request)
    with pytest.raises(SequenceError, match="seq 2 while waiting for seq 1"):
        client.receive_data(_answer(request, {}, seq_delta=1))


def test_late_answer_to_a_request_given_up_on_is_skipped() -> None:
    client = smp.SmpClient()
    client.synced = True
    first = smp.state_read(client.next_seq())
    client.send(first)
    client.give_up()
    second = smp.state_read(client.next_seq())
    client.send(second)
    events = client.receive_data(_answer(first, {}) + _answer(second, {"images": []}))
    assert [e.header.seq for e in events if isinstance(e, smp.Reply)] == [1]
    assert client.stale_replies == 1


def test_answer_for_another_group_is_a_protocol_error() -> None:
    client = smp.SmpClient()
    request = smp.state_read(client.next_seq())
    client.send(request)
    with pytest.raises(SmpProtocolError, match="group 0 command 0"):
        client.receive_data(_answer(request, {}, group=0))


def test_our_own_request_echoed_back_is_a_protocol_error() -> None:
    client = smp.SmpClient()
    wire = client.send(smp.state_read(client.next_seq()))
    with pytest.raises(SmpProtocolError, match="looped back"):
        client.receive_data(wire)


def test_malformed_cbor_is_a_protocol_error() -> None:
    head = smp.SmpHeader(1, 1, 0, 2, 1, 0, 0).pack()
    with pytest.raises(SmpProtocolError, match="CBOR"):
        smp.decode_packet(head + b"\xff\xff")
    with pytest.raises(SmpProtocolError, match="says 5"):
        smp.decode_packet(smp.SmpHeader(1, 1, 0, 5, 1, 0, 0).pack() + b"\xa0")


def test_errors_v1_and_v2_are_named() -> None:
    h = smp.SmpHeader(3, 1, 0, 0, 1, 0, 1)
    with pytest.raises(SmpRejected) as v2:
        smp.check(smp.Reply(h, {"err": {"group": 1, "rc": 9}}), "upload")
    assert v2.value.name == "IMAGE_NO_FREE_SLOT"
    with pytest.raises(SmpRejected) as v1:
        smp.check(smp.Reply(h, {"rc": 6, "rsn": "busy"}), "upload")
    assert v1.value.name == "EBADSTATE"
    assert "busy" in str(v1.value)
    assert smp.check(smp.Reply(h, {"off": 5, "rc": 0}), "upload") == {"off": 5, "rc": 0}


# --- image format -------------------------------------------------------------------------


def test_built_image_parses_and_hash_is_checked() -> None:
    data = build_image(b"\x5a" * 3000, "2.1.3+9")
    img = parse_image(data)
    assert (img.version, img.header_size, img.image_size) == ("2.1.3.9", 0x200, 3000)
    bad = bytearray(data)
    bad[0x200 + 10] ^= 1
    with pytest.raises(ImageError, match="does not match"):
        parse_image(bytes(bad))
    assert parse_image(bytes(bad), check_hash=False).hash == img.hash


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" * 10, "too short"),
        (b"\x7fELF" + bytes(4000), "no MCUboot image header"),
        (build_image(b"x" * 100, "1.0.0")[:-20], "runs past|TLV"),
    ],
)
def test_not_an_image_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        parse_image(data)


def test_version_parsing() -> None:
    assert parse_version("1.2.3") == (1, 2, 3, 0)
    assert parse_version("1.2.3+4") == parse_version("1.2.3.4") == (1, 2, 3, 4)
    with pytest.raises(ValueError, match="out of range"):
        parse_version("256.0.0")
    with pytest.raises(ValueError, match="not an MCUboot version"):
        parse_version("1.2.3-rc1")


def test_imgtool_image_version_and_hash_match_imgtool_verify(tmp_path: Path) -> None:
    data = imgtool_sign(tmp_path, random.Random(1).randbytes(5000), "1.2.3+7")
    img = parse_image(data)
    out = subprocess.run(
        [sys.executable, "-m", "imgtool.main", "verify", str(tmp_path / "app-1.2.3+7.signed.bin")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert f"Image digest: {img.hash.hex()}" in out
    assert img.version == "1.2.3.7"
    assert img.image_size == 5000


@pytest.mark.parametrize("confirm", [False, True])
def test_padding_is_only_the_tail_imgtool_pad_writes(tmp_path: Path, confirm: bool) -> None:
    padded = imgtool_sign_with(tmp_path, b"\x5a" * 3000, "1.0.0", pad=True, confirm=confirm)
    image = parse_image(padded)
    assert padding_start(padded, image) == image.total_size < len(padded)
    plain = imgtool_sign(tmp_path, b"\x5a" * 3000, "1.0.1")
    assert padding_start(plain, parse_image(plain)) == len(plain)  # nothing to skip
    junk = bytearray(padded)
    junk[image.total_size + 100] = 0x00  # data after the TLVs that is not padding
    assert padding_start(bytes(junk), image) == len(junk)
    no_magic = padded[:-16] + b"\xff" * 16  # 0xFF to the end, but no trailer magic
    assert padding_start(no_magic, image) == len(no_magic)
