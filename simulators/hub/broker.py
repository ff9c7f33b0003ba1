"""MQTT-over-TLS connections: CONNECT, then packets routed to the hub or DPS.

Hub and DPS share port 8883 on the same address, as the SDK fixes the port;
the CONNECT username tells them apart (``{scope}/registrations/{id}/...`` is
DPS). Each connection is one task; nothing here blocks the loop, so a TLS
handshake is never stalled behind another client's work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from simulators.hub.dps import Dps, Registration
from simulators.hub.errors import AuthError, MalformedPacket
from simulators.hub.iothub import IoTHub
from simulators.hub.mqtt import (
    SUBACK_FAILURE,
    ConnAck,
    ConnackCode,
    Connect,
    Disconnect,
    MqttDecoder,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    encode,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds a client may take from TCP accept to CONNECT
#: Topic filters one device may hold. IoT Hub documents "no more than 50
#: subscriptions" per client, beyond which SUBACK refuses the filter ("IoT Hub
#: MQTT 5 support", learn.microsoft.com, iot-mqtt-5-preview, "Level of support
#: and limitations"; MQTT 3.1.1's refusal code is 0x80).
MAX_SUBSCRIPTIONS = 50
# Beyond this much unsent data the client is not reading; drop it.
_WRITE_BUFFER_LIMIT = 4 * 1024 * 1024


@dataclass(eq=False)
class Connection:
    """One client socket; implements :class:`simulators.hub.iothub.Link`."""

    writer: asyncio.StreamWriter
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def write(self, packet: Packet) -> None:
        if self.closed.is_set():
            return
        self.writer.write(encode(packet))
        if self.writer.transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT:
            log.warning("client is not reading; dropping its connection")
            self.close()

    def send(self, packet: Publish) -> None:
        self.write(packet)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.writer.transport.abort()


class Broker:
    """Accepts MQTT connections and hands their packets to the hub or DPS."""

    def __init__(self, hub: IoTHub, dps: Dps) -> None:
        self._hub = hub
        self._dps = dps
        self.connections: set[Connection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    def drop_all(self) -> int:
        """Fault injection: abort every client socket, hub and DPS alike."""
        conns = list(self.connections)
        for conn in conns:
            conn.close()
        return len(conns)

    async def close(self, grace: float) -> None:
        """Abort every connection and wait, bounded, for the handlers to end."""
        self.drop_all()
        handlers = [t for t in self._handlers if not t.done()]
        if handlers:
            _, still = await asyncio.wait(handlers, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(writer)
        self.connections.add(conn)
        if (task := asyncio.current_task()) is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            await self._serve(conn, reader)
        except (MalformedPacket, ConnectionError, TimeoutError, OSError) as exc:
            log.debug("connection ended: %s", type(exc).__name__)
        finally:
            self.connections.discard(conn)
            conn.close()

    async def _serve(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        decoder = MqttDecoder()
        pending: list[Packet] = []
        async with asyncio.timeout(CONNECT_TIMEOUT):
            while not pending:
                data = await reader.read(65536)
                if not data:
                    return
                pending = decoder.feed(data)
        first, rest = pending[0], pending[1:]
        if not isinstance(first, Connect):
            raise MalformedPacket("first packet is not CONNECT")
        if first.username and "/registrations/" in first.username:
            await self._serve_dps(conn, first, reader, decoder, rest)
        else:
            await self._serve_device(conn, first, reader, decoder, rest)

    async def _packets(
        self,
        conn: Connection,
        reader: asyncio.StreamReader,
        decoder: MqttDecoder,
        backlog: list[Packet],
        keepalive: int,
    ) -> list[Packet]:
        """The next batch of packets, or none at EOF; enforces 1.5 x keep-alive."""
        limit = keepalive * 1.5 if keepalive else None
        while not backlog:
            async with asyncio.timeout(limit):
                data = await reader.read(65536)
            if not data or conn.closed.is_set():
                return []
            backlog = decoder.feed(data)
        return backlog

    async def _serve_device(
        self,
        conn: Connection,
        connect: Connect,
        reader: asyncio.StreamReader,
        decoder: MqttDecoder,
        backlog: list[Packet],
    ) -> None:
        device_id = connect.client_id
        try:
            self._hub.authenticate(device_id, connect.username, connect.password)
        except AuthError as exc:
            log.info("refused device %s: %s", device_id, exc)
            conn.write(ConnAck(ConnackCode.NOT_AUTHORIZED))
            await conn.writer.drain()
            return
        existed = self._hub.attach(device_id, conn)
        try:
            conn.write(ConnAck(ConnackCode.ACCEPTED, existed and not connect.clean_session))
            if connect.clean_session:
                self._hub.clean_session(device_id)
            while packets := await self._packets(conn, reader, decoder, backlog, connect.keepalive):
                backlog = []
                for packet in packets:
                    if not await self._device_packet(conn, device_id, packet):
                        return
        finally:
            self._hub.detach(device_id, conn)

    async def _device_packet(self, conn: Connection, device_id: str, packet: Packet) -> bool:
        match packet:
            case Publish():
                if packet.qos == 2:
                    raise MalformedPacket("IoT Hub does not support QoS 2")
                if packet.qos == 1 and packet.packet_id is not None:
                    conn.write(PubAck(packet.packet_id))
                await self._hub.on_publish(device_id, packet)
            case Subscribe():
                codes = tuple(self._subscribe(device_id, f, q) for f, q in packet.topics)
                conn.write(SubAck(packet.packet_id, codes))
            case Unsubscribe():
                for topic_filter in packet.topics:
                    self._hub.unsubscribe(device_id, topic_filter)
                conn.write(UnsubAck(packet.packet_id))
            case PingReq():
                conn.write(PingResp())
            case Disconnect():
                return False
            case PubAck():
                pass  # the hub sends at QoS 0, so nothing awaits this
            case _:
                raise MalformedPacket(f"unexpected {type(packet).__name__} from a client")
        return True

    def _subscribe(self, device_id: str, topic_filter: str, qos: int) -> int:
        """Grant one filter, or refuse it once the device holds MAX_SUBSCRIPTIONS others."""
        held = self._hub.sessions[device_id].subscriptions
        if topic_filter not in held and len(held) >= MAX_SUBSCRIPTIONS:
            log.warning(
                "device %s holds %d subscriptions; refused %.80r",
                device_id, len(held), topic_filter,
            )  # fmt: skip
            return SUBACK_FAILURE
        return self._hub.subscribe(device_id, topic_filter, qos)

    async def _serve_dps(
        self,
        conn: Connection,
        connect: Connect,
        reader: asyncio.StreamReader,
        decoder: MqttDecoder,
        backlog: list[Packet],
    ) -> None:
        try:
            reg: Registration = self._dps.authenticate(
                connect.client_id, connect.username, connect.password
            )
        except AuthError as exc:
            log.info("refused DPS registration %s: %s", connect.client_id, exc)
            conn.write(ConnAck(ConnackCode.NOT_AUTHORIZED))
            await conn.writer.drain()
            return
        conn.write(ConnAck(ConnackCode.ACCEPTED))
        while packets := await self._packets(conn, reader, decoder, backlog, connect.keepalive):
            backlog = []
            for packet in packets:
                match packet:
                    case Publish():
                        if packet.qos == 1 and packet.packet_id is not None:
                            conn.write(PubAck(packet.packet_id))
                        self._dps.on_publish(reg, conn, packet)
                    case Subscribe():
                        conn.write(
                            SubAck(packet.packet_id, tuple(min(q, 1) for _, q in packet.topics))
                        )
                    case Unsubscribe():
                        conn.write(UnsubAck(packet.packet_id))
                    case PingReq():
                        conn.write(PingResp())
                    case Disconnect():
                        return
                    case PubAck():
                        pass
                    case _:
                        raise MalformedPacket(f"unexpected {type(packet).__name__} from a client")
