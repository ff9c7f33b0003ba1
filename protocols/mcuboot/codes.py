"""Error codes of the ``mcuboot`` driver.

An SMP error answer becomes ``MCU_SMP_<name>``, with the name from the SMP
error tables (``MGMT_ERR``, or ``IMAGE_``/``OS_`` plus the group's own table;
``GROUP<g>_RC<rc>`` for a group without one). Those codes are families: a
table member below names the ones whose kind is not the family's default.
"""

from __future__ import annotations

from protocols.failures import Code, Family, Kind, register_family


class McubootCode(Code):
    """mcuboot (MCUboot over SMP)"""

    FRAME_ERROR = (
        "MCU_FRAME_ERROR",
        Kind.LINK,
        ("console frames arrived damaged (base64, length or CRC16) beyond the driver's retries"),
    )
    SMP_EBUSY = "MCU_SMP_EBUSY", Kind.BUSY, "the SMP server is busy; ask again later"
    SMP_ETIMEOUT = "MCU_SMP_ETIMEOUT", Kind.TIMEOUT, "the device timed out serving the request"
    SMP_ENOTSUP = "MCU_SMP_ENOTSUP", Kind.UNSUPPORTED, "the device does not serve this command"
    SMP_EACCESSDENIED = "MCU_SMP_EACCESSDENIED", Kind.PROTECTED, "the device denied access"


_ORIGIN = McubootCode.origin()

FLASH_FAILED = register_family(
    Family(
        r"MCU_SMP_IMAGE_FLASH_[A-Z_]+_FAILED",
        Kind.DEVICE,
        "the device's flash failed under image management",
        _ORIGIN,
        "MCU_SMP_IMAGE_FLASH_<op>_FAILED",
    )
)
BAD_IMAGE = register_family(
    Family(
        r"MCU_SMP_IMAGE_(INVALID_IMAGE_[A-Z_]+|NO_TLVS|INVALID_TLV|TLV_[A-Z_]+|INVALID_HASH)",
        Kind.IMAGE,
        "the device found the uploaded image malformed",
        _ORIGIN,
        "MCU_SMP_IMAGE_INVALID_IMAGE_<what>, ..._TLV...",
    )
)
SMP_ERROR = register_family(
    Family(
        r"MCU_SMP_[A-Z0-9_]+",
        Kind.REFUSED,
        "any other SMP error answer (MGMT_ERR, or a group's own rc)",
        _ORIGIN,
        "MCU_SMP_<name>",
    )
)

__all__ = ["BAD_IMAGE", "FLASH_FAILED", "SMP_ERROR", "McubootCode"]
