"""The version record: what the gateway installed, kept in the MCU's own flash.

The STM32 ROM bootloader has no notion of an installed version, so the driver
keeps one on the device: a 96-byte record at the start of the flash's last
page (or sector), which the application's linker script must leave alone. The
driver erases it first and writes it last, after the image has been read back
and found equal, so a record that decodes means the image below it is whole.

Layout (little-endian, 96 bytes, a multiple of the 4-byte flash word)::

    0   4  magic  b"MGVR"
    4   2  format (1)
    6   2  record size (96)
    8   4  image address
    12  4  image size in bytes
    16  32 image SHA-256
    48  44 version, UTF-8, NUL padded
    92  4  CRC-32 (zlib) of bytes 0..91
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"MGVR"
FORMAT = 1
SIZE = 96
VERSION_MAX = 44
_HEAD = struct.Struct("<4sHHII32s44s")


class RecordError(ValueError):
    """The bytes at the record's place are not a valid record (why is in the message)."""


@dataclass(frozen=True, slots=True)
class VersionRecord:
    version: str
    address: int
    size: int
    sha256: bytes

    def encode(self) -> bytes:
        raw = self.version.encode()
        if not raw or len(raw) > VERSION_MAX:
            raise RecordError(f"version {self.version!r} must be 1..{VERSION_MAX} UTF-8 bytes")
        if len(self.sha256) != 32:
            raise RecordError("sha256 must be 32 bytes")
        head = _HEAD.pack(MAGIC, FORMAT, SIZE, self.address, self.size, self.sha256, raw)
        return head + struct.pack("<I", zlib.crc32(head))


def decode(data: bytes) -> VersionRecord:
    """Parse a record; raises :class:`RecordError` for erased, torn or foreign bytes."""
    if len(data) < SIZE:
        raise RecordError(f"record needs {SIZE} bytes, got {len(data)}")
    data = data[:SIZE]
    if data == b"\xff" * SIZE:
        raise RecordError("no version record (erased flash)")
    magic, fmt, size, address, length, sha, raw = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise RecordError(f"no version record (magic {magic.hex()})")
    (crc,) = struct.unpack_from("<I", data, _HEAD.size)
    if crc != zlib.crc32(data[: _HEAD.size]):
        raise RecordError("version record damaged (CRC mismatch): an interrupted update?")
    if fmt != FORMAT or size != SIZE:
        raise RecordError(f"version record format {fmt} size {size} is not understood")
    try:
        version = raw.rstrip(b"\x00").decode()
    except UnicodeDecodeError as exc:
        raise RecordError("version record holds a version that is not UTF-8") from exc
    return VersionRecord(version, address, length, sha)


__all__ = ["MAGIC", "SIZE", "RecordError", "VersionRecord", "decode"]
