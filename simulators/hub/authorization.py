"""Which MQTT topics a device identity may use, as IoT Hub decides it.

IoT Hub binds every device-side operation to the identity that authenticated
the connection: the twin and method topics (``$iothub/...``) carry no device
id and always mean the connection's own device, and the topics that do carry
one (``devices/{id}/messages/...``) must name that same device. Source: "Use
MQTT to communicate with IoT Hub" (learn.microsoft.com, iot-mqtt-connect-to-
iot-hub): a device subscribes to ``devices/{device-id}/messages/devicebound/#``
and sends to ``devices/{device-id}/messages/events/``; a method response is
routed by its request id to the method sent to that device. Pure functions; the
hub applies them.
"""

from __future__ import annotations

from simulators.hub import topics

#: Topic filters every device may subscribe to (they address its own twin and methods).
_OWN_FILTERS = (
    "$iothub/twin/res/#",
    "$iothub/twin/PATCH/properties/desired/#",
    "$iothub/methods/POST/#",
)


def may_subscribe(device_id: str, topic_filter: str) -> bool:
    """Whether ``device_id`` may subscribe to ``topic_filter``."""
    if topic_filter in _OWN_FILTERS:
        return True
    own = f"devices/{device_id}/messages/devicebound/"
    return topic_filter == own + "#" or (
        topic_filter.startswith(own) and "+" not in topic_filter and "#" not in topic_filter[:-1]
    )


def may_publish(device_id: str, parsed: topics.ParsedTopic) -> bool:
    """Whether ``device_id`` may publish to a parsed topic; an unknown topic is refused."""
    match parsed.kind:
        case topics.TopicKind.TELEMETRY:
            return parsed.segment == device_id
        case (
            topics.TopicKind.TWIN_GET
            | topics.TopicKind.TWIN_PATCH_REPORTED
            | topics.TopicKind.METHOD_RESPONSE
        ):
            return True  # device-relative: they act on the connection's own device
        case _:
            return False
