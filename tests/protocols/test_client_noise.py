"""Sans-I/O client on a noisy link: damaged answers are resent at once (docs/protocol.md §6)."""

from __future__ import annotations

from protocols.mcugw.client import ClientProtocol, Garbled, TimedOut
from protocols.mcugw.codec import Codec
from protocols.mcugw.constants import ResetMode, Status
from protocols.mcugw.framing import DELIMITER
from protocols.mcugw.packets import ErrorResponse, InfoRequest, ResetRequest

DAMAGED = b"\x05\x01\x02\x03\x04" + DELIMITER  # a frame that fails its checks


def _drain(client: ClientProtocol) -> list[object]:
    events = []
    while (ev := client.next_event()) is not None:
        events.append(ev)
    return events


def test_damaged_answer_is_resent_at_once_without_spending_an_attempt() -> None:
    client = ClientProtocol()
    client.send_request(InfoRequest(), 0.0, 0.5, attempts=1, garble_resends=2, noisy_extra=2)
    first = client.data_to_send()
    client.receive_data(DAMAGED)
    assert any(isinstance(ev, Garbled) for ev in _drain(client))
    client.poll(0.01)  # long before the deadline
    assert client.data_to_send() == DELIMITER + first  # same frame, same seq
    # Silence now: the one attempt was not spent, and the damage granted 2 more.
    for t in (0.6, 1.2):
        client.poll(t)
        assert client.data_to_send() == DELIMITER + first
        assert _drain(client) == []
    client.poll(1.8)
    [ev] = _drain(client)
    assert isinstance(ev, TimedOut) and ev.attempts == 3


def test_bytes_without_an_answer_by_the_deadline_count_as_damage() -> None:
    client = ClientProtocol()
    client.send_request(InfoRequest(), 0.0, 0.5, attempts=1, garble_resends=1)
    wire = client.data_to_send()
    client.receive_data(b"\x07\x11\x22")  # a frame whose delimiter was lost
    client.poll(0.6)
    assert client.data_to_send() == DELIMITER + wire
    client.poll(1.2)
    assert isinstance(_drain(client)[-1], TimedOut)


def test_reset_is_never_resent_on_damage() -> None:
    client = ClientProtocol()
    client.send_request(ResetRequest(ResetMode.RUN), 0.0, 0.5, attempts=1)
    client.data_to_send()
    client.receive_data(DAMAGED)
    _drain(client)
    client.poll(0.01)
    assert client.data_to_send() == b""
    client.poll(0.6)
    assert isinstance(_drain(client)[-1], TimedOut)


def test_answer_after_damaged_copies_is_delivered() -> None:
    client = ClientProtocol()
    client.send_request(InfoRequest(), 0.0, 0.5, attempts=3, garble_resends=4)
    seq = 1
    client.receive_data(DAMAGED)
    _drain(client)
    client.poll(0.01)
    mcu = Codec()
    client.receive_data(mcu.encode(ErrorResponse(InfoRequest.OPCODE, Status.BAD_STATE), seq))
    events = _drain(client)
    assert [type(ev).__name__ for ev in events] == ["Reply"]
