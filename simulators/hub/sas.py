"""Shared access signatures, checked the way IoT Hub and DPS check them.

A token is ``SharedAccessSignature sr=<url-encoded resource>&sig=<b64 HMAC>&se=<epoch>``
with an optional ``skn`` policy name. The signature is HMAC-SHA256 under the
base64-decoded key over ``sr + "\\n" + se``, where ``sr`` is the URL-encoded
form exactly as it appears in the token. Keys and tokens never reach a log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass, field

from simulators.hub.errors import AuthError

_PREFIX = "SharedAccessSignature "


@dataclass(frozen=True)
class SasToken:
    """A parsed token; ``resource`` is URL-decoded, ``encoded_resource`` is as signed."""

    resource: str
    encoded_resource: str
    signature: str = field(repr=False)  # a secret: never in a log or repr
    expiry: int = 0
    key_name: str | None = None


def new_key() -> str:
    """A fresh 256-bit symmetric key in base64, the form IoT Hub hands out."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _hmac_b64(key_b64: str, message: str) -> str:
    try:
        key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthError("key is not valid base64") from exc
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def derive_device_key(group_key: str, registration_id: str) -> str:
    """The DPS group-enrollment device key: b64(HMAC-SHA256(b64decode(group), regId))."""
    return _hmac_b64(group_key, registration_id)


def make_token(resource: str, key: str, expiry: int, key_name: str | None = None) -> str:
    """Build a token as the SDKs do; used for the emulator's own tests and tools."""
    sr = urllib.parse.quote(resource, safe="")
    sig = urllib.parse.quote(_hmac_b64(key, f"{sr}\n{expiry}"), safe="")
    token = f"{_PREFIX}sr={sr}&sig={sig}&se={expiry}"
    return f"{token}&skn={key_name}" if key_name else token


def parse_token(token: str) -> SasToken:
    if not token.startswith(_PREFIX):
        raise AuthError("not a SharedAccessSignature")
    fields: dict[str, str] = {}
    for pair in token[len(_PREFIX) :].split("&"):
        name, sep, value = pair.partition("=")
        if not sep or name in fields:
            raise AuthError("malformed SharedAccessSignature field")
        fields[name] = value
    try:
        sr, sig, se = fields["sr"], fields["sig"], int(fields["se"])
    except (KeyError, ValueError) as exc:
        raise AuthError("SharedAccessSignature needs sr, sig and a numeric se") from exc
    return SasToken(
        resource=urllib.parse.unquote(sr),
        encoded_resource=sr,
        signature=urllib.parse.unquote(sig),
        expiry=se,
        key_name=fields.get("skn"),
    )


def verify(token: SasToken, keys: tuple[str, ...], now: float) -> None:
    """Accept the token if it is unexpired and signed by any of ``keys``."""
    if token.expiry <= now:
        raise AuthError("token expired")
    message = f"{token.encoded_resource}\n{token.expiry}"
    for key in keys:
        if hmac.compare_digest(_hmac_b64(key, message), token.signature):
            return
    raise AuthError("signature does not match any key")


def resource_matches(token: SasToken, expected: str) -> bool:
    """IoT Hub compares the resource case-insensitively, ignoring a scheme prefix."""
    got = token.resource.lower().removeprefix("https://").rstrip("/")
    want = expected.lower().rstrip("/")
    return got == want or want.startswith(got + "/")
