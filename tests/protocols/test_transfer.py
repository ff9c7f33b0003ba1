"""Sans-I/O sliding window: flow control, selective resend, timeouts, adaptive chunks."""

from __future__ import annotations

import pytest

from protocols.errors import DeviceTimeout, RemoteProtocolError
from protocols.mcugw.constants import Status
from protocols.mcugw.packets import DataAck, DataRequest
from protocols.mcugw.transfer import MAX_TIMEOUTS, TransferWindow

IMAGE = bytes(range(256)) * 256  # 64 KiB


def _window(**kw: object) -> TransferWindow:
    args: dict[str, object] = {
        "start": 0,
        "chunk": 1024,
        "window": 4096,
        "rto": 1.0,
        "nak_holdoff": 0.1,
        "align": 8,
    }
    args.update(kw)
    return TransferWindow(IMAGE, **args)  # type: ignore[arg-type]


def _send(win: TransferWindow, now: float) -> list[DataRequest]:
    frames = win.frames_to_send(now)
    for i, f in enumerate(frames):
        win.note_sent(f.offset, 1000 + f.offset + i)
    return frames


def test_never_more_than_window_beyond_ack() -> None:
    win = _window()
    frames = _send(win, 0.0)
    assert [f.offset for f in frames] == [0, 1024, 2048, 3072]
    assert _send(win, 0.1) == []  # window full
    win.on_ack(DataAck(Status.OK, 1024), 0.2)
    assert [f.offset for f in _send(win, 0.2)] == [4096]


def test_gap_with_later_trigger_resends_at_once() -> None:
    win = _window()
    _send(win, 0.0)
    # Frame 2048 (sent after 0) exposed the hole at 0: 0 is certainly lost.
    win.on_ack(DataAck(Status.GAP, 0), 0.01, seq=1000 + 2048 + 2)
    resent = win.frames_to_send(0.01)
    assert next(f.offset for f in resent) == 0
    assert win.retransmits >= 1


def test_gap_for_a_copy_still_in_flight_waits_for_holdoff() -> None:
    win = _window()
    _send(win, 0.0)
    # A GAP triggered by a frame sent *before* the missing one's latest copy.
    win.on_ack(DataAck(Status.GAP, 1024), 0.01, seq=999)
    assert win.frames_to_send(0.01) == []
    deadline = win.next_deadline()
    assert deadline is not None
    assert deadline == pytest.approx(0.1)
    assert next(f.offset for f in win.frames_to_send(0.1)) == 1024


def test_timeout_resends_everything_outstanding_in_smaller_pieces() -> None:
    win = _window()
    _send(win, 0.0)
    win.on_timeout(1.0)
    frames = win.frames_to_send(1.0)
    covered = sorted((f.offset, f.offset + len(f.data)) for f in frames)
    assert covered[0][0] == 0
    assert covered[-1][1] == 4096
    assert all(len(f.data) < 1024 for f in frames)  # the chunk shrank on loss
    assert all(f.offset % 8 == 0 for f in frames)


def test_chunk_grows_back_after_clean_frames() -> None:
    win = _window()
    _send(win, 0.0)
    win.on_timeout(1.0)
    win.frames_to_send(1.0)
    small = win.chunk
    assert small < 1024
    acked = 4096  # the MCU got every resent piece
    now = 2.0
    for _ in range(10_000):
        if win.done:
            break
        for f in _send(win, now):
            acked = max(acked, f.offset + len(f.data))
        win.on_ack(DataAck(Status.OK, acked), now)
        now += 0.01
    assert win.chunk > small


def test_gives_up_after_repeated_timeouts() -> None:
    win = _window()
    _send(win, 0.0)
    now = 0.0
    with pytest.raises(DeviceTimeout, match="retransmission timeouts"):
        for _ in range(MAX_TIMEOUTS + 1):
            deadline = win.next_deadline()
            assert deadline is not None
            now = deadline
            win.on_timeout(now)
            win.frames_to_send(now)


def test_ack_beyond_what_was_sent_is_a_protocol_error() -> None:
    win = _window()
    _send(win, 0.0)
    with pytest.raises(RemoteProtocolError, match="beyond"):
        win.on_ack(DataAck(Status.OK, 8192), 0.1)


def test_gap_is_not_an_acknowledgement() -> None:
    win = _window()
    _send(win, 0.0)
    win.on_ack(DataAck(Status.GAP, 2048), 0.01, seq=999)
    assert win.acked == 0


def test_resume_starts_at_offset() -> None:
    win = _window(start=8192)
    frames = _send(win, 0.0)
    assert frames[0].offset == 8192
    for f in _send(win, 0.1):
        assert f.offset >= 8192
    win.on_ack(DataAck(Status.OK, 8192 + 4096), 0.2)
    assert win.acked == 8192 + 4096
