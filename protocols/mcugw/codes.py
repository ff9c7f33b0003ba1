"""Error codes of the ``mcugw`` driver: one per device status (``MCU_<status>``), plus its own.

The device's refusals keep the status name (``MCU_BAD_STATE`` for
``Status.BAD_STATE``); statuses that mean what a shared code means use that
code (``MCU_BUSY``, ``MCU_VERIFY_FAILED``).
"""

from __future__ import annotations

from protocols.failures import Code, DriverCode, Kind
from protocols.mcugw.constants import Status


class McugwCode(Code):
    """mcugw (this project's protocol)"""

    UNSUPPORTED = "MCU_UNSUPPORTED", Kind.UNSUPPORTED, "the bootloader does not implement a request"
    MALFORMED = "MCU_MALFORMED", Kind.REFUSED, "the bootloader could not parse a request"
    BAD_STATE = "MCU_BAD_STATE", Kind.REFUSED, "a request not allowed in the device's state"
    OUT_OF_RANGE = "MCU_OUT_OF_RANGE", Kind.REFUSED, "an offset outside the image or slot"
    TOO_LARGE = "MCU_TOO_LARGE", Kind.IMAGE, "the image is larger than the slot"
    FLASH_ERROR = "MCU_FLASH_ERROR", Kind.DEVICE, "the device's flash erase or program failed"
    NOT_IN_BOOTLOADER = (
        "MCU_NOT_IN_BOOTLOADER",
        Kind.REFUSED,
        ("the application runs and would not hand over to the bootloader"),
    )
    REFUSED = "MCU_REFUSED", Kind.REFUSED, "refused by the device's policy"
    MISALIGNED = "MCU_MISALIGNED", Kind.REFUSED, "an offset not aligned to the write size"
    BAD_BAUD = "MCU_BAD_BAUD", Kind.CONFIG, "the configured fast baud rate is not supported"
    NO_IMAGE = "MCU_NO_IMAGE", Kind.REFUSED, "nothing verified to activate or confirm"
    GAP = "MCU_GAP", Kind.LINK, "bytes lost on the link left a gap the session did not fill"
    DELTA_BASE_MISMATCH = (
        "MCU_DELTA_BASE_MISMATCH",
        Kind.DELTA,
        ("the device's fallback slot is not the delta's base"),
    )
    DECODE_ERROR = "MCU_DECODE_ERROR", Kind.IMAGE, "an encoded block does not decode"
    BLOCK_LENGTH = "MCU_BLOCK_LENGTH", Kind.IMAGE, "a block decodes to the wrong length"
    PATCH_REJECTED = "MCU_PATCH_REJECTED", Kind.DELTA, "a delta block reads outside the base image"
    PROTOCOL_VERSION = (
        "MCU_PROTOCOL_VERSION",
        Kind.UNSUPPORTED,
        ("the bootloader speaks a protocol version this gateway does not"),
    )
    DELTA_INVALID = "DELTA_INVALID", Kind.IMAGE, "a published delta's stream is malformed"


#: The code for each refusal status the device can answer.
STATUS_CODES: dict[Status, Code] = {
    Status.UNSUPPORTED: McugwCode.UNSUPPORTED,
    Status.MALFORMED: McugwCode.MALFORMED,
    Status.BAD_STATE: McugwCode.BAD_STATE,
    Status.OUT_OF_RANGE: McugwCode.OUT_OF_RANGE,
    Status.TOO_LARGE: McugwCode.TOO_LARGE,
    Status.VERIFY_FAILED: DriverCode.VERIFY_FAILED,
    Status.FLASH_ERROR: McugwCode.FLASH_ERROR,
    Status.BUSY: DriverCode.BUSY,
    Status.NOT_IN_BOOTLOADER: McugwCode.NOT_IN_BOOTLOADER,
    Status.REFUSED: McugwCode.REFUSED,
    Status.MISALIGNED: McugwCode.MISALIGNED,
    Status.BAD_BAUD: McugwCode.BAD_BAUD,
    Status.NO_IMAGE: McugwCode.NO_IMAGE,
    Status.GAP: McugwCode.GAP,
    Status.DELTA_BASE_MISMATCH: McugwCode.DELTA_BASE_MISMATCH,
    Status.DECODE_ERROR: McugwCode.DECODE_ERROR,
    Status.BLOCK_LENGTH: McugwCode.BLOCK_LENGTH,
    Status.PATCH_REJECTED: McugwCode.PATCH_REJECTED,
}

__all__ = ["STATUS_CODES", "McugwCode"]
