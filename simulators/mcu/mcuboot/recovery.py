"""MCUboot's serial recovery: the SMP server inside the bootloader, sans-I/O.

As ``boot/boot_serial/src/boot_serial.c`` (``boot_serial_input()``) serves it,
with the Kconfig defaults of ``boot/zephyr/Kconfig.serial_recovery``:

* image group: ``state`` read lists only images that validate (``bs_list()`` runs
  ``bootutil_img_validate``), with ``slot``, ``version`` and ``hash``
  (BOOT_SERIAL_IMG_GRP_HASH defaults y) and ``image`` on a multi-image build; no
  active/confirmed/pending flags (BOOT_SERIAL_IMG_GRP_IMAGE_STATE defaults n), so
  ``state`` write is ENOTSUP: there is no test and no confirm;
* ``upload`` writes the image's *primary* slot directly (``flash_area_id_from_multi_
  image_slot(img_num, 0)``): the first chunk (``off`` 0) erases the whole slot, a
  chunk at another offset than expected is answered ``rc`` 0 with the offset
  expected, writes are cut to the flash alignment and the rest asked for again;
* ``slot info`` only on a two-image build (BOOT_SERIAL_IMG_GRP_SLOT_INFO);
* OS group: ``reset`` (answers, then resets 250 ms later), console echo control;
  ``echo`` (BOOT_MGMT_ECHO) and ``mcumgr params`` (BOOT_MGMT_MCUMGR_PARAMS) are off
  by default; there is no ``os info`` and no bootloader info;
* every error is a legacy ``{"rc": N}`` (``bs_rc_rsp()``); anything else is ENOTSUP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smp import error as smperr

from protocols.mcuboot.client import Group, ImgCmd, Op, OsCmd, decode_packet
from protocols.mcuboot.errors import SmpProtocolError
from simulators.mcu.mcuboot.flash import PRIMARY, SECTOR, WRITE_SIZE, SlotFlash, area
from simulators.mcu.mcuboot.server import Answer, reply
from simulators.mcu.mcuboot.validate import TrustedKey, validate

MGMT = smperr.MGMT_ERR
CONS_ECHO_CTRL = 1  # NMGR_ID_CONS_ECHO_CTRL
#: BOOT_SERIAL_MAX_RECEIVE_SIZE default: the largest SMP frame recovery reassembles.
MAX_RECEIVE = 1024


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    keys: tuple[TrustedKey, ...] = ()
    echo: bool = False  # BOOT_MGMT_ECHO
    erase_s_per_sector: float = 0.02
    program_s_per_kib: float = 0.01
    turnaround_s: float = 0.001


class RecoveryServer:
    """``bs_upload`` state lives in static variables: kept until the bootloader resets."""

    def __init__(self, flash: SlotFlash, config: RecoveryConfig) -> None:
        self.flash = flash
        self.config = config
        self._size = 0
        self._off = 0
        self._image = 0

    def handle(self, packet: bytes) -> Answer | None:
        try:
            header, body = decode_packet(packet)
        except SmpProtocolError:
            return None
        if header.op not in (Op.READ, Op.WRITE):
            return None
        out: dict[str, Any]
        busy, reset = 0.0, False
        key = (header.group, header.command)
        if key == (Group.IMAGE, ImgCmd.STATE):
            out = self._list() if header.op == Op.READ else {"rc": MGMT.ENOTSUP}
        elif key == (Group.IMAGE, ImgCmd.UPLOAD) and header.op == Op.WRITE:
            out, busy = self._upload(body)
        elif key == (Group.IMAGE, ImgCmd.SLOT_INFO) and self.flash.images > 1:
            out = self._slot_info()
        elif key == (Group.OS, OsCmd.ECHO) and self.config.echo:
            out = {"r": str(body.get("d", ""))}
        elif key == (Group.OS, CONS_ECHO_CTRL):
            out = {"rc": 0}
        elif key == (Group.OS, OsCmd.RESET):
            out, reset = {"rc": 0}, True
        else:
            out = {"rc": MGMT.ENOTSUP}
        return Answer(reply(header, out), busy + self.config.turnaround_s, reset)

    def _list(self) -> dict[str, Any]:
        images = []
        for image in range(self.flash.images):
            for slot in (0, 1):
                index = area(image, slot)
                img = validate(self.flash.read(index, 0, self.flash.max_image), self.config.keys)
                if img is None:
                    continue
                entry: dict[str, Any] = {"image": image} if self.flash.images > 1 else {}
                entry.update({"slot": slot, "hash": img.hash, "version": img.version})
                images.append(entry)
        return {"images": images}

    def _upload(self, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        off, data, size = body.get("off"), body.get("data"), body.get("len")
        if not isinstance(off, int) or not isinstance(data, bytes):
            return {"rc": MGMT.EINVAL}, 0.0
        busy = 0.0
        if off == 0:
            image = body.get("image", 0)
            self._image = image if isinstance(image, int) else -1
            if not 0 <= self._image < self.flash.images:
                return {"rc": MGMT.EINVAL}, 0.0
            if not isinstance(size, int) or size > self.flash.slot_size:
                return {"rc": MGMT.EINVAL}, 0.0
            self._off = 0
            self.flash.erase(area(self._image, PRIMARY))  # the whole slot, at once
            busy += self.flash.slot_size // SECTOR * self.config.erase_s_per_sector
            self._size = size
        elif off != self._off:
            return {"rc": 0, "off": self._off}, 0.0  # "pretend success", ask for curr_off
        if self._off + len(data) > self._size:
            return {"rc": MGMT.EINVAL}, 0.0
        n = len(data) - len(data) % WRITE_SIZE
        last = self._off + len(data) == self._size
        chunk = data if last else data[:n]
        if last:
            chunk += bytes([0xFF]) * (-len(chunk) % WRITE_SIZE)
        if chunk:
            self.flash.program(area(self._image, PRIMARY), self._off, chunk)
        self._off += len(data) if last else n
        busy += len(data) / 1024 * self.config.program_s_per_kib
        return {"rc": 0, "off": self._off}, busy

    def _slot_info(self) -> dict[str, Any]:
        size = self.flash.slot_size
        return {
            "images": [
                {
                    "image": image,
                    "slots": [{"slot": 0, "size": size}, {"slot": 1, "size": size}],
                    "max_image_size": self.flash.max_image,
                }
                for image in range(self.flash.images)
            ]
        }
