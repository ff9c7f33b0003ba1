"""CRC-32 parameters, checked against a bit-by-bit reference and at frame level."""

from __future__ import annotations

import random
import zlib

from cobs import cobs

from protocols.errors import CrcError
from protocols.mcugw.codec import BadFrame, Codec, PacketReceived
from protocols.mcugw.crc import crc32
from protocols.mcugw.framing import encode_frame
from protocols.mcugw.packets import HelloRequest

#: CRC-32 (with xorout) of any data followed by its own CRC, little-endian.
CRC32_RESIDUE = 0x2144DF1C


def _reference_crc32(data: bytes) -> int:
    """Width 32, poly 0x04C11DB7 reflected (0xEDB88320), init and xorout 0xFFFFFFFF."""
    crc = 0xFFFF_FFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB8_8320 if crc & 1 else 0)
    return crc ^ 0xFFFF_FFFF


def test_check_value() -> None:
    assert crc32(b"123456789") == 0xCBF4_3926
    assert _reference_crc32(b"123456789") == 0xCBF4_3926


def test_empty_input() -> None:
    assert crc32(b"") == 0


def test_matches_reference_and_zlib() -> None:
    rng = random.Random("crc")
    for length in (1, 2, 3, 4, 7, 64, 255, 1024):
        data = rng.randbytes(length)
        assert crc32(data) == _reference_crc32(data) == zlib.crc32(data)


def test_frame_crc_covers_header_and_payload_little_endian() -> None:
    wire = encode_frame(0x01, 0x1234, b"\x01\x03")
    body = bytes(cobs.decode(wire[:-1]))
    assert body[:6] == bytes([0x01, 0x01, 0x34, 0x12, 0x02, 0x00])
    assert body[-4:] == crc32(body[:-4]).to_bytes(4, "little")
    assert crc32(body) == CRC32_RESIDUE


def test_frame_with_wrong_crc_is_a_crc_error() -> None:
    wire = encode_frame(0x01, 9, b"\x01\x01")
    body = bytearray(cobs.decode(wire[:-1]))
    body[-1] ^= 0x80  # damage only the CRC, keep COBS and layout valid
    codec = Codec()
    codec.receive_data(bytes(cobs.encode(bytes(body))) + b"\x00")
    event = codec.next_event()
    assert isinstance(event, BadFrame)
    assert isinstance(event.error, CrcError)
    assert codec.stats.crc_errors == 1
    assert codec.stats.frames_in == 0
    codec.receive_data(wire)
    assert codec.next_event() == PacketReceived(9, HelloRequest(1, 1))
