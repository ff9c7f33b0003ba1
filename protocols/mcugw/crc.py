"""CRC-32 used on every frame: the ISO-HDLC / zlib polynomial (crcmod "crc-32").

Parameters: width 32, poly 0x04C11DB7, reflected in and out, init 0xFFFFFFFF,
xorout 0xFFFFFFFF; check value of b"123456789" is 0xCBF43926.
"""

from __future__ import annotations

from collections.abc import Callable

import crcmod.predefined

crc32: Callable[[bytes], int] = crcmod.predefined.mkPredefinedCrcFun("crc-32")
