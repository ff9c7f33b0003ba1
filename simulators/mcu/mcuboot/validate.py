"""``bootutil_img_validate()``: is the image in a slot one MCUboot would boot?

As ``boot/bootutil/src/image_validate.c`` checks it:

* the header magic, and the SHA256 TLV against the header, body and protected TLVs;
* with signature checking built in (keys given): a ``KEYHASH`` TLV naming one of the
  trusted keys (SHA-256 of its SubjectPublicKeyInfo DER, as imgtool embeds it), then
  that key's signature TLV over the digest (ECDSA P-256 ``0x22``, Ed25519 ``0x24``).
  An image signed with another key, or not signed at all, is not valid.

Without keys the model is MCUboot built with ``CONFIG_BOOT_SIGNATURE_TYPE_NONE``:
the hash alone decides.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from protocols.mcuboot.errors import ImageError
from protocols.mcuboot.image import (
    TLV_ECDSA_SIG,
    TLV_ED25519,
    TLV_INFO_MAGIC,
    TLV_KEYHASH,
    TLV_SHA256,
    McubootImage,
    parse_image,
)

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class TrustedKey:
    """One key MCUboot was built with (``CONFIG_BOOT_SIGNATURE_KEY_FILE``)."""

    key: PublicKey
    key_hash: bytes  # what the image's KEYHASH TLV must say

    @classmethod
    def load(cls, path: Path) -> TrustedKey:
        """From an imgtool key file (private PEM, as ``imgtool keygen`` writes) or a public PEM."""
        data = path.read_bytes()
        try:
            private = serialization.load_pem_private_key(data, password=None)
            public = private.public_key()
        except (ValueError, TypeError):
            try:
                public = serialization.load_pem_public_key(data)
            except ValueError:
                raise ValueError(f"{path}: not a PEM key (imgtool keygen writes one)") from None
        if isinstance(public, ec.EllipticCurvePublicKey):
            if not isinstance(public.curve, ec.SECP256R1):
                raise ValueError(f"{path}: ECDSA keys must be P-256 for this MCUboot model")
        elif not isinstance(public, ed25519.Ed25519PublicKey):
            raise ValueError(f"{path}: only ECDSA P-256 and Ed25519 keys are modelled")
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(public, hashlib.sha256(der).digest())

    def verifies(self, tlv: int, signature: bytes, digest: bytes) -> bool:
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey) and tlv == TLV_ECDSA_SIG:
                # imgtool may pad the DER signature with zeros to a fixed length.
                der = signature[: signature[1] + 2] if len(signature) > 2 else signature
                self.key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
                return True
            if isinstance(self.key, ed25519.Ed25519PublicKey) and tlv == TLV_ED25519:
                self.key.verify(signature, digest)
                return True
        except InvalidSignature:
            return False
        return False


def validate(data: bytes, keys: tuple[TrustedKey, ...]) -> McubootImage | None:
    """The image if MCUboot would boot it, else None."""
    try:
        image = parse_image(data, check_hash=True)
    except ImageError:
        return None
    if not keys:
        return image
    key_hashes = [v for t, v in image.tlvs if t == TLV_KEYHASH]
    key = next((k for k in keys if k.key_hash in key_hashes), None)
    if key is None:
        return None  # signed with a key this MCUboot does not know, or not signed
    for tlv, value in image.tlvs:
        if tlv in (TLV_ECDSA_SIG, TLV_ED25519) and key.verifies(tlv, value, image.hash):
            return image
    return None


def sign_image(data: bytes, key_path: Path) -> bytes:
    """Re-sign an unsigned image as ``imgtool sign --key`` does (SHA256, KEYHASH, signature).

    For the simulator's factory image only: tests sign with the real ``imgtool``.
    """
    image = parse_image(data)
    try:
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{key_path}: the factory image needs the private key") from None
    key = TrustedKey.load(key_path)
    if isinstance(private, ec.EllipticCurvePrivateKey):
        tlv, sig = TLV_ECDSA_SIG, private.sign(image.hash, ec.ECDSA(Prehashed(hashes.SHA256())))
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        tlv, sig = TLV_ED25519, private.sign(image.hash)
    else:
        raise ValueError(f"{key_path}: only ECDSA P-256 and Ed25519 keys are modelled")
    entries = [(TLV_SHA256, image.hash), (TLV_KEYHASH, key.key_hash), (tlv, sig)]
    body = b"".join(struct.pack("<BBH", t, 0, len(v)) + v for t, v in entries)
    info = struct.pack("<HH", TLV_INFO_MAGIC, 4 + len(body))
    return data[: image.hashed_size] + info + body
