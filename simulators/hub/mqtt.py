"""A sans-I/O MQTT 3.1.1 codec for the subset IoT Hub speaks.

Bytes go in through :meth:`MqttDecoder.feed` and packets come out; packets go
out through :func:`encode`. Nothing here touches a socket or a clock. QoS 2 and
retained messages are refused, because IoT Hub refuses them too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from simulators.hub.errors import MalformedPacket

# Large enough for a 32 KB twin plus topic, small enough to bound a bad client.
MAX_PACKET_SIZE = 256 * 1024
_MAX_REMAINING_LENGTH = 268_435_455


class PacketType(IntEnum):
    """The control packet type, the high nibble of the first byte."""

    CONNECT = 1  # client asks to open a session
    CONNACK = 2  # server accepts or refuses it
    PUBLISH = 3  # an application message, either way
    PUBACK = 4  # acknowledges a QoS 1 PUBLISH
    SUBSCRIBE = 8  # client adds topic filters
    SUBACK = 9  # server grants them
    UNSUBSCRIBE = 10  # client removes topic filters
    UNSUBACK = 11  # server confirms removal
    PINGREQ = 12  # client keep-alive probe
    PINGRESP = 13  # server answers the probe
    DISCONNECT = 14  # client closes cleanly


class ConnackCode(IntEnum):
    """CONNACK return codes of MQTT 3.1.1."""

    ACCEPTED = 0  # session open
    BAD_PROTOCOL_VERSION = 1  # not MQTT 3.1.1
    IDENTIFIER_REJECTED = 2  # client id refused
    SERVER_UNAVAILABLE = 3  # try again later
    BAD_USERNAME_PASSWORD = 4  # malformed credentials
    NOT_AUTHORIZED = 5  # IoT Hub's answer to a bad or expired SAS token


SUBACK_FAILURE = 0x80


@dataclass(frozen=True)
class Connect:
    client_id: str
    username: str | None = None
    password: bytes | None = None
    clean_session: bool = True
    keepalive: int = 60
    will_topic: str | None = None
    will_message: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False


@dataclass(frozen=True)
class ConnAck:
    return_code: ConnackCode
    session_present: bool = False


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True)
class Subscribe:
    packet_id: int
    topics: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]


@dataclass(frozen=True)
class UnsubAck:
    packet_id: int


@dataclass(frozen=True)
class PingReq:
    pass


@dataclass(frozen=True)
class PingResp:
    pass


@dataclass(frozen=True)
class Disconnect:
    pass


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
)


# ---------------------------------------------------------------- encoding


def _varint(n: int) -> bytes:
    if not 0 <= n <= _MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    return _bin(s.encode("utf-8"))


def _bin(b: bytes) -> bytes:
    if len(b) > 0xFFFF:
        raise ValueError("string field longer than 65535 bytes")
    return struct.pack("!H", len(b)) + b


def _frame(ptype: PacketType, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + _varint(len(body)) + body


def _encode_connect(p: Connect) -> bytes:
    flags = 0x02 if p.clean_session else 0
    payload = _str(p.client_id)
    if p.will_topic is not None:
        flags |= 0x04 | (p.will_qos << 3) | (0x20 if p.will_retain else 0)
        payload += _str(p.will_topic) + _bin(p.will_message or b"")
    if p.username is not None:
        flags |= 0x80
        payload += _str(p.username)
    if p.password is not None:
        flags |= 0x40
        payload += _bin(p.password)
    header = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", p.keepalive)
    return _frame(PacketType.CONNECT, 0, header + payload)


def _encode_publish(p: Publish) -> bytes:
    flags = (0x08 if p.dup else 0) | (p.qos << 1) | (0x01 if p.retain else 0)
    body = _str(p.topic)
    if p.qos:
        if p.packet_id is None:
            raise ValueError("QoS>0 PUBLISH needs a packet id")
        body += struct.pack("!H", p.packet_id)
    return _frame(PacketType.PUBLISH, flags, body + p.payload)


def encode(p: Packet) -> bytes:
    """Serialise one packet to its wire bytes."""
    match p:
        case Connect():
            return _encode_connect(p)
        case ConnAck():
            return _frame(PacketType.CONNACK, 0, bytes([int(p.session_present), p.return_code]))
        case Publish():
            return _encode_publish(p)
        case PubAck():
            return _frame(PacketType.PUBACK, 0, struct.pack("!H", p.packet_id))
        case Subscribe():
            body = struct.pack("!H", p.packet_id)
            body += b"".join(_str(t) + bytes([q]) for t, q in p.topics)
            return _frame(PacketType.SUBSCRIBE, 0x02, body)
        case SubAck():
            return _frame(
                PacketType.SUBACK, 0, struct.pack("!H", p.packet_id) + bytes(p.return_codes)
            )
        case Unsubscribe():
            body = struct.pack("!H", p.packet_id) + b"".join(_str(t) for t in p.topics)
            return _frame(PacketType.UNSUBSCRIBE, 0x02, body)
        case UnsubAck():
            return _frame(PacketType.UNSUBACK, 0, struct.pack("!H", p.packet_id))
        case PingReq():
            return _frame(PacketType.PINGREQ, 0, b"")
        case PingResp():
            return _frame(PacketType.PINGRESP, 0, b"")
        case Disconnect():
            return _frame(PacketType.DISCONNECT, 0, b"")


# ---------------------------------------------------------------- decoding


@dataclass
class _Reader:
    """Cursor over one packet body; every read is bounds-checked."""

    data: bytes
    pos: int = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MalformedPacket("packet body shorter than its fields")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPacket("string field is not UTF-8") from exc

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)


def _expect_flags(flags: int, wanted: int, name: str) -> None:
    if flags != wanted:
        raise MalformedPacket(f"{name} with reserved flags {flags:#x}")


def _decode_connect(r: _Reader) -> Connect:
    if r.string() != "MQTT" or r.u8() != 4:
        raise MalformedPacket("only MQTT 3.1.1 (protocol level 4) is supported")
    flags = r.u8()
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag set")
    keepalive = r.u16()
    client_id = r.string()
    will_topic = will_message = None
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        will_topic, will_message = r.string(), r.binary()
    elif will_qos or flags & 0x20:
        raise MalformedPacket("will QoS/retain without a will")
    username = r.string() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    return Connect(
        client_id=client_id,
        username=username,
        password=password,
        clean_session=bool(flags & 0x02),
        keepalive=keepalive,
        will_topic=will_topic,
        will_message=will_message,
        will_qos=will_qos,
        will_retain=bool(flags & 0x20),
    )


def _decode_publish(flags: int, r: _Reader) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    topic = r.string()
    packet_id = r.u16() if qos else None
    return Publish(
        topic=topic,
        payload=r.rest(),
        qos=qos,
        packet_id=packet_id,
        retain=bool(flags & 0x01),
        dup=bool(flags & 0x08),
    )


def _decode_body(ptype: int, flags: int, body: bytes) -> Packet:
    r = _Reader(body)
    packet: Packet
    match ptype:
        case PacketType.CONNECT:
            _expect_flags(flags, 0, "CONNECT")
            packet = _decode_connect(r)
        case PacketType.CONNACK:
            _expect_flags(flags, 0, "CONNACK")
            ack_flags, code = r.u8(), r.u8()
            try:
                packet = ConnAck(ConnackCode(code), bool(ack_flags & 1))
            except ValueError as exc:
                raise MalformedPacket(f"unknown CONNACK code {code}") from exc
        case PacketType.PUBLISH:
            packet = _decode_publish(flags, r)
        case PacketType.PUBACK:
            _expect_flags(flags, 0, "PUBACK")
            packet = PubAck(r.u16())
        case PacketType.SUBSCRIBE:
            _expect_flags(flags, 0x02, "SUBSCRIBE")
            pid, topics = r.u16(), []
            while not r.done:
                topics.append((r.string(), r.u8()))
            if not topics:
                raise MalformedPacket("SUBSCRIBE without topics")
            packet = Subscribe(pid, tuple(topics))
        case PacketType.SUBACK:
            _expect_flags(flags, 0, "SUBACK")
            packet = SubAck(r.u16(), tuple(r.rest()))
        case PacketType.UNSUBSCRIBE:
            _expect_flags(flags, 0x02, "UNSUBSCRIBE")
            pid, names = r.u16(), []
            while not r.done:
                names.append(r.string())
            if not names:
                raise MalformedPacket("UNSUBSCRIBE without topics")
            packet = Unsubscribe(pid, tuple(names))
        case PacketType.UNSUBACK:
            _expect_flags(flags, 0, "UNSUBACK")
            packet = UnsubAck(r.u16())
        case PacketType.PINGREQ:
            _expect_flags(flags, 0, "PINGREQ")
            packet = PingReq()
        case PacketType.PINGRESP:
            _expect_flags(flags, 0, "PINGRESP")
            packet = PingResp()
        case PacketType.DISCONNECT:
            _expect_flags(flags, 0, "DISCONNECT")
            packet = Disconnect()
        case _:
            raise MalformedPacket(f"unsupported packet type {ptype}")
    if not r.done:
        raise MalformedPacket(f"{type(packet).__name__} has trailing bytes")
    return packet


@dataclass
class MqttDecoder:
    """Turns a byte stream into packets, one complete packet at a time.

    Partial packets stay buffered until the rest arrives. MQTT has no
    resynchronisation, so any malformed packet raises and the caller must
    drop the connection, as the spec requires.
    """

    max_packet_size: int = MAX_PACKET_SIZE
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        packets: list[Packet] = []
        while (packet := self._next()) is not None:
            packets.append(packet)
        return packets

    def _next(self) -> Packet | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(buf):
                return None
            byte = buf[i]
            length += (byte & 0x7F) * multiplier
            i += 1
            if not byte & 0x80:
                break
            multiplier *= 128
            if i > 4:
                raise MalformedPacket("remaining length longer than 4 bytes")
        if length > self.max_packet_size:
            raise MalformedPacket(f"packet of {length} bytes exceeds {self.max_packet_size}")
        if len(buf) < i + length:
            return None
        first = buf[0]
        body = bytes(buf[i : i + length])
        del buf[: i + length]
        return _decode_body(first >> 4, first & 0x0F, body)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT wildcard match: ``+`` is one level, a trailing ``#`` is any suffix."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts):
            return False
        if f != "+" and f != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)
