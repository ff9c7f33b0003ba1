"""Which twins are ADU devices, and their device classes and groups, as ADU derives them.

Rules (learn.microsoft.com/azure/iot-hub-device-update): a device is a Device Update
device once it connected with the Device Update contract model id (device-update-plug-
and-play.md) and reported its ``deviceUpdate.agent.deviceProperties``; its device class
is its compatibility properties (``compatPropertyNames``, default manufacturer and
model) with its contract model (device-update-compatibility.md); its group is
``tags.ADUGroup``, else the default group ``Default-<deviceClassId>``
(device-update-groups.md). Sans-I/O over twin documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CONTRACT_PREFIX = "dtmi:azure:iot:deviceUpdateContractModel;"
DEFAULT_COMPAT_NAMES = "manufacturer,model"
DEFAULT_GROUP_PREFIX = "Default-"


@dataclass(frozen=True)
class AduDevice:
    device_id: str
    class_id: str
    compat: Mapping[str, str]
    contract_model: str
    group_id: str
    tagged: bool  # in a user group (tags.ADUGroup), not the default one
    agent: Mapping[str, Any] = field(default_factory=dict)  # reported deviceUpdate.agent

    @property
    def installed_update(self) -> dict[str, str] | None:
        raw = self.agent.get("installedUpdateId")
        try:
            value = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            return None
        if isinstance(value, dict) and {"provider", "name", "version"} <= set(value):
            return {k: str(value[k]) for k in ("provider", "name", "version")}
        return None


def device_class_id(compat: Mapping[str, str], contract_model: str) -> str:
    """A stable id for (compat properties, contract model): ADU's is a hash of them too."""
    key = json.dumps({"compat": dict(sorted(compat.items())), "model": contract_model})
    return hashlib.sha1(key.encode()).hexdigest()


def adu_device(
    device_id: str, tags: Mapping[str, Any], reported: Mapping[str, Any], model_id: str | None
) -> AduDevice | None:
    if not model_id or not model_id.startswith(CONTRACT_PREFIX):
        return None
    component = reported.get("deviceUpdate")
    agent = component.get("agent") if isinstance(component, dict) else None
    if not isinstance(agent, dict):
        return None
    props = agent.get("deviceProperties")
    if not isinstance(props, dict):
        return None
    names = agent.get("compatPropertyNames")
    names = names if isinstance(names, str) and names else DEFAULT_COMPAT_NAMES
    compat = {}
    for name in (n.strip() for n in names.split(",")):
        value = props.get(name)
        if not isinstance(value, str):
            return None  # a compat property it does not report: no device class
        compat[name] = value
    contract = str(props.get("contractModelId") or model_id)
    class_id = device_class_id(compat, contract)
    tag = tags.get("ADUGroup")
    tagged = isinstance(tag, str) and bool(tag)
    group = tag if tagged else DEFAULT_GROUP_PREFIX + class_id
    return AduDevice(device_id, class_id, compat, contract, str(group), tagged, agent)


def adu_devices(
    twins: Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any]]], model_ids: Mapping[str, str]
) -> list[AduDevice]:
    """``(device id, tags, reported)`` of every twin -> the ADU devices among them."""
    out = []
    for device_id, tags, reported in twins:
        device = adu_device(device_id, tags, reported, model_ids.get(device_id))
        if device is not None:
            out.append(device)
    return sorted(out, key=lambda d: d.device_id)


def compatible(compat: Mapping[str, str], update_compat: Iterable[Mapping[str, str]]) -> bool:
    """An update fits a device class when one of its property sets equals the class's."""
    return any(dict(entry) == dict(compat) for entry in update_compat)
