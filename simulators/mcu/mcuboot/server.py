"""The application's SMP server: Zephyr's OS and image management groups, sans-I/O.

:meth:`SmpServer.handle` takes one request packet and returns the answer packet
and how long the flash work behind it takes; it never sleeps. Semantics follow
Zephyr's ``img_mgmt``/``os_mgmt``: an upload restarted at offset 0 with the same
``sha`` and ``len`` resumes (the answer names the offset to continue from), a
chunk at the wrong offset is answered with the expected offset (0 after a reset,
when no upload is open), and a slot that is pending or is the revert target cannot
be overwritten. :class:`Commands` says which handlers the build registered.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

import cbor2
from smp import error as smperr
from smp import image_management as smpimg
from smp import os_management as smpos

from protocols.mcuboot.client import (
    VERSION_2,
    Group,
    ImgCmd,
    Op,
    OsCmd,
    SmpHeader,
    decode_packet,
)
from protocols.mcuboot.errors import SmpProtocolError
from protocols.mcuboot.image import HEADER_SIZE, IMAGE_MAGIC, Header, parse_version
from simulators.mcu.mcuboot.boot import SwapType, slot_image, swap_type
from simulators.mcu.mcuboot.flash import (
    PRIMARY,
    SECONDARY,
    SECTOR,
    WRITE_SIZE,
    SlotFlash,
    area,
)

IMG = smpimg.IMG_MGMT_ERR
MGMT = smperr.MGMT_ERR


class Commands(enum.Enum):
    """Which SMP commands the app's build enables (docs/bootloaders-mcuboot.md, "Stock Zephyr")."""

    #: Zephyr's ``smp_svr`` sample with ``overlay-serial.conf``: Kconfig defaults only.
    #: OS: echo (MCUMGR_GRP_OS_ECHO defaults y), reset. Image: state, upload, erase;
    #: slot info only on a two-image build (MCUMGR_GRP_IMG_SLOT_INFO defaults y then).
    STOCK = "stock"
    #: Also MCUMGR_GRP_OS_MCUMGR_PARAMS, MCUMGR_GRP_OS_INFO (with the hardware-id
    #: custom hook), MCUMGR_GRP_OS_BOOTLOADER_INFO and MCUMGR_GRP_IMG_SLOT_INFO.
    FULL = "full"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    uid: bytes
    board: str = "vmcu_nrf52840"
    kernel_release: str = "3.7.0"
    buf_size: int = 1024  # CONFIG_MCUMGR_TRANSPORT_NETBUF_SIZE
    buf_count: int = 4
    #: os info format letter the app's custom hook answers with its hardware id.
    uid_format: str = "h"
    erase_s_per_sector: float = 0.02
    program_s_per_kib: float = 0.01
    turnaround_s: float = 0.001
    commands: Commands = Commands.FULL

    def enabled(self, group: int, command: int, images: int) -> bool:
        if self.commands is Commands.FULL:
            return True
        if group == Group.OS:
            return command in (OsCmd.ECHO, OsCmd.RESET)
        if command == ImgCmd.SLOT_INFO:
            return images > 1
        return command in (ImgCmd.STATE, ImgCmd.UPLOAD, ImgCmd.ERASE)


class _Error(Exception):
    def __init__(self, group: int, rc: int, legacy: int = MGMT.EUNKNOWN) -> None:
        self.group, self.rc, self.legacy = group, rc, legacy


@dataclass
class _Upload:
    """Zephyr's ``g_img_mgmt_state`` plus the stream_flash write buffer: RAM, lost at reset."""

    index: int  # flash area being written
    size: int
    sha: bytes
    off: int = 0
    pending: bytearray = field(default_factory=bytearray)  # bytes not yet a whole write unit


@dataclass(frozen=True, slots=True)
class Answer:
    packet: bytes
    busy_s: float  # flash work done before the answer leaves
    reset: bool = False  # the device resets after this answer


def reply(req: SmpHeader, body: dict[str, Any]) -> bytes:
    payload = cbor2.dumps(body, canonical=True)
    head = SmpHeader(req.op + 1, req.version, 0, len(payload), req.group, req.seq, req.command)
    return head.pack() + payload


