"""Hand-made frames for the framing checks: bad CRC, wrong version or length, both COBS forms."""

from __future__ import annotations

from cobs import cobs

from protocols.mcugw.constants import FRAME_VERSION, Opcode
from protocols.mcugw.crc import crc32


def body(
    opcode: int,
    seq: int,
    payload: bytes,
    *,
    version: int = FRAME_VERSION,
    length: int | None = None,
    crc_ok: bool = True,
) -> bytes:
    """A frame body (header, payload, CRC) that may be deliberately wrong in one field."""
    n = len(payload) if length is None else length
    head = bytes([version, opcode]) + seq.to_bytes(2, "little") + n.to_bytes(2, "little")
    crc = crc32(head + payload)
    if not crc_ok:
        crc ^= 0x00010000
    return head + payload + crc.to_bytes(4, "little")


def wire(frame_body: bytes, *, trailing_code: bool = False) -> bytes:
    """COBS plus delimiter; ``trailing_code`` adds the optional 0x01 after a final 0xFF block."""
    return bytes(cobs.encode(frame_body)) + (b"\x01" if trailing_code else b"") + b"\x00"


FF_BLOCK_DATA_BYTES = 246  # the DATA `data` field of ff_block_data_body's frame


def ff_block_data_body(seq: int) -> bytes:
    """A DATA body whose COBS form ends exactly after a 0xFF block (§3.1's exception).

    The only zero is the length's high byte (250 bytes of payload), so the 254 bytes
    after it (payload and CRC) form one full block; a filler byte is varied until the
    CRC has no zero byte either.
    """
    assert seq & 0xFF and seq >> 8, "seq bytes must be non-zero"
    for filler in range(1, 256):
        payload = b"\x01\x01\x01\x01" + bytes([filler]) * FF_BLOCK_DATA_BYTES
        b = body(Opcode.DATA, seq, payload)
        if b.count(0) == 1:
            return b
    raise AssertionError("no filler gives a zero-free CRC")  # pragma: no cover
