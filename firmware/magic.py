"""The package file's first bytes, alone, so telling a package from a raw image imports nothing.

(``firmware.package`` pulls in the signature code; a raw ``.bin`` flash never needs it.)
"""

from __future__ import annotations

MAGIC = b"\x89MCUFW\r\n"  # high bit and CRLF catch 7-bit and text-mode transfers, as PNG does


def is_package(data: bytes) -> bool:
    return data.startswith(MAGIC)