class SmpServer:
    def __init__(self, flash: SlotFlash, config: ServerConfig) -> None:
        self.flash = flash
        self.config = config
        self._upload: _Upload | None = None  # RAM: lost on reset, like Zephyr's

    @property
    def upload_offset(self) -> int | None:
        """Bytes of the open upload received so far; None when none is open."""
        return None if self._upload is None else self._upload.off

    def handle(self, packet: bytes) -> Answer | None:
        """The answer to one request, or None for a packet that is not one we answer."""
        try:
            header, body = decode_packet(packet)
        except SmpProtocolError:
            return None  # Zephyr drops what it cannot parse
        if header.op not in (Op.READ, Op.WRITE):
            return None
        busy = 0.0
        reset = False
        try:
            if not self.config.enabled(header.group, header.command, self.flash.images):
                # smp.c: no handler registered -> MGMT_ERR_ENOTSUP, as a legacy "rc".
                raise _Error(-1, 0, MGMT.ENOTSUP)
            out, busy, reset = self._dispatch(header, body)
        except _Error as err:
            if header.version >= VERSION_2 and err.group >= 0:
                out = {"err": {"group": err.group, "rc": err.rc}}
            else:
                out = {"rc": err.legacy}
        return Answer(reply(header, out), busy + self.config.turnaround_s, reset)

    def _dispatch(self, h: SmpHeader, body: dict[str, Any]) -> tuple[dict[str, Any], float, bool]:
        key = (h.group, h.command, h.op)
        if key == (Group.OS, OsCmd.ECHO, Op.WRITE):
            return {"r": str(body.get("d", ""))}, 0.0, False
        if key == (Group.OS, OsCmd.RESET, Op.WRITE):
            return {}, 0.0, True
        if key == (Group.OS, OsCmd.PARAMS, Op.READ):
            return {"buf_size": self.config.buf_size, "buf_count": self.config.buf_count}, 0, False
        if key == (Group.OS, OsCmd.INFO, Op.READ):
            return {"output": self._os_info(body.get("format"))}, 0.0, False
        if key == (Group.OS, OsCmd.BOOTLOADER_INFO, Op.READ):
            return self._bootloader_info(body.get("query")), 0.0, False
        if key == (Group.IMAGE, ImgCmd.STATE, Op.READ):
            return self.state(), 0.0, False
        if key == (Group.IMAGE, ImgCmd.STATE, Op.WRITE):
            return self._state_write(body), 0.0, False
        if key == (Group.IMAGE, ImgCmd.UPLOAD, Op.WRITE):
            return self._upload_chunk(body)
        if key == (Group.IMAGE, ImgCmd.ERASE, Op.WRITE):
            return self._erase(body)
        if key == (Group.IMAGE, ImgCmd.SLOT_INFO, Op.READ):
            return self._slot_info(), 0.0, False
        raise _Error(-1, 0, MGMT.ENOTSUP)

    # --- OS group ------------------------------------------------------------------

    def _os_info(self, fmt: Any) -> str:
        fmt = "s" if fmt is None else fmt
        if not isinstance(fmt, str):
            raise _Error(Group.OS, smpos.OS_MGMT_RET_RC.INVALID_FORMAT, MGMT.EINVAL)
        c = self.config
        fields = {
            "s": "Zephyr",
            "n": "unknown",
            "r": c.kernel_release,
            "v": f"v{c.kernel_release}",
            "b": "",
            "m": "arm",
            "p": "cortex-m4",
            "i": c.board,
            "o": "Zephyr",
        }
        letters = "snrvmpio" if "a" in fmt else ""
        for ch in fmt:
            if ch == c.uid_format:
                continue
            if ch not in fields and ch != "a":
                raise _Error(Group.OS, smpos.OS_MGMT_RET_RC.INVALID_FORMAT, MGMT.EINVAL)
        order = [ch for ch in "snrvbmpio" if ch in fmt or ch in letters]
        parts = [fields[ch] for ch in order if fields[ch]]
        if c.uid_format in fmt or "a" in fmt:
            parts.append(c.uid.hex())  # the custom hook appends after the standard fields
        return " ".join(parts)

    @staticmethod
    def _bootloader_info(query: Any) -> dict[str, Any]:
        if query is None:
            return {"bootloader": "MCUboot"}
        if query == "mode":
            return {"mode": smpos.MCUbootMode.SWAP_WITHOUT_SCRATCH, "no-downgrade": False}
        raise _Error(Group.OS, smpos.OS_MGMT_RET_RC.QUERY_YIELDS_NO_ANSWER, MGMT.ENOTSUP)

    # --- image group ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """``img_mgmt_state_read()``: both slots of every image, flags from the trailers."""
        images = []
        multi = self.flash.images > 1
        for image in range(self.flash.images):
            kind = swap_type(self.flash, image)
            for slot in (PRIMARY, SECONDARY):
                img = slot_image(self.flash, area(image, slot))
                if img is None:
                    continue
                active = slot == PRIMARY
                confirmed = pending = permanent = False
                if kind in (SwapType.NONE, SwapType.FAIL):
                    confirmed = active
                elif kind is SwapType.TEST:
                    confirmed, pending = active, not active
                elif kind is SwapType.PERM:
                    confirmed, pending, permanent = active, not active, not active
                else:  # REVERT: the running image is on trial; the old one is the way back
                    confirmed = not active
                entry: dict[str, Any] = {"image": image} if multi else {}
                entry.update(
                    {
                        "slot": slot,
                        "version": img.version,
                        "hash": img.hash,
                        "bootable": img.bootable,
                        "pending": pending,
                        "confirmed": confirmed,
                        "active": active,
                        "permanent": permanent,
                    }
                )
                images.append(entry)
        return {"images": images, "splitStatus": 0}

    def _find(self, digest: Any) -> tuple[int, int]:
        """(image, slot) holding the image with this hash (``img_mgmt_find_by_hash``)."""
        for image in range(self.flash.images):
            for slot in (PRIMARY, SECONDARY):
                img = slot_image(self.flash, area(image, slot))
                if img is not None and img.hash == digest:
                    return image, slot
        raise _Error(Group.IMAGE, IMG.HASH_NOT_FOUND, MGMT.EINVAL)

    def _set_pending(self, image: int, permanent: bool) -> None:
        """``boot_set_pending_multi()``: the secondary trailer asks MCUboot for a swap."""
        sec = area(image, SECONDARY)
        if self.flash.magic(sec) == "bad":
            self.flash.scramble_trailer(sec)
        if self.flash.magic(sec) == "unset":
            self.flash.write_magic(sec)
            if permanent:
                self.flash.write_image_ok(sec)
            kind = SwapType.PERM if permanent else SwapType.TEST
            self.flash.write_swap_info(sec, kind, image)

    def confirm(self, image: int) -> None:
        """``boot_set_confirmed_multi()``: image_ok in the running image's trailer."""
        pri = area(image, PRIMARY)
        if self.flash.magic_ok(pri) and not self.flash.image_ok(pri):
            self.flash.write_image_ok(pri)

    def _state_write(self, body: dict[str, Any]) -> dict[str, Any]:
        digest, confirm = body.get("hash"), bool(body.get("confirm", False))
        if digest is not None and not isinstance(digest, bytes):
            raise _Error(Group.IMAGE, IMG.INVALID_HASH, MGMT.EINVAL)
        if not confirm:
            if digest is None:
                raise _Error(Group.IMAGE, IMG.INVALID_HASH, MGMT.EINVAL)
            image, slot = self._find(digest)
            if slot == PRIMARY:
                raise _Error(Group.IMAGE, IMG.IMAGE_SETTING_TEST_TO_ACTIVE_DENIED, MGMT.EBADSTATE)
            if swap_type(self.flash, image) is SwapType.REVERT:
                raise _Error(Group.IMAGE, IMG.IMAGE_CONFIRMATION_DENIED, MGMT.EBADSTATE)
            self._set_pending(image, permanent=False)
            self._upload = None
            return self.state()
        image, slot = (0, PRIMARY) if digest is None else self._find(digest)
        if slot == PRIMARY:
            self.confirm(image)
        else:
            if swap_type(self.flash, image) is SwapType.REVERT:
                raise _Error(Group.IMAGE, IMG.IMAGE_CONFIRMATION_DENIED, MGMT.EBADSTATE)
            self._set_pending(image, permanent=True)
            self._upload = None
        return self.state()

    def _secondary_in_use(self, image: int) -> bool:
        return swap_type(self.flash, image) in (SwapType.TEST, SwapType.PERM, SwapType.REVERT)

    def _target(self, body: dict[str, Any]) -> int:
        """The image an upload names: ``image`` N is image N's secondary slot. On a
        one-image build ``image`` 1 also means its secondary slot (smpmgr ``--slot 1``)."""
        image = body.get("image", 0)
        if image is None:
            image = 0
        if not isinstance(image, int) or image < 0:
            raise _Error(Group.IMAGE, IMG.INVALID_SLOT, MGMT.EINVAL)
        if self.flash.images == 1 and image == 1:
            return 0
        if image >= self.flash.images:
            raise _Error(Group.IMAGE, IMG.INVALID_SLOT, MGMT.EINVAL)
        return image

    def _upload_chunk(self, body: dict[str, Any]) -> tuple[dict[str, Any], float, bool]:
        off, data = body.get("off"), body.get("data")
        if not isinstance(off, int) or not isinstance(data, bytes) or off < 0:
            raise _Error(Group.IMAGE, IMG.INVALID_OFFSET, MGMT.EINVAL)
        busy = 0.0
        if off == 0:
            size, sha = body.get("len"), body.get("sha", b"")
            if not isinstance(size, int) or size <= 0:
                raise _Error(Group.IMAGE, IMG.INVALID_LENGTH, MGMT.EINVAL)
            if not isinstance(sha, bytes) or len(sha) > 32:
                raise _Error(Group.IMAGE, IMG.INVALID_HASH, MGMT.EINVAL)
            image = self._target(body)
            index = area(image, SECONDARY)
            up = self._upload
            if (
                up is not None
                and sha
                and (up.index, up.sha, up.size) == (index, sha, size)
                and 0 < up.off < size
            ):
                return {"off": up.off}, 0.0, False  # resume the broken session
            if self._secondary_in_use(image):
                raise _Error(Group.IMAGE, IMG.NO_FREE_SLOT, MGMT.EBADSTATE)
            if size > self.flash.max_image:
                raise _Error(Group.IMAGE, IMG.INVALID_IMAGE_TOO_LARGE, MGMT.EINVAL)
            if len(data) < HEADER_SIZE:
                raise _Error(Group.IMAGE, IMG.INVALID_IMAGE_HEADER, MGMT.EINVAL)
            hdr = Header.parse(data[:HEADER_SIZE])
            if hdr.magic != IMAGE_MAGIC:
                raise _Error(Group.IMAGE, IMG.INVALID_IMAGE_HEADER_MAGIC, MGMT.EINVAL)
            if body.get("upgrade"):
                self._check_upgrade(hdr, image)
            # img_mgmt_erase_image_data(): the sectors the image needs, then the trailer.
            sectors = -(-size // SECTOR)
            self.flash.erase(index, 0, sectors * SECTOR)
            self.flash.scramble_trailer(index)
            busy += (sectors + self.flash.trailer_sectors) * self.config.erase_s_per_sector
            self._upload = _Upload(index, size, sha)
        up = self._upload
        if up is None or off != up.off:
            # zephyr_img_mgmt.c img_mgmt_upload_inspect(): a chunk at another offset is
            # dropped and answered with the offset expected. After a reset nothing is
            # expected but offset 0, so the host starts over.
            return {"off": 0 if up is None else up.off}, 0.0, False
        if off + len(data) > up.size:
            raise _Error(Group.IMAGE, IMG.INVALID_IMAGE_DATA_OVERRUN, MGMT.EINVAL)
        busy += self._program(up, data)
        out: dict[str, Any] = {"off": up.off}
        if up.off == up.size:
            if up.sha:
                written = self.flash.read(up.index, 0, up.size)
                out["match"] = hashlib.sha256(written).digest() == up.sha
            self._upload = None
        return out, busy, False

    def _program(self, up: _Upload, data: bytes) -> float:
        """stream_flash: whole write units go to flash; the last one is padded with 0xFF."""
        up.pending += data
        start = up.off + len(data) - len(up.pending)
        up.off += len(data)
        n = len(up.pending) - len(up.pending) % WRITE_SIZE
        if up.off == up.size:
            up.pending += bytes([0xFF]) * (-len(up.pending) % WRITE_SIZE)
            n = len(up.pending)
        if n:
            self.flash.program(up.index, start, bytes(up.pending[:n]))
            del up.pending[:n]
        return len(data) / 1024 * self.config.program_s_per_kib

    def _check_upgrade(self, hdr: Any, image: int) -> None:
        running = slot_image(self.flash, area(image, PRIMARY))
        if running is None:
            return
        new = (hdr.version.major, hdr.version.minor, hdr.version.revision)
        if new <= parse_version(running.version)[:3]:
            raise _Error(Group.IMAGE, IMG.CURRENT_VERSION_IS_NEWER, MGMT.EBADSTATE)

    def _erase(self, body: dict[str, Any]) -> tuple[dict[str, Any], float, bool]:
        slot = body.get("slot", SECONDARY)
        if not isinstance(slot, int) or slot % 2 != SECONDARY or slot >= self.flash.areas:
            raise _Error(Group.IMAGE, IMG.INVALID_SLOT, MGMT.EINVAL)
        image = slot // 2
        if self._secondary_in_use(image):
            raise _Error(Group.IMAGE, IMG.NO_FREE_SLOT, MGMT.EBADSTATE)
        self.flash.erase(slot)
        self._upload = None
        sectors = self.flash.slot_size // SECTOR
        return {}, sectors * self.config.erase_s_per_sector, False

    def _slot_info(self) -> dict[str, Any]:
        size = self.flash.slot_size
        return {
            "images": [
                {
                    "image": image,
                    "slots": [
                        {"slot": 0, "size": size},
                        {"slot": 1, "size": size, "upload_image_id": image},
                    ],
                    "max_image_size": self.flash.max_image,
                }
                for image in range(self.flash.images)
            ]
        }
