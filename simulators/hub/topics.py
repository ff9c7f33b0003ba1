"""IoT Hub and DPS MQTT topic names, parsed and built.

The device SDK's parser needs ``key=value`` for every query pair, and the DPS
parser splits response topics on ``$``, so builders here never add a bare key
and never put a ``$`` after the ``?$rid``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from enum import Enum

TWIN_GET = "$iothub/twin/GET/"
TWIN_PATCH_REPORTED = "$iothub/twin/PATCH/properties/reported/"
METHOD_RESPONSE = "$iothub/methods/res/"
DPS_REGISTER = "$dps/registrations/PUT/iotdps-register/"
DPS_STATUS = "$dps/registrations/GET/iotdps-get-operationstatus/"


class TopicKind(Enum):
    """What a device-originated PUBLISH asks for."""

    TWIN_GET = "twin-get"  # full twin request
    TWIN_PATCH_REPORTED = "twin-patch"  # reported-properties patch
    METHOD_RESPONSE = "method-response"  # answer to a direct method
    TELEMETRY = "telemetry"  # device-to-cloud message
    DPS_REGISTER = "dps-register"  # start a DPS registration
    DPS_STATUS = "dps-status"  # poll a DPS operation
    UNKNOWN = "unknown"  # anything else: dropped


@dataclass(frozen=True)
class ParsedTopic:
    kind: TopicKind
    params: dict[str, str]
    # The path segment that carries a value: method status, or telemetry device id.
    segment: str = ""


def query_params(topic: str) -> dict[str, str]:
    """``...?$rid=1&x=y`` to ``{"$rid": "1", "x": "y"}``, URL-decoded."""
    _, _, query = topic.partition("?")
    pairs = (p.partition("=") for p in query.split("&") if p)
    return {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, _, v in pairs}


def parse(topic: str) -> ParsedTopic:
    params = query_params(topic)
    path = topic.partition("?")[0]
    if path == TWIN_GET:
        return ParsedTopic(TopicKind.TWIN_GET, params)
    if path == TWIN_PATCH_REPORTED:
        return ParsedTopic(TopicKind.TWIN_PATCH_REPORTED, params)
    if path.startswith(METHOD_RESPONSE):
        status = path[len(METHOD_RESPONSE) :].strip("/")
        return ParsedTopic(TopicKind.METHOD_RESPONSE, params, status)
    if path == DPS_REGISTER:
        return ParsedTopic(TopicKind.DPS_REGISTER, params)
    if path == DPS_STATUS:
        return ParsedTopic(TopicKind.DPS_STATUS, params)
    parts = topic.split("/")
    if len(parts) >= 4 and parts[0] == "devices" and parts[2:4] == ["messages", "events"]:
        bag = "/".join(parts[4:])
        props = {
            urllib.parse.unquote(k): urllib.parse.unquote(v)
            for k, _, v in (p.partition("=") for p in bag.split("&") if p)
        }
        return ParsedTopic(TopicKind.TELEMETRY, props, urllib.parse.unquote(parts[1]))
    return ParsedTopic(TopicKind.UNKNOWN, params)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def twin_response(status: int, rid: str, version: int | None = None) -> str:
    topic = f"$iothub/twin/res/{status}/?$rid={_q(rid)}"
    return topic if version is None else f"{topic}&$version={version}"


def desired_patch(version: int) -> str:
    return f"$iothub/twin/PATCH/properties/desired/?$version={version}"


def method_request(name: str, rid: str) -> str:
    return f"$iothub/methods/POST/{_q(name)}/?$rid={_q(rid)}"


def dps_response(status: int, rid: str, retry_after: int | None = None) -> str:
    topic = f"$dps/registrations/res/{status}/?$rid={_q(rid)}"
    return topic if retry_after is None else f"{topic}&retry-after={retry_after}"
