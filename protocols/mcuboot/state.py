"""``image state`` answers, typed: what mcumgr says each slot holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocols.driver import SlotState
from protocols.mcuboot.errors import SmpProtocolError


@dataclass(frozen=True, slots=True)
class SlotView:
    """One ``image state`` entry, typed."""

    slot: int  # 0 primary, 1 secondary, within its image
    version: str
    hash: bytes
    active: bool
    confirmed: bool
    pending: bool
    permanent: bool
    bootable: bool
    image: int = 0  # multi-image builds name it; one-image builds leave it out

    @classmethod
    def parse(cls, item: Any) -> SlotView:
        if not isinstance(item, dict) or not isinstance(item.get("slot"), int):
            raise SmpProtocolError(f"image state entry is not a slot record: {item!r}")
        digest = item.get("hash", b"")
        image = item.get("image", 0)
        return cls(
            slot=item["slot"],
            version=str(item.get("version", "")),
            hash=digest if isinstance(digest, bytes) else b"",
            active=bool(item.get("active", False)),
            confirmed=bool(item.get("confirmed", False)),
            pending=bool(item.get("pending", False)),
            permanent=bool(item.get("permanent", False)),
            bootable=bool(item.get("bootable", True)),
            image=image if isinstance(image, int) else 0,
        )

    @property
    def state(self) -> SlotState:
        if self.active:
            return SlotState.CONFIRMED if self.confirmed else SlotState.TRIAL
        if not self.bootable:
            return SlotState.INVALID
        return SlotState.COMPLETE


def parse_state(body: dict[str, Any]) -> list[SlotView]:
    """Every slot of every image the device lists."""
    images = body.get("images")
    if not isinstance(images, list):
        raise SmpProtocolError("image state answer has no 'images' list")
    return [SlotView.parse(i) for i in images]


def of_image(slots: list[SlotView], image: int) -> list[SlotView]:
    return [s for s in slots if s.image == image]


def image_count(slots: list[SlotView]) -> int:
    """Images the device lists (at least 1): its MCUMGR_GRP_IMG_UPDATABLE_IMAGE_NUMBER."""
    return max((s.image for s in slots), default=0) + 1


def find(slots: list[SlotView], digest: bytes) -> SlotView | None:
    return next((s for s in slots if s.hash == digest), None)


def active_slot(slots: list[SlotView]) -> SlotView | None:
    return next((s for s in slots if s.active), None)
