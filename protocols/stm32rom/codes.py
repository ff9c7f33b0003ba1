"""Error codes only the ``stm32-rom`` driver reports (the shared ones are in protocols.failures)."""

from __future__ import annotations

from protocols.failures import Code, Kind


class Stm32Code(Code):
    """stm32-rom (STM32 ROM bootloader, ST AN3155)"""

    # AN3155: the loader NACKs a byte whose complement or checksum does not match, which is
    # what damaged bytes cause; the driver has already resent the block before this reaches
    # the gateway. A command the loader does not list is never sent.
    NACK = "MCU_NACK", Kind.LINK, "the ROM bootloader NACKed a command or checksum"
    # AN3155: with readout protection (RDP level 1) the loader NACKs Read Memory, Write
    # Memory, Go and Erase at their command byte; only Readout Unprotect, which
    # mass-erases the flash, lifts it. Not retried: an operator must decide.
    READOUT_PROTECTED = (
        "MCU_READOUT_PROTECTED",
        Kind.PROTECTED,
        "the part is readout-protected; unprotecting erases its whole flash",
    )
    UNSUPPORTED_PART = (
        "MCU_UNSUPPORTED_PART",
        Kind.UNSUPPORTED,
        ("a product id this driver has no flash layout for"),
    )


__all__ = ["Stm32Code"]
