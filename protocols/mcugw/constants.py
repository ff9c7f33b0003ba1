"""Wire-level numbers of the serial bootloader protocol (see docs/protocol.md)."""

from __future__ import annotations

import enum

#: Frame-format version carried in every header. Changes only if framing changes.
FRAME_VERSION = 1
#: Command-set version this implementation speaks, reported in HELLO.
PROTOCOL_VERSION = 1
#: Oldest command-set version this client still accepts.
MIN_PROTOCOL_VERSION = 1
#: Largest frame body (header + payload + CRC) any peer may send; bounds RX buffers.
MAX_BODY = 8192
#: Bits per byte on an 8N1 UART: start + 8 data + stop.
BITS_PER_BYTE = 10
#: Bit set in the opcode of every response.
RESPONSE_BIT = 0x80


class Opcode(enum.IntEnum):
    HELLO = 0x01  # negotiate version, capabilities, payload and window sizes
    INFO = 0x02  # identity, flash geometry and slot table
    BEGIN = 0x03  # open a transfer into the inactive slot; answer holds resume offset
    DATA = 0x04  # offset + bytes; answered by cumulative ACK or NAK
    VERIFY = 0x05  # hash the staged slot and compare with BEGIN's SHA-256
    ACTIVATE = 0x06  # mark the verified slot for a trial boot
    RESET = 0x07  # reboot: run the app, or stay in the bootloader
    CONFIRM = 0x08  # make the running trial image permanent
    ABORT = 0x09  # drop the staged transfer
    SET_BAUD = 0x0A  # switch the UART rate, with fallback


class Status(enum.IntEnum):
    OK = 0x00  # request done
    UNSUPPORTED = 0x01  # opcode or feature not implemented by this peer
    MALFORMED = 0x02  # payload did not parse
    BAD_STATE = 0x03  # not allowed now (e.g. DATA before BEGIN, BEGIN during a trial)
    OUT_OF_RANGE = 0x04  # offset beyond the announced size or the slot
    TOO_LARGE = 0x05  # image larger than the slot
    VERIFY_FAILED = 0x06  # slot hash differs from BEGIN's SHA-256
    FLASH_ERROR = 0x07  # erase or program failed
    BUSY = 0x08  # receive window full; resend later
    NOT_IN_BOOTLOADER = 0x09  # the app is running; send RESET(stay) first
    REFUSED = 0x0A  # policy says no (fault injection, locked device)
    MISALIGNED = 0x0B  # offset not a multiple of the write granularity
    BAD_BAUD = 0x0C  # requested baud rate not supported
    NO_IMAGE = 0x0D  # nothing verified to activate or confirm
    GAP = 0x0E  # DATA NAK: bytes at the carried offset are missing
    DELTA_BASE_MISMATCH = 0x0F  # BEGIN(DELTA): the fallback slot is not the patch's base
    DECODE_ERROR = 0x10  # DATA: an encoded block does not decode
    BLOCK_LENGTH = 0x11  # DATA: a block decodes to a length other than its header's
    PATCH_REJECTED = 0x12  # DATA: a delta block reads outside the base image

    def describe(self) -> str:
        return _STATUS_TEXT[self]


_STATUS_TEXT = {
    Status.OK: "done",
    Status.UNSUPPORTED: "not supported by this bootloader",
    Status.MALFORMED: "request payload malformed",
    Status.BAD_STATE: "not allowed in the current state",
    Status.OUT_OF_RANGE: "offset outside the image or slot",
    Status.TOO_LARGE: "image larger than the slot",
    Status.VERIFY_FAILED: "slot hash does not match",
    Status.FLASH_ERROR: "flash erase/program failed",
    Status.BUSY: "receive window full",
    Status.NOT_IN_BOOTLOADER: "application running, not the bootloader",
    Status.REFUSED: "refused by device policy",
    Status.MISALIGNED: "offset not aligned to write granularity",
    Status.BAD_BAUD: "baud rate not supported",
    Status.NO_IMAGE: "no verified image",
    Status.GAP: "data missing at offset",
    Status.DELTA_BASE_MISMATCH: "delta base is not the image in the fallback slot",
    Status.DECODE_ERROR: "encoded block does not decode",
    Status.BLOCK_LENGTH: "block decodes to the wrong length",
    Status.PATCH_REJECTED: "delta block reads outside the base image",
}


class Capability(enum.IntFlag):
    WINDOW = 1 << 0  # several DATA frames may be in flight
    RESUME = 1 << 1  # BEGIN answers with a persisted resume offset
    SET_BAUD = 1 << 2  # SET_BAUD is implemented
    APP_MODE = 1 << 3  # the application answers HELLO/INFO/RESET
    COMPRESS = 1 << 4  # decodes deflate-block streams (BEGIN flag COMPRESSED, §17)
    DELTA = 1 << 5  # decodes delta blocks against the fallback slot (BEGIN flag DELTA, §17)
    THUMB = 1 << 6  # also decodes LZMA_THUMB blocks (ARM-Thumb branch filter, §17.1)


class Mode(enum.IntEnum):
    BOOTLOADER = 0  # bootloader is running and accepts transfers
    APP = 1  # application is running; only HELLO, INFO, RESET, CONFIRM


class SlotState(enum.IntEnum):
    EMPTY = 0  # nothing written since the last erase
    WRITING = 1  # transfer begun, not verified
    COMPLETE = 2  # verified, not activated
    TRIAL = 3  # activated; booting on trial until confirmed
    CONFIRMED = 4  # permanent, bootable
    INVALID = 5  # failed trial or verify; never booted again


class ResetMode(enum.IntEnum):
    RUN = 0  # boot normally (trial image if one is pending)
    STAY = 1  # stay in the bootloader after reset


class BeginFlags(enum.IntFlag):
    NONE = 0
    COMPRESSED = 1 << 0  # DATA carries an encoded block stream (needs COMPRESS; §17)
    DELTA = 1 << 1  # its blocks may read the fallback slot (needs DELTA; §17)
