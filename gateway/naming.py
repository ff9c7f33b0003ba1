"""Device ids for MCUs, stable across restarts and port changes.

An id is derived from the MCU's model and unique id, never from its port, so
an MCU moved to another USB socket keeps its twin. The same string is the
DPS registration id, so it must satisfy both services' character sets.
"""

from __future__ import annotations

import re

MAX_DEVICE_ID = 128  # IoT Hub's limit on device ids (DPS registration ids allow the same)
# DPS registration ids: lower-case alphanumerics and - . _ : ; IoT Hub accepts a superset.
_DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9\-._:]*")
_MODEL_JUNK = re.compile(r"[^a-z0-9\-._]+")
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` unchanged if both IoT Hub and DPS accept it, else ValueError."""
    if not 0 < len(device_id) <= MAX_DEVICE_ID:
        raise ValueError(f"device id must be 1-{MAX_DEVICE_ID} characters")
    if not _DEVICE_ID.fullmatch(device_id):
        raise ValueError(
            "device id must be lower-case letters, digits and - . _ : "
            "starting with a letter or digit"
        )
    return device_id


def normalise_uid(uid: str) -> str:
    """A uid as lower-case hex with no separators (``0A:1B`` -> ``0a1b``)."""
    text = uid.strip().lower().replace(":", "").replace("-", "")
    if not _HEX.fullmatch(text):
        raise ValueError("uid must be an even number of hex digits")
    return text


def device_id_for(uid: bytes, model: str) -> str:
    """``{model}-{uid hex}``, lower-cased, with characters outside the id charset dropped."""
    if not uid:
        raise ValueError("uid is empty")
    prefix = _MODEL_JUNK.sub("-", model.strip().lower()).strip("-._") or "mcu"
    uid_hex = uid.hex()
    prefix = prefix[: MAX_DEVICE_ID - len(uid_hex) - 1]
    return check_device_id(f"{prefix}-{uid_hex}")
