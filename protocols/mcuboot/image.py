"""MCUboot image format, as ``imgtool sign`` writes it.

Layout::

    +----------------------+ 0
    | image header (32 B)  |  magic 0x96f3b83d, hdr_size, protect_tlv_size, img_size,
    | padded to hdr_size   |  flags, version (major.minor.revision+build)
    +----------------------+ hdr_size
    | application          |
    +----------------------+ hdr_size + img_size
    | protected TLVs       |  info 0x6908 (only if protect_tlv_size != 0); hashed
    +----------------------+
    | TLVs                 |  info 0x6907; SHA256 (type 0x10) = sha256(header..protected)
    +----------------------+

The SHA256 TLV value is what mcumgr reports as a slot's ``hash`` and what
``image state write`` names an image by. All integers are little-endian (the
only byte order MCUboot targets use in practice).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import construct as cs

from protocols.mcuboot.errors import ImageError

IMAGE_MAGIC = 0x96F3B83D
TLV_INFO_MAGIC = 0x6907  # unprotected TLV area
TLV_PROT_INFO_MAGIC = 0x6908  # protected TLV area (covered by the hash)
TLV_SHA256 = 0x10
TLV_KEYHASH = 0x01  # SHA-256 of the signing key's public key (SubjectPublicKeyInfo DER)
TLV_RSA2048_PSS = 0x20
TLV_ECDSA_SIG = 0x22  # ECDSA P-256 (DER) over the SHA256 TLV's digest
TLV_ED25519 = 0x24  # Ed25519 over the SHA256 TLV's digest
HEADER_SIZE = 32
#: The trailer magic ``imgtool --pad`` and MCUboot write at a slot's end (BOOT_MAX_ALIGN 8).
BOOT_MAGIC = bytes.fromhex("77c295f360d2ef7f3552500f2cb67980")
#: Header flag: the image must not be booted (e.g. a data image).
IMAGE_F_NON_BOOTABLE = 0x10

Version = cs.Struct(
    "major" / cs.Int8ul,
    "minor" / cs.Int8ul,
    "revision" / cs.Int16ul,
    "build" / cs.Int32ul,
)

Header = cs.Struct(
    "magic" / cs.Int32ul,
    "load_addr" / cs.Int32ul,
    "hdr_size" / cs.Int16ul,
    "protect_tlv_size" / cs.Int16ul,
    "img_size" / cs.Int32ul,
    "flags" / cs.Int32ul,
    "version" / Version,
    "pad1" / cs.Int32ul,
)

TlvInfo = cs.Struct("magic" / cs.Int16ul, "tlv_tot" / cs.Int16ul)
TlvEntry = cs.Struct("type" / cs.Int8ul, "rsvd" / cs.Int8ul, "len" / cs.Int16ul)
TLV_INFO_SIZE = 4
TLV_ENTRY_SIZE = 4


@dataclass(frozen=True, slots=True)
class McubootImage:
    """What the gateway needs from a signed image; ``hash`` is the SHA256 TLV value."""

    version: str
    hash: bytes
    header_size: int
    image_size: int
    #: Bytes covered by the hash and TLVs; anything after (imgtool ``--pad``) is padding.
    total_size: int
    flags: int
    load_addr: int
    #: End of what the SHA256 TLV covers (header, body, protected TLVs); signed as well.
    hashed_size: int = 0
    #: Unprotected TLVs in file order, (type, value).
    tlvs: tuple[tuple[int, bytes], ...] = ()

    @property
    def bootable(self) -> bool:
        return not self.flags & IMAGE_F_NON_BOOTABLE


def version_text(major: int, minor: int, revision: int, build: int) -> str:
    """How mcumgr prints an image version: ``1.2.3``, or ``1.2.3.4`` with a build number."""
    text = f"{major}.{minor}.{revision}"
    return f"{text}.{build}" if build else text


def parse_version(text: str) -> tuple[int, int, int, int]:
    """``1.2.3`` / ``1.2.3+4`` / ``1.2.3.4`` -> (major, minor, revision, build)."""
    parts = text.replace("+", ".").split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not an MCUboot version (major.minor.revision[+build])")
    nums = [int(p) for p in parts] + [0] * (4 - len(parts))
    limits = (0xFF, 0xFF, 0xFFFF, 0xFFFFFFFF)
    if any(n > lim for n, lim in zip(nums, limits, strict=True)):
        raise ValueError(f"{text!r}: a field is out of range for an MCUboot version")
    return nums[0], nums[1], nums[2], nums[3]


def _tlv_area(data: bytes, off: int, magic: int, what: str) -> tuple[int, list[tuple[int, bytes]]]:
    """Parse one TLV area at ``off``; returns (end offset, [(type, value)])."""
    if off + TLV_INFO_SIZE > len(data):
        raise ImageError(f"{what} TLV area is missing (image truncated at {len(data)} bytes)")
    info = TlvInfo.parse(data[off : off + TLV_INFO_SIZE])
    if info.magic != magic:
        raise ImageError(f"{what} TLV area has magic 0x{info.magic:04x}, expected 0x{magic:04x}")
    end = off + info.tlv_tot
    if info.tlv_tot < TLV_INFO_SIZE or end > len(data):
        raise ImageError(f"{what} TLV area length {info.tlv_tot} runs past the image")
    entries: list[tuple[int, bytes]] = []
    pos = off + TLV_INFO_SIZE
    while pos < end:
        if pos + TLV_ENTRY_SIZE > end:
            raise ImageError(f"{what} TLV entry header at {pos} runs past its area")
        entry = TlvEntry.parse(data[pos : pos + TLV_ENTRY_SIZE])
        value_end = pos + TLV_ENTRY_SIZE + entry.len
        if value_end > end:
            raise ImageError(f"{what} TLV 0x{entry.type:02x} runs past its area")
        entries.append((entry.type, data[pos + TLV_ENTRY_SIZE : value_end]))
        pos = value_end
    return end, entries


def parse_image(data: bytes, *, check_hash: bool = True) -> McubootImage:
    """Read an MCUboot image's header and TLVs; raises :class:`ImageError` with the reason.

    With ``check_hash`` the SHA256 TLV must match the header, body and protected
    TLVs, as MCUboot checks before it boots an image.
    """
    if len(data) < HEADER_SIZE:
        raise ImageError(f"{len(data)} bytes is too short for an MCUboot image header")
    hdr = Header.parse(data[:HEADER_SIZE])
    if hdr.magic != IMAGE_MAGIC:
        raise ImageError(
            f"no MCUboot image header (magic 0x{hdr.magic:08x}, expected 0x{IMAGE_MAGIC:08x}): "
            "sign the binary with 'imgtool sign' first"
        )
    if hdr.hdr_size < HEADER_SIZE:
        raise ImageError(f"header size {hdr.hdr_size} is smaller than the header itself")
    body_end = hdr.hdr_size + hdr.img_size
    if body_end > len(data):
        raise ImageError(f"header says {body_end} bytes of header and body; file has {len(data)}")
    off = body_end
    if hdr.protect_tlv_size:
        off, _ = _tlv_area(data, off, TLV_PROT_INFO_MAGIC, "protected")
        if off != body_end + hdr.protect_tlv_size:
            raise ImageError("protected TLV area size disagrees with the header")
    hashed_end = off
    end, tlvs = _tlv_area(data, off, TLV_INFO_MAGIC, "unprotected")
    digests = [v for t, v in tlvs if t == TLV_SHA256]
    if len(digests) > 1:
        raise ImageError("image has more than one SHA256 TLV")
    digest = digests[0] if digests else None
    if digest is None or len(digest) != 32:
        raise ImageError("image has no SHA256 TLV (MCUboot cannot validate it)")
    if check_hash and hashlib.sha256(data[:hashed_end]).digest() != digest:
        raise ImageError("image SHA256 TLV does not match its contents (corrupt or altered)")
    v = hdr.version
    return McubootImage(
        version=version_text(v.major, v.minor, v.revision, v.build),
        hash=bytes(digest),
        header_size=hdr.hdr_size,
        image_size=hdr.img_size,
        total_size=end,
        flags=hdr.flags,
        load_addr=hdr.load_addr,
        hashed_size=hashed_end,
        tlvs=tuple(tlvs),
    )


def padding_start(data: bytes, image: McubootImage) -> int:
    """Where ``imgtool sign --pad`` padding starts, or ``len(data)`` if there is none.

    ``--pad`` fills the file up to the slot size with 0xFF and ends it with MCUboot's
    trailer: the boot magic in the last 16 bytes (its first two bytes encode
    ``--max-align`` when that is not 8) and, with ``--confirm``, an ``image_ok`` byte
    of 0x01 just before it. Only a tail of exactly that shape is padding: anything
    else after the TLVs is uploaded as it is.
    """
    end = image.total_size
    tail = data[end:]
    if len(tail) < 16 or tail[-14:] != BOOT_MAGIC[2:]:
        return len(data)
    rest = tail[:-16]
    flags = [i for i, b in enumerate(rest) if b != 0xFF]
    if len(flags) > 1 or (flags and rest[flags[0]] != 0x01):
        return len(data)
    return end


def build_image(body: bytes, version: str, *, header_size: int = 0x200) -> bytes:
    """An unsigned image laid out as ``imgtool sign --pad-header`` (no key) makes it.

    Used for the simulator's factory image; tests use the real ``imgtool``.
    """
    major, minor, revision, build = parse_version(version)
    header: bytes = Header.build(
        {
            "magic": IMAGE_MAGIC,
            "load_addr": 0,
            "hdr_size": header_size,
            "protect_tlv_size": 0,
            "img_size": len(body),
            "flags": 0,
            "version": {"major": major, "minor": minor, "revision": revision, "build": build},
            "pad1": 0,
        }
    )
    signed = header + bytes(header_size - HEADER_SIZE) + body
    digest = hashlib.sha256(signed).digest()
    tlv: bytes = TlvEntry.build({"type": TLV_SHA256, "rsvd": 0, "len": len(digest)}) + digest
    info: bytes = TlvInfo.build({"magic": TLV_INFO_MAGIC, "tlv_tot": TLV_INFO_SIZE + len(tlv)})
    return signed + info + tlv
