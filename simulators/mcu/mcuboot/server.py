"""The application's SMP server: Zephyr's OS and image management groups, sans-I/O.

:meth:`SmpServer.handle` takes one request packet and returns the answer packet
and how long the flash work behind it takes; it never sleeps. Semantics follow
Zephyr's ``img_mgmt``/``os_mgmt``: an upload restarted at offset 0 with the same
``sha`` and ``len`` resumes (the answer names the offset to continue from), a
chunk at the wrong offset is answered with the expected offset, and a slot that
is pending or is the revert target cannot be overwritten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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
from simulators.mcu.mcuboot.flash import PRIMARY, SECONDARY, SECTOR, SlotFlash

IMG = smpimg.IMG_MGMT_ERR
MGMT = smperr.MGMT_ERR


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


class _Error(Exception):
    def __init__(self, group: int, rc: int, legacy: int = MGMT.EUNKNOWN) -> None:
        self.group, self.rc, self.legacy = group, rc, legacy


@dataclass
class _Upload:
    size: int
    sha: bytes
    off: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    packet: bytes
    busy_s: float  # flash work done before the answer leaves
    reset: bool = False  # the device resets after this answer


class SmpServer:
    def __init__(self, flash: SlotFlash, config: ServerConfig) -> None:
        self.flash = flash
        self.config = config
        self._upload: _Upload | None = None  # RAM: lost on reset, like Zephyr's

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
            out, busy, reset = self._dispatch(header, body)
        except _Error as err:
            if header.version >= VERSION_2 and err.group >= 0:
                out = {"err": {"group": err.group, "rc": err.rc}}
            else:
                out = {"rc": err.legacy}
        return Answer(self._reply(header, out), busy + self.config.turnaround_s, reset)

    @staticmethod
    def _reply(req: SmpHeader, body: dict[str, Any]) -> bytes:
        payload = cbor2.dumps(body, canonical=True)
        head = SmpHeader(req.op + 1, req.version, 0, len(payload), req.group, req.seq, req.command)
        return head.pack() + payload

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
            return {"mode": smpos.MCUbootMode.SWAP_USING_SCRATCH, "no-downgrade": False}
        raise _Error(Group.OS, smpos.OS_MGMT_RET_RC.QUERY_YIELDS_NO_ANSWER, MGMT.ENOTSUP)

    # --- image group ---------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        kind = swap_type(self.flash)
        images = []
        for slot in (PRIMARY, SECONDARY):
            img = slot_image(self.flash, slot)
            if img is None:
                continue
            active = slot == PRIMARY
            confirmed = pending = permanent = False
            if kind is SwapType.NONE:
                confirmed = active
            elif kind is SwapType.TEST:
                confirmed, pending = active, not active
            elif kind is SwapType.PERM:
                confirmed, pending, permanent = active, not active, not active
            else:  # REVERT: the running image is on trial; the old one is the way back
                confirmed = not active
            images.append(
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
        return {"images": images, "splitStatus": 0}

    def _find(self, digest: Any) -> int:
        for slot in (PRIMARY, SECONDARY):
            img = slot_image(self.flash, slot)
            if img is not None and img.hash == digest:
                return slot
        raise _Error(Group.IMAGE, IMG.HASH_NOT_FOUND, MGMT.EINVAL)

    def _state_write(self, body: dict[str, Any]) -> dict[str, Any]:
        digest, confirm = body.get("hash"), bool(body.get("confirm", False))
        if digest is not None and not isinstance(digest, bytes):
            raise _Error(Group.IMAGE, IMG.INVALID_HASH, MGMT.EINVAL)
        kind = swap_type(self.flash)
        if not confirm:
            if digest is None:
                raise _Error(Group.IMAGE, IMG.INVALID_HASH, MGMT.EINVAL)
            slot = self._find(digest)
            if slot == PRIMARY:
                raise _Error(Group.IMAGE, IMG.IMAGE_SETTING_TEST_TO_ACTIVE_DENIED, MGMT.EBADSTATE)
            if kind is SwapType.REVERT:
                raise _Error(Group.IMAGE, IMG.IMAGE_CONFIRMATION_DENIED, MGMT.EBADSTATE)
            self.flash.set_trailer(SECONDARY, magic=True)
            self._upload = None
            return self.state()
        slot = PRIMARY if digest is None else self._find(digest)
        if slot == PRIMARY:
            if kind is SwapType.REVERT:
                self.flash.set_trailer(PRIMARY, magic=True, image_ok=True, copy_done=True)
        else:
            if kind is SwapType.REVERT:
                raise _Error(Group.IMAGE, IMG.IMAGE_CONFIRMATION_DENIED, MGMT.EBADSTATE)
            self.flash.set_trailer(SECONDARY, magic=True, image_ok=True)
            self._upload = None
        return self.state()

    def _secondary_in_use(self) -> bool:
        return swap_type(self.flash) is not SwapType.NONE

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
            up = self._upload
            if up is not None and sha and up.sha == sha and up.size == size and 0 < up.off < size:
                return {"off": up.off}, 0.0, False  # resume the broken session
            # 0: image 0's free slot; 1: its secondary slot named directly (smpmgr --slot 1).
            if body.get("image", 0) not in (0, 1, None):
                raise _Error(Group.IMAGE, IMG.INVALID_SLOT, MGMT.EINVAL)
            if self._secondary_in_use():
                raise _Error(Group.IMAGE, IMG.NO_FREE_SLOT, MGMT.EBADSTATE)
            if size > self.flash.max_image:
                raise _Error(Group.IMAGE, IMG.INVALID_IMAGE_TOO_LARGE, MGMT.EINVAL)
            if len(data) < HEADER_SIZE:
                raise _Error(Group.IMAGE, IMG.INVALID_IMAGE_HEADER, MGMT.EINVAL)
            hdr = Header.parse(data[:HEADER_SIZE])
            if hdr.magic != IMAGE_MAGIC:
                raise _Error(Group.IMAGE, IMG.INVALID_IMAGE_HEADER_MAGIC, MGMT.EINVAL)
            if body.get("upgrade"):
                self._check_upgrade(hdr)
            sectors = -(-size // SECTOR)
            self.flash.erase(SECONDARY, 0, sectors * SECTOR)
            self.flash.clear_trailer(SECONDARY)
            busy += sectors * self.config.erase_s_per_sector
            self._upload = _Upload(size, sha)
        up = self._upload
        if up is None:
            raise _Error(Group.IMAGE, IMG.FLASH_CONTEXT_NOT_SET, MGMT.EINVAL)
        if off != up.off:
            return {"off": up.off}, 0.0, False  # tell the client where to continue
        if off + len(data) > up.size:
            raise _Error(Group.IMAGE, IMG.INVALID_IMAGE_DATA_OVERRUN, MGMT.EINVAL)
        self.flash.write(SECONDARY, off, data)
        up.off += len(data)
        busy += len(data) / 1024 * self.config.program_s_per_kib
        out: dict[str, Any] = {"off": up.off}
        if up.off == up.size:
            if up.sha:
                written = self.flash.read(SECONDARY, 0, up.size)
                out["match"] = hashlib.sha256(written).digest() == up.sha
            self._upload = None
        return out, busy, False

    def _check_upgrade(self, hdr: Any) -> None:
        running = slot_image(self.flash, PRIMARY)
        if running is None:
            return
        new = (hdr.version.major, hdr.version.minor, hdr.version.revision)
        if new <= parse_version(running.version)[:3]:
            raise _Error(Group.IMAGE, IMG.CURRENT_VERSION_IS_NEWER, MGMT.EBADSTATE)

    def _erase(self, body: dict[str, Any]) -> tuple[dict[str, Any], float, bool]:
        slot = body.get("slot", SECONDARY)
        if slot != SECONDARY:
            raise _Error(Group.IMAGE, IMG.INVALID_SLOT, MGMT.EINVAL)
        if self._secondary_in_use():
            raise _Error(Group.IMAGE, IMG.NO_FREE_SLOT, MGMT.EBADSTATE)
        self.flash.erase(SECONDARY)
        self._upload = None
        sectors = self.flash.slot_size // SECTOR
        return {}, sectors * self.config.erase_s_per_sector, False

    def _slot_info(self) -> dict[str, Any]:
        size = self.flash.slot_size
        return {
            "images": [
                {
                    "image": 0,
                    "slots": [
                        {"slot": 0, "size": size},
                        {"slot": 1, "size": size, "upload_image_id": 0},
                    ],
                    "max_image_size": self.flash.max_image,
                }
            ]
        }
