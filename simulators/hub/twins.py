"""Device twins: JSON merge patches, ``$version`` counters and IoT Hub's limits.

A :class:`Twin` is immutable; every change returns a new one, which the store
persists and the broker announces. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import dataclass, field, replace
from typing import Any

from simulators.hub.errors import BadRequest, PreconditionFailed, TooLarge

JsonObject = dict[str, Any]

# IoT Hub's documented limits ("Understand and use device twins in IoT Hub",
# learn.microsoft.com, iot-hub-devguide-device-twins, "Tags and properties
# format" and "Twin size"): 32 KB each for desired and reported, 8 KB of tags,
# and JSON objects at most 10 levels deep.
DESIRED_LIMIT = 32 * 1024
REPORTED_LIMIT = 32 * 1024
TAGS_LIMIT = 8 * 1024
MAX_DEPTH = 10
# Python's JSON parser recurses per level (RecursionError near 1000): a body is
# scanned for its nesting first and refused well before that. Any body this deep
# breaks MAX_DEPTH anyway, so the answer is the same 400.
_PARSE_DEPTH = MAX_DEPTH + 4
_JSON_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')
# Keys IoT Hub refuses inside twin documents.
_FORBIDDEN_KEY_CHARS = frozenset(".$ ")


def merge_patch(target: JsonObject, patch: JsonObject) -> JsonObject:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            base = out.get(key)
            out[key] = merge_patch(base if isinstance(base, dict) else {}, value)
        else:
            out[key] = value
    return out


def loads_object(body: bytes, section: str) -> JsonObject:
    """Parse a JSON object body, refusing (400) one nested too deep to parse safely."""
    depth = 0
    for m in _JSON_STRING_OR_BRACKET.finditer(body):
        c = m.group()
        if c in (b"{", b"["):
            depth += 1
            if depth > _PARSE_DEPTH:
                raise BadRequest(f"{section}: nesting deeper than {MAX_DEPTH} levels")
        elif c in (b"}", b"]"):
            depth -= 1
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"{section}: body is not JSON") from exc
    if not isinstance(value, dict):
        raise BadRequest(f"{section}: body is not a JSON object")
    return value


def _validate(doc: Any, section: str, depth: int = 0) -> None:
    if not isinstance(doc, dict):
        return
    if depth > MAX_DEPTH:
        raise BadRequest(f"{section}: nesting deeper than {MAX_DEPTH} levels")
    for key, value in doc.items():
        if not key or any(c in _FORBIDDEN_KEY_CHARS or ord(c) < 32 for c in key):
            raise BadRequest(f"{section}: invalid property name {key[:64]!r}")
        _validate(value, section, depth + 1)


def _size(doc: JsonObject) -> int:
    return len(json.dumps(doc, separators=(",", ":")).encode("utf-8"))


def _strip_meta(patch: JsonObject) -> JsonObject:
    """Drop the read-only ``$version``/``$metadata`` a client may echo back."""
    return {k: v for k, v in patch.items() if k not in ("$version", "$metadata")}


def _checked(doc: JsonObject, section: str, limit: int) -> JsonObject:
    _validate(doc, section)
    if (size := _size(doc)) > limit:
        raise TooLarge(f"{section} would be {size} bytes, over the {limit} byte limit")
    return doc


def make_etag(version: int) -> str:
    """IoT Hub etags are opaque; base64 of a 64-bit counter looks like the real thing."""
    return base64.b64encode(struct.pack(">Q", version)).decode("ascii")


def check_etag(if_match: str | None, current: str) -> None:
    """Optimistic concurrency: ``None`` or ``*`` always matches."""
    if if_match is None:
        return
    wanted = if_match.strip().strip('"')
    if wanted not in ("*", "", current):
        raise PreconditionFailed("etag does not match the current version")


@dataclass(frozen=True)
class Twin:
    device_id: str
    tags: JsonObject = field(default_factory=dict)
    desired: JsonObject = field(default_factory=dict)
    desired_version: int = 1
    reported: JsonObject = field(default_factory=dict)
    reported_version: int = 1
    version: int = 1

    @property
    def etag(self) -> str:
        return make_etag(self.version)

    def patch_desired(self, patch: JsonObject) -> Twin:
        patch = _strip_meta(patch)
        _validate(patch, "desired")  # before merging: merge_patch recurses per level
        desired = _checked(merge_patch(self.desired, patch), "desired", DESIRED_LIMIT)
        return replace(
            self,
            desired=desired,
            desired_version=self.desired_version + 1,
            version=self.version + 1,
        )

    def patch_reported(self, patch: JsonObject) -> Twin:
        patch = _strip_meta(patch)
        _validate(patch, "reported")  # before merging: merge_patch recurses per level
        reported = _checked(merge_patch(self.reported, patch), "reported", REPORTED_LIMIT)
        return replace(
            self,
            reported=reported,
            reported_version=self.reported_version + 1,
            version=self.version + 1,
        )

    def patch_tags(self, patch: JsonObject) -> Twin:
        _validate(patch, "tags")  # before merging: merge_patch recurses per level
        tags = _checked(merge_patch(self.tags, patch), "tags", TAGS_LIMIT)
        return replace(self, tags=tags, version=self.version + 1)

    def replace_service_side(self, tags: JsonObject, desired: JsonObject) -> Twin:
        """A service PUT replaces tags and desired wholesale; reported is the device's."""
        return replace(
            self,
            tags=_checked(dict(tags), "tags", TAGS_LIMIT),
            desired=_checked(_strip_meta(desired), "desired", DESIRED_LIMIT),
            desired_version=self.desired_version + 1,
            version=self.version + 1,
        )

    def device_view(self) -> JsonObject:
        """The body of a device-side twin GET."""
        return {
            "desired": {**self.desired, "$version": self.desired_version},
            "reported": {**self.reported, "$version": self.reported_version},
        }

    def desired_notification(self, patch: JsonObject) -> JsonObject:
        """The body sent on the desired-patch topic: the patch plus the new version."""
        return {**_strip_meta(patch), "$version": self.desired_version}

    def query_view(self) -> JsonObject:
        """The fields of the twin that the query language can address."""
        return {
            "deviceId": self.device_id,
            "tags": self.tags,
            "properties": {"desired": self.desired, "reported": self.reported},
            "version": self.version,
        }
