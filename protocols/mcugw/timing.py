"""Deadlines derived from the link rate and the MCU's advertised flash timings.

Nothing here sleeps or reads a clock; it only computes durations in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocols.mcugw.constants import BITS_PER_BYTE
from protocols.mcugw.framing import wire_size
from protocols.mcugw.packets import Geometry

#: Slack for OS scheduling and USB-serial latency on the gateway side.
HOST_MARGIN_S = 0.4
#: Assumed worst MCU turnaround before INFO has told us anything better.
DEFAULT_TURNAROUND_S = 0.010
#: Cap on the doubled DATA retransmission timeout.
MAX_RTO_S = 8.0


@dataclass(frozen=True, slots=True)
class LinkTiming:
    baud: int  # 0 means unpaced (socket or emulated link)
    turnaround_s: float = DEFAULT_TURNAROUND_S

    def wire_time(self, nbytes: int) -> float:
        if self.baud <= 0:
            return 0.0
        return nbytes * BITS_PER_BYTE / self.baud

    def frame_time(self, payload_len: int) -> float:
        return self.wire_time(wire_size(payload_len))

    def command_timeout(
        self, request_payload: int, response_payload: int, device_work_s: float = 0.0
    ) -> float:
        return (
            2 * self.turnaround_s
            + self.frame_time(request_payload)
            + self.frame_time(response_payload)
            + device_work_s
            + HOST_MARGIN_S
        )


def flash_time(geometry: Geometry, nbytes: int) -> float:
    """Worst-case time for the MCU to erase and program ``nbytes``."""
    sectors = math.ceil(nbytes / geometry.sector_size) + 1  # a window can straddle one more
    pages = math.ceil(nbytes / geometry.page_size) + 1
    return (sectors * geometry.erase_us + pages * geometry.program_us) / 1e6


def verify_time(geometry: Geometry, size: int) -> float:
    return math.ceil(size / 1024) * geometry.hash_us_per_kib / 1e6


def begin_time(geometry: Geometry, confirmed_sizes: list[int]) -> float:
    """BEGIN's work: the trailer erase, and hashing the confirmed images to find the
    fallback (§9.3): newest first until one verifies, so at most all of them."""
    return 2 * geometry.erase_us / 1e6 + sum(verify_time(geometry, n) for n in confirmed_sizes)


def data_rto(link: LinkTiming, geometry: Geometry, window: int, chunk: int) -> float:
    """Retransmission timeout: one window on the wire plus flashing it, plus turnarounds."""
    frames = max(1, math.ceil(window / chunk))
    wire = frames * link.frame_time(chunk + 4)
    return wire + flash_time(geometry, window) + 2 * link.turnaround_s + HOST_MARGIN_S


def nak_holdoff(link: LinkTiming, chunk: int) -> float:
    """Minimum spacing between resends of one frame in answer to GAP reports."""
    return 2 * link.frame_time(chunk + 4) + 2 * link.turnaround_s + 0.02


def ack_batch_delay(link: LinkTiming, in_flight: int, window: int, chunk: int) -> float:
    """How long the sender may let DATA acknowledgements pile up before it reads them.

    The bytes in flight beyond half the window take this long to drain at the
    link rate; until then the MCU still has half a window queued, so reading
    every acknowledgement as it lands would only cost a wake-up per frame
    (about a quarter of the gateway's CPU per flashed MB) without moving data
    sooner. A window of under four chunks leaves too little to batch.
    """
    if window < 4 * chunk:
        return 0.0
    return link.wire_time(max(0, in_flight - window // 2))
